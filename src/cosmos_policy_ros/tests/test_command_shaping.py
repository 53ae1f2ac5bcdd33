"""Command shaping without ROS: shaped targets always pass the safety gate, in-range targets are untouched,
a lagging arm is waited for, and a chunk that jumps is refused before it is commanded."""

import numpy as np
import pytest

from aloha_contract import load_contract
from aloha_contract.safety import SafetyGate
from cosmos_policy_ros.command_shaping import CommandShaper, find_row_jump


@pytest.fixture(scope="module")
def contract():
    return load_contract()


def start_pose(contract):
    pose = np.zeros(len(contract.joint_names))
    pose[list(contract.gripper_indices)] = 0.5
    return pose


def test_targets_inside_the_limits_are_not_changed(contract):
    gate = SafetyGate(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error)
    pose = start_pose(contract)
    target = pose + 0.5 * shaper.max_step
    assert np.array_equal(shaper.shape(target, pose, pose), target)
    assert shaper.shaped_ticks == 0


def test_a_policy_far_ahead_of_a_lagging_arm_never_trips_the_gate(contract):
    """A policy that asks for 1 rad/tick while the arm follows at half the velocity limit: every shaped target
    passes the gate, and the arm still gets to the goal."""
    gate = SafetyGate(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error)
    measured = start_pose(contract)
    gate.reset(measured)
    goal = measured.copy()
    arm = [i for i in range(len(measured)) if i not in contract.gripper_indices]
    goal[arm] += 1.0
    for _ in range(400):
        target = shaper.shape(goal, gate.last_safe_target, measured)
        assert gate.check(target, measured) is None
        # the servo closes half of the gap per tick, at most half the velocity limit
        measured = measured + np.clip(0.5 * (target - measured), -0.5 * gate.limits.max_step, 0.5 * gate.limits.max_step)
    assert np.allclose(measured[arm], goal[arm], atol=1e-3)
    assert shaper.shaped_ticks > 0


def test_the_target_waits_for_a_blocked_arm(contract):
    """An arm held in place (contact): the target stops at the tracking bound instead of running away."""
    gate = SafetyGate(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error, fraction=0.9)
    measured = start_pose(contract)
    previous = measured.copy()
    goal = measured + 2.0
    for _ in range(100):
        previous = shaper.shape(goal, previous, measured)
    arm = [i for i in range(len(measured)) if i not in contract.gripper_indices]
    assert np.allclose(previous[arm] - measured[arm], 0.9 * gate.limits.max_tracking_error[arm])


def test_nan_passes_through_to_the_gate(contract):
    gate = SafetyGate(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error)
    pose = start_pose(contract)
    target = pose.copy()
    target[3] = np.nan
    shaped = shaper.shape(target, pose, pose)
    assert np.isnan(shaped[3])
    gate.reset(pose)
    assert gate.check(shaped, pose).reason == "invalid"


def test_fraction_is_checked():
    with pytest.raises(ValueError, match="fraction"):
        CommandShaper(np.ones(2), np.ones(2), fraction=1.5)


def test_a_chunk_that_jumps_is_refused_naming_the_joint(contract):
    chunk = np.zeros((50, 14))
    chunk[5:, 1] = 0.8
    detail = find_row_jump(chunk, 0.5, contract.joint_names, skip=contract.gripper_indices)
    assert detail is not None and contract.joint_names[1] in detail and "rows 4 and 5" in detail


def test_smooth_chunks_and_gripper_snaps_pass(contract):
    chunk = np.cumsum(np.full((50, 14), 0.05), axis=0)  # 2.5 rad/s, smooth
    gripper = contract.gripper_indices[0]
    chunk[10:, gripper] = 1.0  # grippers snap open and closed in the demos
    chunk[20, 3] = np.nan  # left to the gate
    assert find_row_jump(chunk, 0.5, contract.joint_names, skip=contract.gripper_indices) is None
