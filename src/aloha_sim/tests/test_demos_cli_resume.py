"""aloha_sim_demos on an existing folder: refuses without --resume / --overwrite, Ctrl-C says what is on disk,
--resume continues numbering and seeds and cleans its leftovers, and the size warning for raw frames."""

import h5py

from aloha_sim import demos_cli
from aloha_sim.demos_cli import episode_size_warning, main

# tiny and short: each call records in well under a second per episode
SMALL = ["--task", "transfer_cube", "--seed-start", "7", "--image-size", "8x8", "--max-steps", "3", "--compress"]


def _seeds(folder):
    seeds = {}
    for path in sorted(folder.glob("episode_*.hdf5")):
        with h5py.File(path, "r") as f:
            seeds[path.name] = int(f.attrs["seed"])
    return seeds


def test_ctrl_c_then_resume_continues_numbering_and_seeds(tmp_path, capsys, monkeypatch):
    out = tmp_path / "demos"
    args = SMALL + ["--episodes", "4", "--out", str(out)]
    real_write = demos_cli.write_act_episode

    def write_then_ctrl_c(path, episode, **kw):
        if path.name == "episode_2.hdf5":  # Ctrl-C in the middle of writing episode 2
            path.with_name(path.name + ".tmp").write_bytes(b"half an episode")
            raise KeyboardInterrupt
        return real_write(path, episode, **kw)

    monkeypatch.setattr(demos_cli, "write_act_episode", write_then_ctrl_c)
    assert main(args) == 130
    err = capsys.readouterr().err
    assert f"interrupted: 2 of 4 episodes written to {out}" in err and "--resume" in err
    assert sorted(p.name for p in out.iterdir()) == ["episode_0.hdf5", "episode_1.hdf5"]  # its .tmp is gone
    kept = {name: (out / name).read_bytes() for name in ("episode_0.hdf5", "episode_1.hdf5")}
    monkeypatch.setattr(demos_cli, "write_act_episode", real_write)

    # a run killed harder (no handler ran) leaves its temporary file; --resume deletes it, not others' files
    (out / "episode_2.hdf5.tmp").write_bytes(b"half an episode")
    (out / "episode_9.hdf5.partial").write_bytes(b"the live recorder's, recoverable")
    assert main(args + ["--resume"]) == 0
    captured = capsys.readouterr()
    assert "episode_2.hdf5.tmp" in captured.err and "resuming" in captured.out and "seed 9" in captured.out
    assert _seeds(out) == {"episode_0.hdf5": 7, "episode_1.hdf5": 8, "episode_2.hdf5": 9, "episode_3.hdf5": 10}
    assert not (out / "episode_2.hdf5.tmp").exists() and (out / "episode_9.hdf5.partial").exists()
    assert all((out / name).read_bytes() == data for name, data in kept.items())  # finished episodes untouched

    assert main(args + ["--resume"]) == 0  # all there: nothing recorded again
    assert "nothing to do" in capsys.readouterr().out


def test_existing_folder_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    out = tmp_path / "demos"
    out.mkdir()
    (out / "notes.txt").write_text("someone else's file")
    assert main(SMALL + ["--episodes", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"--out {out} is not empty" in err and "--resume" in err and "--overwrite" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_resume_refuses_other_seeds_and_names_the_right_seed_start(tmp_path, capsys):
    out = tmp_path / "demos"
    assert main(SMALL + ["--episodes", "1", "--out", str(out)]) == 0
    other = [a if a != "7" else "100" for a in SMALL]  # --seed-start 100
    assert main(other + ["--episodes", "2", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "episode_0.hdf5 was recorded with seed 7" in err and "--seed-start 7" in err
    assert sorted(p.name for p in out.iterdir()) == ["episode_0.hdf5"]


def test_uncompressed_size_warning_is_computed_and_printed_once(tmp_path, capsys, monkeypatch):
    full = episode_size_warning((480, 640), cameras=3, steps=400, episodes=50)
    assert "about 1.1 GB each" in full and "55.3 GB for 50" in full and "--compress" in full
    assert episode_size_warning((96, 128), cameras=3, steps=400, episodes=50) is None  # 44 MB: no nagging

    monkeypatch.setattr(demos_cli, "LARGE_EPISODE_BYTES", 1)  # so that 8x8 frames count as large
    raw = [a for a in SMALL if a != "--compress"]
    assert main(raw + ["--episodes", "2", "--out", str(tmp_path / "raw")]) == 0
    err = capsys.readouterr().err
    # 8 x 8 x 3 bytes x 3 cameras x 3 steps = 1728 bytes per episode
    assert err.count("warning: uncompressed episodes") == 1 and "3 camera(s) at 8x8 x 3 steps" in err
    assert main(SMALL + ["--episodes", "1", "--out", str(tmp_path / "jpeg")]) == 0
    assert "warning" not in capsys.readouterr().err
