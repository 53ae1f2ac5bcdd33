"""The same `cosmos-policy train` command under torchrun: two CPU processes (gloo) with DDP or FSDP."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from data_synthetic import write_synthetic_episodes

from cosmos_policy.policy import CosmosPolicy

SRC = Path(__file__).resolve().parents[1]


def _torchrun(args, port):
    path = os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])
    env = dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(port),
           "-m", "cosmos_policy.cli", *args]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.slow
@pytest.mark.parametrize("strategy, port", [("ddp", 29731), ("fsdp", 29733)])
def test_torchrun_two_cpu_processes_train_save_and_resume(tmp_path, strategy, port):
    write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=2, steps=6)
    out = tmp_path / "ckpt"
    args = ["train", "--data", str(tmp_path / "demos"), "--layout", "aloha",
            "--network", "tiny", "--batch-size", "1", "--warmup-steps", "1", "--out", str(out), "--device", "cpu",
            "--distributed", strategy]
    printed = _torchrun(args + ["--steps", "2"], port)
    assert "trained steps 0..2" in printed and printed.count("trained steps") == 1  # rank 0 reports
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["world_size"] == 2
    printed = _torchrun(args + ["--steps", "3", "--resume"], port)
    assert "trained steps 2..3" in printed
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 3
    policy = CosmosPolicy.from_checkpoint(out)
    assert policy.layout.action_chunk == 50
