"""The joint-controlled env: determinism, refused commands, cameras, gripper normalisation, joint_states."""

import numpy as np
import pytest

from aloha_contract import InvalidCommand
from aloha_sim.env import AlohaSimEnv
from aloha_sim.tasks import load_task

SMALL = (48, 64)


@pytest.fixture(scope="module")
def physics_env():
    env = AlohaSimEnv("transfer_cube", render=False)
    yield env
    env.close()


@pytest.fixture(scope="module")
def camera_env():
    env = AlohaSimEnv("transfer_cube", image_size=SMALL)
    yield env
    env.close()


def wiggle(env, steps):
    """Commands that move every joint a little, from the start pose."""
    base = env.start_command()
    out = []
    for t in range(steps):
        cmd = base.copy()
        cmd[[0, 1, 7, 8]] += 0.2 * np.sin(0.1 * t)
        cmd[[6, 13]] = 0.5 + 0.4 * np.cos(0.1 * t)
        out.append(cmd)
    return out


def test_seeded_object_poses(physics_env):
    task = load_task("transfer_cube")
    a, b, c = task.sample_object_poses(3), task.sample_object_poses(3), task.sample_object_poses(4)
    assert np.array_equal(a["box"][0], b["box"][0])
    assert not np.allclose(a["box"][0], c["box"][0])
    physics_env.reset(3)
    assert np.allclose(physics_env.object_poses()["box"][0], a["box"][0])


def test_same_seed_same_commands_identical_state_and_images(camera_env):
    commands = wiggle(camera_env, 15)
    runs = []
    for _ in range(2):
        camera_env.reset(7)
        for cmd in commands:
            obs = camera_env.step(cmd)
        runs.append((obs, camera_env.object_poses()["box"][0]))
    (o1, box1), (o2, box2) = runs
    assert np.array_equal(o1.qpos, o2.qpos) and np.array_equal(o1.qvel, o2.qvel)
    assert np.array_equal(box1, box2)
    for cam in o1.images:
        assert np.array_equal(o1.images[cam], o2.images[cam])
    camera_env.reset(8)
    for cmd in commands:
        obs = camera_env.step(cmd)
    assert not np.array_equal(obs.images["cam_high"], o1.images["cam_high"])  # the cube is elsewhere


def test_camera_images_shape_dtype_and_distinct(camera_env):
    obs = camera_env.reset(0)
    assert sorted(obs.images) == sorted(camera_env.contract.cameras)
    for img in obs.images.values():
        assert img.shape == (*SMALL, 3) and img.dtype == np.uint8
    imgs = list(obs.images.values())
    assert not np.array_equal(imgs[0], imgs[1]) and not np.array_equal(imgs[0], imgs[2])
    assert camera_env.step(camera_env.start_command(), render=False).images == {}


@pytest.mark.parametrize("bad", [
    np.zeros(13),
    np.full(14, np.nan),
    "far_joint",
    "far_gripper",
])
def test_invalid_command_refused_and_state_unchanged(physics_env, bad):
    env = physics_env
    env.reset(0)
    held = env.start_command()
    held[1] -= 0.2
    for _ in range(5):
        env.step(held)
    if isinstance(bad, str):
        cmd = held.copy()
        cmd[2 if bad == "far_joint" else 6] = 5.0
        bad = cmd
    before = (env.data.qpos.copy(), env.data.qvel.copy(), env.data.ctrl.copy(), env.sim_time_s, env.step_count)
    with pytest.raises(InvalidCommand):
        env.step(bad)
    after = (env.data.qpos, env.data.qvel, env.data.ctrl, env.sim_time_s, env.step_count)
    for x, y in zip(before, after):
        assert np.array_equal(x, y)
    assert np.array_equal(env.last_command, held)


def test_gripper_command_matches_observed_qpos_in_steady_state(physics_env):
    env = physics_env
    env.reset(0)
    for g in (0.3, 0.7):
        cmd = env.start_command()
        cmd[[6, 13]] = g
        for _ in range(50):
            obs = env.step(cmd)
        assert obs.qpos[6] == pytest.approx(g, abs=0.03)
        assert obs.qpos[13] == pytest.approx(g, abs=0.03)
        assert np.allclose(obs.qpos[:6], cmd[:6], atol=0.02)  # joint targets tracked


def test_follower_joint_states_layout(physics_env):
    env = physics_env
    env.reset(0)
    states = env.follower_joint_states()
    assert sorted(states) == ["left", "right"]
    qpos = env.qpos()
    for i, arm in enumerate(["left", "right"]):
        s = states[arm]
        assert s.names == env.contract.follower_joint_names
        assert s.robot == env.contract.follower_robot(arm)
        assert s.position.shape == s.velocity.shape == s.effort.shape == (9,)
        assert np.allclose(s.position[:6], qpos[7 * i:7 * i + 6])
        assert s.position[8] == pytest.approx(-s.position[7])  # mirrored fingers


def test_step_advances_one_control_period(physics_env):
    env = physics_env
    env.reset(0)
    env.step(env.start_command())
    env.step(env.start_command())
    assert env.sim_time_s == pytest.approx(2 * env.contract.control_period_s)
    assert env.step_count == 2
