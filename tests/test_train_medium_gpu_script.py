"""scripts/train_medium_gpu.sh's demo stage: recorders run in parallel on seed ranges, and the merged folder
is what one `aloha_sim_demos --seed-start 0` run writes (episode_<i>.hdf5 holds seed i), so the `medium`
checkpoint trains on exactly the default checkpoint's demonstrations."""

from __future__ import annotations

import os
import subprocess

import h5py
from ros_harness import ROOT

SCRIPT = ROOT / "scripts" / "train_medium_gpu.sh"


def run_demo_stage(data, jobs: int, episodes: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "STAGES": "demos", "DATA": str(data), "EPISODES": str(episodes), "JOBS": str(jobs),
           "DEMO_MAX_STEPS": "15"}
    return subprocess.run([str(SCRIPT)], env=env, capture_output=True, text=True, timeout=600)


def test_parallel_demos_merge_into_one_seeded_folder(tmp_path):
    data = tmp_path / "demos"
    # 3 episodes per task over 4 jobs: 2 recorders per task with ranges [0, 2) and [2, 3)
    done = run_demo_stage(data, jobs=4, episodes=3)
    assert done.returncode == 0, done.stdout + done.stderr
    for task in ("transfer_cube", "insertion"):
        files = sorted(p.name for p in (data / task).iterdir())
        assert files == [f"episode_{i}.hdf5" for i in range(3)]
        for i in range(3):
            with h5py.File(data / task / f"episode_{i}.hdf5") as f:
                assert int(f.attrs["seed"]) == i and f.attrs["task"] == task
                assert f["action"].shape[0] == 15
    assert sorted(p.name for p in data.iterdir()) == ["insertion", "transfer_cube"]  # no .part folders, no logs

    # run again: every range is recorded already, nothing is written again
    before = {p: p.stat().st_mtime_ns for p in data.rglob("*.hdf5")}
    again = run_demo_stage(data, jobs=4, episodes=3)
    assert again.returncode == 0, again.stdout + again.stderr
    assert {p: p.stat().st_mtime_ns for p in data.rglob("*.hdf5")} == before
