"""The same `cosmos-policy train` command under torchrun: two CPU processes (gloo DDP) train and save."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from data_synthetic import write_synthetic_episodes
from test_cli_train import _small_camera_layout

SRC = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tmp_path):
    write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=2, steps=6)
    out = tmp_path / "ckpt"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29731",
           "-m", "cosmos_policy.cli", "train", "--data", str(tmp_path / "demos"),
           "--layout", str(_small_camera_layout(tmp_path)), "--network", "tiny", "--steps", "2", "--batch-size", "1",
           "--warmup-steps", "1", "--out", str(out), "--device", "cpu"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "trained steps 0..2" in result.stdout and result.stdout.count("trained steps") == 1  # rank 0 only
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["world_size"] == 2
    weights = load_file(str(out / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in weights.values())
