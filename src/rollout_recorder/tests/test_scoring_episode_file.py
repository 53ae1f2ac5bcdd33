"""Atomic score updates of finished episode files (episode_file.set_episode_score / update_episode_attrs)."""

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone

import h5py
import numpy as np
import pytest

from rollout_recorder import episode_file as ef
from rollout_recorder.episode_file import (
    Episode,
    EpisodeFileError,
    EpisodeWriter,
    list_episode_files,
    read_act_episode,
    set_episode_score,
    update_episode_attrs,
    write_act_episode,
)

T = 4


def episode(**attrs):
    rng = np.random.default_rng(0)
    return Episode(qpos=rng.normal(size=(T, 14)).astype(np.float32), qvel=np.zeros((T, 14), np.float32),
                   effort=np.zeros((T, 14), np.float32), action=np.zeros((T, 14), np.float32),
                   images={"cam_high": rng.integers(0, 255, (T, 6, 8, 3), dtype=np.uint8)}, attrs=attrs)


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def attrs_of(path):
    with h5py.File(path, "r") as f:
        return {k: ef.attr_value(v) for k, v in f.attrs.items()}


@pytest.fixture
def sim_episode(tmp_path):
    return write_act_episode(tmp_path / "episode_0.hdf5", episode(sim=True, task="transfer_cube", stage_score=75.0,
                                                                  success=False, success_score=0.75,
                                                                  stages_reached=["a", "b", "c"], score_source="sim"),
                             compress=True)


def test_score_attributes_and_the_kept_sim_score(sim_episode):
    os.chmod(sim_episode, 0o640)
    mtime = sim_episode.stat().st_mtime
    when = datetime(2026, 5, 4, 3, 2, 1, tzinfo=timezone.utc)
    out = set_episode_score(sim_episode, 100, scorer="alice", stages_reached=["a", "b", "c", "d"], notes="clean",
                            scored_at=when)
    assert out == attrs_of(sim_episode)
    assert out["stage_score"] == 100.0 and out["success"] is True and out["success_score"] == 1.0
    assert out["stages_reached"] == ["a", "b", "c", "d"] and out["score_source"] == "operator"
    assert out["scored_by"] == "alice" and out["scored_at"] == "2026-05-04T03:02:01+00:00"
    assert out["score_notes"] == "clean"
    assert out["sim_stage_score"] == 75.0 and out["sim_success"] is False
    assert out["sim_stages_reached"] == ["a", "b", "c"]
    assert datetime.fromisoformat(out["recorded_at"]).timestamp() == pytest.approx(mtime, abs=1)
    assert (sim_episode.stat().st_mode & 0o777) == 0o640
    again = set_episode_score(sim_episode, 0, scorer="bob")  # the sim score is kept once, never overwritten
    assert again["sim_stage_score"] == 75.0 and again["stage_score"] == 0.0 and again["stages_reached"] == [""]
    assert again["recorded_at"] == out["recorded_at"] and again["score_notes"] == "clean"
    np.testing.assert_array_equal(read_act_episode(sim_episode).qpos, episode().qpos)


@pytest.mark.parametrize("score, scorer, words", [(101, "a", "outside 0-100"), (-1, "a", "outside 0-100"),
                                                  (50, " ", "scorer's name")])
def test_bad_scores_refused(sim_episode, score, scorer, words):
    before = digest(sim_episode)
    with pytest.raises(EpisodeFileError, match=words):
        set_episode_score(sim_episode, score, scorer=scorer)
    assert digest(sim_episode) == before


def test_episodes_still_recording_are_refused(tmp_path):
    writer = EpisodeWriter(tmp_path, {"cam_high": (6, 8)}, reserve_bytes=0)
    writer.append(np.zeros(14), np.zeros(14), {"cam_high": None})
    writer.flush()
    with pytest.raises(EpisodeFileError, match="not a finished episode"):
        set_episode_score(writer.partial_path, 50, scorer="a")
    writer.finish()
    with h5py.File(writer.path, "r+") as f:  # what a reader of a cut-short file sees
        f.attrs["complete"] = False
    with pytest.raises(EpisodeFileError, match="complete=False"):
        set_episode_score(writer.path, 50, scorer="a")


@pytest.mark.parametrize("where", ["update", "replace"])
def test_a_failure_leaves_the_old_file_and_no_temporary(sim_episode, monkeypatch, where):
    before = digest(sim_episode)

    def boom(*args, **kwargs):
        raise OSError("disk full")

    if where == "replace":
        monkeypatch.setattr(ef.os, "replace", boom)
        with pytest.raises(OSError, match="disk full"):
            set_episode_score(sim_episode, 25, scorer="a")
    else:
        with pytest.raises(OSError, match="disk full"):
            update_episode_attrs(sim_episode, {"x": 1}, update=boom)
    assert digest(sim_episode) == before
    assert sorted(p.name for p in sim_episode.parent.iterdir()) == ["episode_0.hdf5"]


def test_kill_9_mid_update_leaves_the_episode_whole(sim_episode):
    """A scorer killed between copy and rename: the episode is untouched, its .tmp is never listed, and cleaned."""
    before = digest(sim_episode)
    code = ("import sys, time\n"
            "from rollout_recorder import episode_file as ef\n"
            "real = ef._copy_file_contents\n"
            "def slow(src, dst):\n"
            "    real(src, dst); print('copied', flush=True); time.sleep(60)\n"
            "ef._copy_file_contents = slow\n"
            f"ef.set_episode_score({str(sim_episode)!r}, 25, scorer='a')\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "copied"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    tmp = sim_episode.with_name("episode_0.hdf5.tmp")
    assert tmp.exists() and digest(sim_episode) == before
    assert list_episode_files(sim_episode.parent) == [sim_episode]
    assert read_act_episode(sim_episode).attrs["stage_score"] == 75.0
    set_episode_score(sim_episode, 25, scorer="a")  # the next update clears the leftover
    assert not tmp.exists() and attrs_of(sim_episode)["stage_score"] == 25.0


def test_concurrent_writers_lose_no_update(sim_episode):
    """Read-modify-write under the folder lock: 6 writers each add one, none overwrites another."""
    update_episode_attrs(sim_episode, {"count": 0})

    def bump(old):
        time.sleep(0.02)  # widen the window in which an unlocked writer would lose an update
        return {"count": int(old["count"]) + 1}

    threads = [threading.Thread(target=update_episode_attrs, args=(sim_episode, {}), kwargs={"update": bump})
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert attrs_of(sim_episode)["count"] == 6


def test_a_reader_holding_the_old_file_keeps_reading_it(sim_episode):
    with h5py.File(sim_episode, "r") as held:
        set_episode_score(sim_episode, 50, scorer="a")
        assert ef.attr_value(held.attrs["stage_score"]) == 75.0  # the old inode, still whole
        assert held["observations/images/cam_high"].shape[0] == T
    assert attrs_of(sim_episode)["stage_score"] == 50.0


def test_none_deletes_an_attribute(sim_episode):
    out = update_episode_attrs(sim_episode, {"score_notes": "x"})
    assert out["score_notes"] == "x"
    assert "score_notes" not in update_episode_attrs(sim_episode, {"score_notes": None})


def test_a_streamed_recording_is_scored_and_stays_whole(tmp_path):
    """The recorder's own output (SWMR-written, JPEG, rollout history) survives the rewrite unchanged."""
    writer = EpisodeWriter(tmp_path, {"cam_high": (6, 8)}, attrs={"task": "insertion", "sim": True},
                           compress=True, reserve_bytes=0)
    for t in range(T):
        writer.append(np.full(14, t), np.full(14, -t), {"cam_high": np.full((6, 8, 3), 30 * t, np.uint8)})
        writer.add_stage(t, 25 * (t // 2))
    path = writer.finish({"stage_score": 25.0, "success": False, "success_score": 0.25, "score_source": "sim"})
    before = read_act_episode(path)
    history = ef.read_rollout_history(path)
    out = set_episode_score(path, 75, scorer="alice", stages_reached=["a", "b", "c"])
    assert out["stage_score"] == 75.0 and out["sim_stage_score"] == 25.0 and out["dropped_frames"] == [0]
    after = read_act_episode(path)
    np.testing.assert_array_equal(after.images["cam_high"], before.images["cam_high"])
    np.testing.assert_array_equal(after.frame_valid["cam_high"], before.frame_valid["cam_high"])
    np.testing.assert_array_equal(ef.read_rollout_history(path)["stage_history"], history["stage_history"])
