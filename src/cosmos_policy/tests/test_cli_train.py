"""End to end: `cosmos-policy train` on tiny HDF5 episodes -> a checkpoint CosmosPolicy loads and runs."""

import json

import numpy as np
import pytest
from data_synthetic import write_synthetic_episodes

from cosmos_policy.cli import main
from cosmos_policy.config import load_layout
from cosmos_policy.data.act_episode import read_act_episode
from cosmos_policy.policy import CosmosPolicy


@pytest.mark.slow
def test_cli_train_writes_a_checkpoint_the_policy_runs(tmp_path, capsys):
    data = tmp_path / "demos" / "fold_shirt"
    paths = write_synthetic_episodes(data, count=2, steps=6, compress=True)
    bad = data / "episode_9.hdf5"
    bad.write_bytes(paths[0].read_bytes()[:2000])
    out = tmp_path / "ckpt"
    args = ["train", "--data", str(tmp_path / "demos"), "--layout", "aloha", "--network", "tiny",
            "--steps", "2", "--batch-size", "2", "--warmup-steps", "1", "--out", str(out)]
    assert main(args) == 2  # a bad episode file: one line naming it and the fix, no traceback
    assert "episode_9.hdf5" in capsys.readouterr().err
    assert main(args + ["--skip-bad-episodes"]) == 0
    summary = capsys.readouterr().out
    assert "trained steps 0..2" in summary and "l1/" in summary and "fold shirt" in summary
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 2

    assert main(args[:8] + ["3"] + args[9:] + ["--skip-bad-episodes", "--resume"]) == 0
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 3

    policy = CosmosPolicy.from_checkpoint(out)
    # the checkpoint insists on the camera resolution it was trained on (48x64 here, not ALOHA's 480x640)
    assert load_layout("aloha").camera_hw == (480, 640) and tuple(policy.layout.camera_hw) == (48, 64)
    episode = read_act_episode(paths[1])
    obs = {"images": {cam: episode.images[cam][2] for cam in policy.layout.cameras},
           "proprio": episode.qpos[2], "task": "fold shirt"}
    chunk = policy.act(obs, num_steps=2, seed=0)
    wrong = {**obs, "images": {**obs["images"], "cam_left_wrist": np.zeros((480, 640, 3), np.uint8)}}
    with pytest.raises(ValueError, match="cam_left_wrist: got 480x640 rgb8, expected 48x64"):
        policy.act(wrong, num_steps=1, seed=0)
    assert chunk.actions.shape == (50, 14) and np.all(np.isfinite(chunk.actions)) and 0.0 <= chunk.value <= 1.0
    stats = json.loads((out / "dataset_statistics.json").read_text())
    assert np.all(chunk.actions >= np.array(stats["actions_min"]) - 1e-5)
    assert np.all(chunk.actions <= np.array(stats["actions_max"]) + 1e-5)

    capsys.readouterr()
    assert main(["infer", "--checkpoint", str(out), "--episode", str(paths[1]), "--step", "2", "--num-steps", "2"]) == 0
    printed = capsys.readouterr().out
    assert "chunk: 50 x 14" in printed and "value:" in printed and "latency:" in printed

    # planning fine-tune: the same trainer from the base checkpoint on demos + scored rollouts
    rollouts = write_synthetic_episodes(
        tmp_path / "rollouts", count=2, steps=6,
        attrs=[{"success": False, "success_score": 0.4, "task_description": "fold shirt"},
               {"success": True, "success_score": 1.0, "task_description": "fold shirt"}])
    planning = tmp_path / "planning"
    assert main(["train", "--init-checkpoint", str(out), "--data", str(data), "--rollouts", str(rollouts[0].parent),
                 "--demo-sampling-prob", "0.1", "--steps", "1", "--batch-size", "2", "--warmup-steps", "1",
                 "--skip-bad-episodes", "--out", str(planning)]) == 0
    printed = capsys.readouterr().out
    assert "rollouts: 2 episodes" in printed and "demo sampling p=0.10" in printed
    assert json.loads((planning / "dataset_statistics.json").read_text()) == stats
    assert CosmosPolicy.from_checkpoint(planning).act(obs, num_steps=1, seed=0).actions.shape == (50, 14)


def test_cli_stats_and_embed_text(tmp_path, capsys):
    write_synthetic_episodes(tmp_path / "d" / "t", count=2, steps=5)
    assert main(["stats", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "s.json")]) == 0
    stats = json.loads((tmp_path / "s.json").read_text())
    assert len(stats["actions_min"]) == 14 and stats["num_steps"] == 10
    assert main(["embed-text", "--texts", "a b", "--network", "tiny", "--out", str(tmp_path / "t.safetensors")]) == 0
    assert main(["embed-text", "--texts", "c", "--network", "tiny", "--append",
                 "--out", str(tmp_path / "t.safetensors")]) == 0
    assert "2 task embedding(s)" in capsys.readouterr().out


def test_cli_bench_prints_a_timing_table(capsys):
    assert main(["bench", "--network", "tiny", "--layout", "libero", "--device", "cpu", "--runs", "1",
                 "--action-steps", "1", "--candidates", "1", "--no-future-images"]) == 0
    printed = capsys.readouterr().out
    assert "median_ms" in printed and "chunk, 1 action steps" in printed


def test_cli_import_release_converts_native_weights(tmp_path, capsys):
    import torch

    from cosmos_policy.checkpoint import load_checkpoint
    from cosmos_policy.config import NetworkConfig
    from cosmos_policy.native_import import diffusers_to_native_state_dict
    from cosmos_policy.networks import build_transformer

    torch.manual_seed(3)
    source = build_transformer(NetworkConfig.preset_config("tiny"))
    torch.save(diffusers_to_native_state_dict(source.state_dict()), tmp_path / "release.pt")
    stats = {"actions_min": [-1.0] * 14, "actions_max": [1.0] * 14,
             "proprio_min": [0.0] * 14, "proprio_max": [2.0] * 14}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    assert main(["import-release", "--weights", str(tmp_path / "release.pt"), "--layout", "aloha", "--network", "tiny",
                 "--stats", str(tmp_path / "stats.json"), "--out", str(tmp_path / "ckpt")]) == 0
    loaded = load_checkpoint(tmp_path / "ckpt", require_statistics=True)
    for name, value in source.state_dict().items():
        assert torch.equal(loaded.model.dit.state_dict()[name], value), name
    assert "imported" in capsys.readouterr().out
