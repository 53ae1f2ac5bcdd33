"""World-model / value quality on held-out episodes: ROC AUC and future-proprio L1 of a (tiny) checkpoint."""

import dataclasses

import numpy as np
import pytest
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy.config import NetworkConfig, SamplerConfig, load_layout
from cosmos_policy.data.datasets import compute_dataset_statistics
from cosmos_policy.data.model_quality import evaluate_quality, roc_auc
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel
from cosmos_policy.policy import CosmosPolicy


def random_tiny_policy(paths, seed: int = 0) -> CosmosPolicy:
    """An untrained tiny checkpoint at 48x64, normalised on `paths`, knowing the task text "t"."""
    layout = dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64))
    network = NetworkConfig.preset_config("tiny")
    stats = statistics_from_dict(compute_dataset_statistics(paths))
    cache = build_text_cache({"t"}, network.text_embed_dim, max_length=network.text_max_tokens)
    torch.manual_seed(seed)
    return CosmosPolicy(CosmosPolicyModel(network, layout), SamplerConfig(), stats, cache)


def test_roc_auc_orders_successes_above_failures():
    assert roc_auc([0.9, 0.8, 0.2, 0.1], [True, True, False, False]) == 1.0
    assert roc_auc([0.1, 0.2, 0.8, 0.9], [True, True, False, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.9, 0.3, 0.5], [True, False, True]) == 1.0
    assert roc_auc([0.3, 0.6, 0.5, 0.4], [True, True, False, False]) == 0.5
    assert roc_auc([0.5, 0.6], [True, True]) is None


def test_quality_of_a_random_tiny_model_on_rollouts(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "rollouts", count=2, steps=10,
                                     attrs=[{"success": True, "success_score": 1.0, "task_description": "t"},
                                            {"success": False, "success_score": 0.25, "task_description": "t"}])
    policy = random_tiny_policy(paths)
    report = evaluate_quality(policy, paths, steps_per_episode=3, policy_action_steps=1)
    summary = report.summary()
    assert summary["samples"] == 6 and summary["episodes"] == 2 and summary["successful_episodes"] == 1
    assert all(0.0 <= v <= 1.0 for v in report.values)
    assert 0.0 <= summary["value_auc_samples"] <= 1.0 and summary["value_auc_episodes"] in (0.0, 1.0)
    assert np.isfinite(summary["future_proprio_l1"]) and summary["future_proprio_l1_normalised"] <= 2.0
    # the last step: the future is the current step, so the static baseline is exactly 0 there
    assert report.static_baseline_l1[2] == pytest.approx(0.0)
    assert len(report.action_l1_normalised) == 6 and 0.0 <= summary["policy_action_l1_normalised"] <= 2.0
    # the same noise with black cameras: the change is how much the chunk depends on what the cameras see
    assert len(report.blank_camera_action_change) == 6
    assert summary["blank_camera_action_change_normalised"] == pytest.approx(np.mean(report.blank_camera_action_change))
    assert all(np.isfinite(v) and v >= 0.0 for v in report.blank_camera_action_change)
    assert report.proposal_spread == [] and summary["proposal_spread_normalised"] is None  # not asked for


def test_proposals_measure_what_best_of_n_can_choose_from(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "demos", count=1, steps=10, attrs=[{"task_description": "t"}])
    policy = random_tiny_policy(paths)
    report = evaluate_quality(policy, paths, steps_per_episode=2, demos=True, policy_action_steps=1, proposals=3)
    assert len(report.proposal_spread) == len(report.best_proposal_action_l1) == 2
    # different noise seeds give different chunks, and the closest of the 3 is at least as close as the first
    assert all(s > 1e-4 for s in report.proposal_spread)
    assert all(b <= a + 1e-9 for a, b in zip(report.action_l1_normalised, report.best_proposal_action_l1))
    summary = report.summary()
    assert summary["proposal_spread_normalised"] == pytest.approx(np.mean(report.proposal_spread))


def test_planner_decisions_report_ties_spread_and_raw_samples():
    """add_planning_decision on hand-made decisions: a tie where every candidate is worth 0 (all samples below the
    majority mean's 0.05), and a real choice."""
    from types import SimpleNamespace

    from cosmos_policy.data.model_quality import QualityReport, add_planning_decision

    report = QualityReport()
    add_planning_decision(report, SimpleNamespace(candidate_values=np.zeros(3),
                                                  candidate_value_samples=np.full((3, 15), 0.01)))
    samples = np.full((3, 15), 0.01)
    samples[1, :10] = 0.6  # most of candidate 1's samples predict success
    add_planning_decision(report, SimpleNamespace(candidate_values=np.array([0.0, 0.4, 0.0]),
                                                  candidate_value_samples=samples))
    assert report.planning_tied == [True, False]
    assert report.planning_value_spread == pytest.approx([0.0, 0.4])
    assert report.planning_samples_above_threshold == pytest.approx([0.0, 10 / 45])
    summary = report.summary()
    assert summary["planning_observations"] == 2 and summary["planning_tied_fraction"] == 0.5


def test_planner_runs_best_of_n_at_each_observation(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "demos", count=1, steps=10, attrs=[{"task_description": "t"}])
    policy = random_tiny_policy(paths)
    policy.deploy = dataclasses.replace(policy.deploy, action_steps=1)
    planner = random_tiny_policy(paths, seed=1)
    report = evaluate_quality(policy, paths, steps_per_episode=1, demos=True, planner=planner, candidates=2)
    assert len(report.planning_tied) == len(report.planning_sample_mean) == 1
    assert all(0.0 <= f <= 1.0 for f in report.planning_samples_above_threshold)
    assert all(0.0 <= m <= 1.0 for m in report.planning_sample_mean)


def test_scene_swap_tells_a_policy_that_follows_the_objects_from_a_blind_one(tmp_path):
    from types import SimpleNamespace

    from cosmos_policy.data.act_episode import read_act_episode
    from cosmos_policy.data.model_quality import evaluate_scene_swap

    paths = write_synthetic_episodes(tmp_path / "demos", count=3, steps=60, attrs=[{"task_description": "t"}] * 3)
    policy = random_tiny_policy(paths)
    episodes = [read_act_episode(p) for p in paths]
    chunks = [e.action[:50].astype(np.float64) for e in episodes]
    # a policy that acts as the demonstration whose cam_high it is shown: it follows the scene exactly
    scene_of = {float(policy.prepare({"images": {c: e.images[c][t] for c in policy.layout.cameras},
                                      "proprio": e.qpos[t], "task": "t"}).images.sum()): (i, t)
                for i, e in enumerate(episodes) for t in (0, 5)}
    state_of = {float(policy.prepare({"images": {c: e.images[c][5] for c in policy.layout.cameras},
                                      "proprio": e.qpos[5], "task": "t"}).proprio.sum()): i
                for i, e in enumerate(episodes)}

    def follow_cameras(prepared, num_steps, seed):  # noqa: ARG001
        i, t = scene_of[float(prepared.images.sum())]
        return SimpleNamespace(actions=e_chunk(i, t))

    def e_chunk(i, t):
        return episodes[i].action[t:t + 50].astype(np.float64)

    policy.infer = follow_cameras
    seeing = evaluate_scene_swap(policy, paths, policy_action_steps=1, state_step=5)
    assert len(seeing.scene_swap_action_change) == 3
    np.testing.assert_allclose(seeing.scene_swap_action_change, seeing.scene_swap_demo_difference)
    assert all(d > 0 for d in seeing.scene_swap_demo_difference) and all(seeing.scene_swap_toward_other)
    assert seeing.state_swap_follows_state == [False] * 3  # it acts on what its cameras show
    # a copycat: at step 5 it acts as the demonstration whose robot state it is given
    policy.infer = lambda prepared, num_steps, seed: SimpleNamespace(  # noqa: ARG005
        actions=e_chunk(state_of.get(float(prepared.proprio.sum()), 0), 5))
    assert evaluate_scene_swap(policy, paths, policy_action_steps=1, state_step=5).state_swap_follows_state == [True] * 3
    # a blind one: the same chunk whatever the cameras show
    policy.infer = lambda prepared, num_steps, seed: SimpleNamespace(actions=chunks[0])  # noqa: ARG005
    blind = evaluate_scene_swap(policy, paths, policy_action_steps=1, state_step=5).summary()
    assert blind["scene_swap_action_change_normalised"] == 0.0 and blind["scene_swap_toward_other_fraction"] == 0.0
    assert blind["scene_swap_pairs"] == 3
