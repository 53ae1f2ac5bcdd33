"""The streaming episode writer, numbering, disk check, dropped frames and recovery (no ROS, no torch)."""

import subprocess
import sys

import h5py
import numpy as np
import pytest

from rollout_recorder import episode_file as ef
from rollout_recorder.episode_file import (
    DiskSpaceError,
    EpisodeFileError,
    EpisodeWriter,
    list_episode_files,
    list_partial_episodes,
    next_episode_index,
    read_act_episode,
    read_rollout_history,
    recover_episode,
)

CAMS = {"cam_high": (12, 16), "cam_left_wrist": (12, 16)}


def frame(value, hw=(12, 16)):
    return np.full((*hw, 3), value, np.uint8)


def write_rows(writer, n, drop=()):
    for t in range(n):
        images = {cam: (None if (cam, t) in drop else frame(10 * t + i)) for i, cam in enumerate(CAMS)}
        writer.append(qpos=np.full(14, t), action=np.full(14, -t), images=images, stamp_ns=t * 20_000_000)


def test_no_torch_or_rclpy_needed():
    code = ("import sys; import rollout_recorder.episode_file; "
            "bad = [m for m in ('torch', 'rclpy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("compress", [False, True])
def test_streamed_episode_round_trip_with_dropped_frames(tmp_path, compress):
    attrs = {"task": "transfer_cube", "task_description": "pick the cube", "seed": 3, "policy_checkpoint": "ckpt@1"}
    writer = EpisodeWriter(tmp_path, CAMS, attrs=attrs, compress=compress, max_steps=100, reserve_bytes=0)
    assert writer.partial_path.name == "episode_0.hdf5.partial"
    write_rows(writer, 5, drop={("cam_high", 2), ("cam_left_wrist", 0)})
    writer.add_chunk_value(0, 0.25)
    writer.add_stage(0, 0)
    writer.add_stage(3, 25)
    writer.add_stage(4, 25)  # unchanged: not a new history row
    writer.add_chunk_value(4, 0.5)
    assert list_episode_files(tmp_path) == []  # readers never see an unfinished episode
    path = writer.finish({"success": False, "success_score": 0.25, "stage_score": 25})
    assert path.name == "episode_0.hdf5" and not writer.partial_path.exists()
    ep = read_act_episode(path)
    np.testing.assert_array_equal(ep.qpos[:, 0], np.arange(5))
    np.testing.assert_array_equal(ep.action[:, 0], -np.arange(5))
    np.testing.assert_array_equal(ep.frame_valid["cam_high"], [True, True, False, True, True])
    np.testing.assert_array_equal(ep.frame_valid["cam_left_wrist"], [False, True, True, True, True])
    tol = 3 if compress else 0
    # a dropped frame repeats the previous one (black before the first), and the mask says so
    assert abs(int(ep.images["cam_high"][2].mean()) - int(ep.images["cam_high"][1].mean())) <= tol
    assert ep.images["cam_left_wrist"][0].max() <= tol
    assert ep.attrs["complete"] in (True, 1) and ep.attrs["dropped_frames"] == [1, 1]
    assert ep.attrs["task_description"] == "pick the cube" and ep.attrs["policy_checkpoint"] == "ckpt@1"
    assert ep.attrs["seed"] == 3 and ep.attrs["success_score"] == 0.25
    history = read_rollout_history(path)
    np.testing.assert_array_equal(history["chunk_values"], [[0, 0.25], [4, 0.5]])
    np.testing.assert_array_equal(history["stage_history"], [[0, 0], [3, 25]])


def test_numbering_never_overwrites(tmp_path):
    for _ in range(2):
        w = EpisodeWriter(tmp_path, CAMS, reserve_bytes=0)
        write_rows(w, 2)
        w.finish()
    (tmp_path / "episode_7.hdf5.partial").write_bytes(b"")  # an interrupted episode holds its number
    assert next_episode_index(tmp_path) == 8
    first = (tmp_path / "episode_0.hdf5").read_bytes()
    with pytest.raises(FileExistsError, match="never overwritten"):
        EpisodeWriter(tmp_path, CAMS, index=0, reserve_bytes=0)
    w = EpisodeWriter(tmp_path, CAMS, reserve_bytes=0)
    assert w.index == 8
    w.discard()
    assert next_episode_index(tmp_path) == 8 and (tmp_path / "episode_0.hdf5").read_bytes() == first


def test_free_space_checked_before_start(tmp_path, monkeypatch):
    class Usage:
        free = 10 << 20

    monkeypatch.setattr(ef.shutil, "disk_usage", lambda _: Usage)
    with pytest.raises(DiskSpaceError, match="GB free"):
        EpisodeWriter(tmp_path, {"cam_high": (480, 640)}, max_steps=1000, reserve_bytes=0)
    assert list(tmp_path.iterdir()) == []


def test_wrong_frame_size_names_the_camera(tmp_path):
    w = EpisodeWriter(tmp_path, CAMS, reserve_bytes=0)
    with pytest.raises(EpisodeFileError, match="cam_high: got"):
        w.append(qpos=np.zeros(14), action=np.zeros(14), images={"cam_high": frame(0, (5, 5))})


@pytest.mark.parametrize("compress", [False, True])
def test_recover_after_close_without_finish(tmp_path, compress):
    w = EpisodeWriter(tmp_path, CAMS, compress=compress, reserve_bytes=0, attrs={"task": "insertion"})
    write_rows(w, 7, drop={("cam_high", 6)})
    w.add_chunk_value(0, 0.9)
    partial = w.close_partial()
    assert list_partial_episodes(tmp_path) == [partial] and list_episode_files(tmp_path) == []
    with pytest.raises(EpisodeFileError, match="complete=False"):
        with h5py.File(partial, "r", swmr=True) as f:
            ef._read_open_episode(f, str(partial), cameras=None, load_images=False)
    path = recover_episode(partial)
    assert not partial.exists() and list_episode_files(tmp_path) == [path]
    ep = read_act_episode(path)
    assert ep.num_steps == 7 and ep.attrs["recovered"] in (True, 1) and ep.attrs["task"] == "insertion"
    assert ep.attrs["dropped_frames"] == [1, 0]
    assert read_rollout_history(path)["chunk_values"].tolist() == [[0, 0.9]]
    with pytest.raises(EpisodeFileError, match="expected an episode"):
        recover_episode(path)


def test_unrecoverable_partial_is_left_alone(tmp_path):
    bad = tmp_path / "episode_0.hdf5.partial"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(EpisodeFileError, match="nothing to recover"):
        recover_episode(bad)
    assert bad.exists()
