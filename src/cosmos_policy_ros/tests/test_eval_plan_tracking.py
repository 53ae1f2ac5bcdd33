"""plan_tracking: closed-loop distance to this seed's scripted plan against other seeds' plans, in the simulator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cosmos_policy_ros.evaluation.plan_tracking import (
    expert_plan,
    expert_trajectory,
    main,
    node_parameters,
    parse_seeds,
    policy_act_fn,
    summarise,
    track_episode,
)

STEPS = 150


@pytest.fixture(scope="module")
def env():
    from aloha_sim.env import AlohaSimEnv

    with AlohaSimEnv("transfer_cube", image_size=(48, 64)) as sim:
        yield sim


def replaying(plan: np.ndarray, execute_steps: int):
    """A policy that streams a fixed plan, chunk by chunk, whatever it observes."""
    def act(images, qpos, text, chunk_index):
        assert set(images) == {"cam_high", "cam_left_wrist", "cam_right_wrist"} and qpos.shape == (14,) and text
        start = chunk_index * execute_steps
        return plan[start:start + 2 * execute_steps]  # longer than executed, as a real chunk
    return act


def test_following_its_own_plan_is_closer_than_following_another_scene(env):
    plan, other_plan = expert_plan(env, 1000), expert_plan(env, 5000)
    expert = expert_trajectory(env, 1000)
    references = [expert_trajectory(env, 5000), expert_trajectory(env, 5001)]
    own = track_episode(env, replaying(plan, 25), 1000, expert, references, execute_steps=25, max_steps=STEPS)
    other = track_episode(env, replaying(other_plan, 25), 1000, expert, references, execute_steps=25,
                          max_steps=STEPS)
    assert len(own["own"]) == len(own["others"]) == len(own["spread"]) == STEPS
    late = slice(STEPS // 2, STEPS)  # the arms have moved apart by then
    spread = own["spread"][late].mean()
    assert spread > 0.01  # the two scenes' plans do differ here, so the test can tell the policies apart
    # streaming the seed's own plan in chunks reproduces its expert's states (the simulator is deterministic) ...
    np.testing.assert_allclose(own["own"], 0.0, atol=1e-9)
    np.testing.assert_allclose(own["others"], own["spread"], atol=1e-9)
    # ... streaming another scene's plan lands as far from this seed's expert as the experts lie apart
    assert other["own"][late].mean() > 0.5 * spread
    assert other["others"][late].mean() < other["own"][late].mean()  # it is one of the references
    assert own["stage_score"] == other["stage_score"] == 0.0  # 150 steps reach no stage


def test_temporal_ensembling_averages_the_chunks_that_cover_a_step(env):
    """Chunks that err by +d and -d in turn: executed alone they pull the arm off the plan; ensembled (equal
    weights, two chunks cover every step after the first ten) they cancel, and the arm follows its expert."""
    plan = expert_plan(env, 1000)
    expert = expert_trajectory(env, 1000)
    arm = [1, 2, 8, 9]  # shoulders and elbows, well inside their limits here

    def alternating(images, qpos, text, chunk_index):
        chunk = plan[chunk_index * 10:chunk_index * 10 + 20].copy()
        chunk[:, arm] += 0.05 if chunk_index % 2 == 0 else -0.05
        return chunk

    alone = track_episode(env, alternating, 1000, expert, [expert], execute_steps=10, max_steps=90)
    ensembled = track_episode(env, alternating, 1000, expert, [expert], execute_steps=10, max_steps=90,
                              temporal_ensemble_coeff=0.0)
    late = slice(50, 90)
    assert alone["own"][late].mean() > 0.005  # 4 of 14 joints off by up to 0.05
    assert ensembled["own"][late].mean() < 0.1 * alone["own"][late].mean()
    assert alone["stopped"] is ensembled["stopped"] is None


def test_a_malformed_chunk_is_refused(env):
    plan = expert_plan(env, 1000)
    with pytest.raises(ValueError, match="shape"):
        track_episode(env, lambda *a: np.zeros((10, 7)), 1000, plan, [plan], execute_steps=5, max_steps=10)


def test_a_refused_command_stops_the_episode_and_the_arms_hold(env):
    expert = expert_trajectory(env, 1000)
    plan = expert_plan(env, 1000)

    def act(images, qpos, text, chunk_index):  # the plan, then a gripper far outside its range
        chunk = plan[chunk_index * 10:chunk_index * 10 + 10].copy()
        if chunk_index == 3:
            chunk[4:, 6] = 5.0
        return chunk

    result = track_episode(env, act, 1000, expert, [expert], execute_steps=10, max_steps=80)
    assert result["stopped"].startswith("step 34:") and "gripper" in result["stopped"]
    np.testing.assert_allclose(result["own"][:34], 0.0, atol=1e-9)  # the plan, executed until then
    held = env.qpos()
    np.testing.assert_allclose(held[:6], plan[33][:6], atol=0.05)  # the last valid target, held
    assert len(result["own"]) == 80


def test_the_chunk_is_smoothed_as_the_policy_node_smooths_it():
    """A ramp with alternating spikes: the closed loop's moving average removes the spikes, keeps the ramp."""
    from types import SimpleNamespace

    ramp = np.linspace(0.0, 0.49, 50)[:, None].repeat(14, axis=1)
    jagged = ramp + 0.1 * (-1.0) ** np.arange(50)[:, None]

    class Policy:
        def act(self, observation, num_steps, seed):
            return SimpleNamespace(actions=jagged.astype(np.float32))

    raw = policy_act_fn(Policy(), action_steps=None, smoothing_window=0)({}, np.zeros(14), "t", 0)
    np.testing.assert_allclose(raw, jagged, atol=1e-6)
    smoothed = policy_act_fn(Policy(), action_steps=None, smoothing_window=9)({}, np.zeros(14), "t", 0)
    inner = slice(4, 46)  # a full window: an odd window over an alternating spike leaves 1/9 of it
    assert np.abs(smoothed[inner] - ramp[inner]).max() < 0.1 / 9 + 1e-6
    assert np.abs(raw[inner] - ramp[inner]).min() > 0.09
    # the default is the policy node's own setting: the installed config/policy.yaml, which is the repository's
    import yaml

    source = Path(__file__).resolve().parents[3] / "config" / "policy.yaml"
    expected = yaml.safe_load(source.read_text())["/**/policy_node"]["ros__parameters"]["smoothing_window"]
    assert node_parameters()["smoothing_window"] == expected > 1


def test_summary_means_at_the_reported_steps():
    episodes = [{"stage_score": 25.0, "own": np.array([0.1, 0.2]), "others": np.array([0.3, 0.1]),
                 "spread": np.array([0.2, 0.2])},
                {"stage_score": 0.0, "own": np.array([0.3, 0.4]), "others": np.array([0.2, 0.6]),
                 "spread": np.array([0.1, 0.3])}]
    summary = summarise(episodes, [1, 5])  # step 5 is past both episodes: not reported
    assert summary["mean_stage_score"] == 12.5 and summary["episodes"] == 2
    (row,) = summary["by_step"]
    assert row["step"] == 1 and row["own_rad"] == pytest.approx(0.3) and row["others_rad"] == pytest.approx(0.35)
    assert row["spread_rad"] == pytest.approx(0.25) and row["own_closer_fraction"] == 0.5


def test_seed_lists_and_bad_arguments(capsys):
    assert parse_seeds("1000-1003") == [1000, 1001, 1002, 1003]
    assert parse_seeds("7,9") == [7, 9]
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x", "--seeds", "9-3"])
    assert "FIRST-LAST" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x", "--image-size", "big"])
    assert "HEIGHTxWIDTH" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--checkpoint", "x", "--smoothing-window", "-1"])
    assert "--smoothing-window -1" in capsys.readouterr().err


def test_the_command_tracks_a_checkpoint_and_writes_its_report(tmp_path, capsys):
    """End to end on a tiny untrained checkpoint trained at 48x64: the simulator renders that size by default."""
    import dataclasses
    import json

    import torch

    from aloha_sim.tasks import load_tasks
    from cosmos_policy.checkpoint import save_checkpoint
    from cosmos_policy.config import NetworkConfig, load_layout
    from cosmos_policy.data.text import build_text_cache
    from cosmos_policy.diffusion import CosmosPolicyModel

    torch.manual_seed(0)
    network = NetworkConfig.preset_config("tiny")
    model = CosmosPolicyModel(network, dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64)))
    text = load_tasks().get("transfer_cube").description
    # actions between 0.4 and 0.6 rad (grippers half open): inside every joint's limits
    stats = {"actions_min": [0.4] * 14, "actions_max": [0.6] * 14, "proprio_min": [-1.5] * 14,
             "proprio_max": [1.5] * 14}
    save_checkpoint(tmp_path / "ckpt", model, statistics=stats,
                    text_cache=build_text_cache([text], d_text=network.text_embed_dim,
                                                max_length=network.text_max_tokens))
    out = tmp_path / "tracking.json"
    assert main(["--checkpoint", str(tmp_path / "ckpt"), "--seeds", "1000", "--reference-seeds", "1",
                 "--max-steps", "60", "--every", "20", "--action-steps", "1", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [row["step"] for row in report["by_step"]] == [19, 39, 59]
    (episode,) = report["per_episode"]
    assert episode["seed"] == 1000 and len(episode["own"]) == len(episode["spread"]) == 3
    last = report["by_step"][-1]
    assert last["own_rad"] == pytest.approx(episode["own"][-1], abs=1e-5)
    assert len(last["own_by_joint_rad"]) == len(last["spread_by_joint_rad"]) == 14
    assert np.mean(last["own_by_joint_rad"]) == pytest.approx(last["own_rad"], abs=1e-3)  # one episode
    assert "own closer" in capsys.readouterr().out
