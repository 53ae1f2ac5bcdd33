"""Disturbed scripted demos: smooth arm-joint offsets during the approach, the plan recorded as the action."""

import numpy as np
import pytest

from aloha_sim.demos_cli import main
from aloha_sim.env import AlohaSimEnv
from aloha_sim.perturb import JointNoise
from aloha_sim.rollout import run_scripted_episode
from aloha_sim.scripted import approach_end_step, plan_episode
from cosmos_policy.data.act_episode import read_act_episode

ARM = [0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12]


def test_offsets_have_the_asked_spread_spare_the_grippers_and_fade_out_before_the_contact():
    noise = JointNoise(0.05, tau_s=0.2, fade_s=0.5)
    runs = np.stack([noise.offsets(300, 14, ARM, 0.02, seed, until_step=200) for seed in range(200)])
    assert np.all(runs[:, 0] == 0.0)  # the episode starts at the start pose
    assert np.all(runs[:, :, [6, 13]] == 0.0)
    assert np.all(runs[:, 200:] == 0.0)
    settled = runs[:, 60:170][:, :, ARM]  # after ~6 correlation times, before the fade (the last 25 steps)
    assert settled.std() == pytest.approx(0.05, rel=0.1)
    # smooth: a step changes an offset by far less than its spread (correlated over tau, not white)
    assert np.abs(np.diff(settled, axis=1)).mean() < 0.5 * settled.std()  # white noise: ~1.1
    np.testing.assert_array_equal(runs[3], noise.offsets(300, 14, ARM, 0.02, 3, until_step=200))
    assert not np.array_equal(runs[3], runs[4])


@pytest.mark.parametrize("std,tau", [(-0.1, 0.5), (float("nan"), 0.5), (0.05, 0.0)])
def test_bad_noise_settings_are_refused(std, tau):
    with pytest.raises(ValueError, match="joint noise"):
        JointNoise(std, tau)


def test_a_disturbed_demo_records_the_plan_and_still_succeeds():
    env = AlohaSimEnv("transfer_cube", render=False)
    clean = run_scripted_episode(env, 7)
    disturbed = run_scripted_episode(env, 7, noise=JointNoise(0.08))
    env.close()
    until = approach_end_step(env.task, env.task.sample_object_poses(7), env.contract)
    assert until == 90  # the right arm's first waypoint over the cube
    np.testing.assert_array_equal(disturbed.action, clean.action)  # the label is the plan
    drift = np.abs(disturbed.qpos - clean.qpos)[:, ARM].max(axis=1)
    assert drift[40:until].mean() > 0.02  # the arm was pushed off the plan during the approach ...
    assert disturbed.score.success  # ... and the plan still grasps, hands over and succeeds


def test_demo_cli_records_the_noise_it_executed(tmp_path):
    out = tmp_path / "demos"
    assert main(["--task", "insertion", "--episodes", "1", "--out", str(out), "--seed-start", "3",
                 "--cameras", "--max-steps", "40", "--joint-noise", "0.05"]) == 0
    episode = read_act_episode(out / "episode_0.hdf5")
    assert episode.attrs["joint_noise_std_rad"] == pytest.approx(0.05)
    assert episode.attrs["joint_noise_tau_s"] == pytest.approx(0.5)
    from aloha_sim.tasks import load_task
    task = load_task("insertion")
    np.testing.assert_allclose(episode.action, plan_episode(task, task.sample_object_poses(3))[:40], atol=1e-6)
    assert main(["--task", "insertion", "--episodes", "1", "--out", str(tmp_path / "clean"), "--seed-start", "3",
                 "--cameras", "--max-steps", "40"]) == 0
    clean = read_act_episode(tmp_path / "clean" / "episode_0.hdf5")
    assert "joint_noise_std_rad" not in clean.attrs
    assert np.abs(episode.qpos - clean.qpos)[:, ARM].max() > 0.01  # executed off the plan it recorded
    assert main(["--task", "insertion", "--episodes", "1", "--out", str(tmp_path / "bad"),
                 "--joint-noise", "-1"]) == 2
