"""Command shaping without ROS: shaped targets always pass the safety gate, in-range targets are untouched,
a lagging arm is waited for, and a chunk that jumps is refused before it is commanded."""

import numpy as np
import pytest

from aloha_contract import load_contract
from aloha_contract.safety import SafetyGate
from aloha_contract.validation import accepted_command_range
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


def test_a_gripper_a_little_past_open_is_clamped_onto_the_range_and_passes_the_gate(contract):
    """Measured on ACT: gripper targets of 1.10-1.12 against the accepted [-0.1, 1.1] stopped 34 of 50 episodes.
    The gate refuses them unshaped; shaped, they are clamped onto 1.1 and pass, and only they are touched."""
    gate = SafetyGate(contract)
    lower, upper = accepted_command_range(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error,
                           accepted=(lower, upper), grippers=contract.gripper_indices, gripper_tolerance=0.05)
    pose = start_pose(contract)
    pose[list(contract.gripper_indices)] = 1.0
    gate.reset(pose)
    left, right = contract.gripper_indices
    target = pose.copy()
    target[left] = upper[left] + 0.02
    target[right] = lower[right] - 0.03
    assert gate.check(target, pose).reason == "invalid"  # unshaped: refused
    gate.reset(pose)
    shaped = shaper.shape(target, pose, pose)
    assert shaped[left] == upper[left] and shaped[right] == max(lower[right], pose[right] - shaper.max_step[right])
    assert np.array_equal(np.delete(shaped, [left, right]), np.delete(target, [left, right]))
    assert gate.check(shaped, pose) is None
    assert shaper.clamped_ticks == 1 and shaper.shaped_ticks == 1


def test_arm_joints_and_a_gripper_far_past_its_range_are_left_for_the_gate_to_refuse(contract):
    """Past the tolerance, or on an arm joint (whose limits carry a margin already), it is a fault: not hidden."""
    gate = SafetyGate(contract)
    lower, upper = accepted_command_range(contract)
    shaper = CommandShaper(gate.limits.max_step, gate.limits.max_tracking_error,
                           accepted=(lower, upper), grippers=contract.gripper_indices, gripper_tolerance=0.05)
    arm_joint = next(i for i in range(len(contract.joint_names)) if i not in contract.gripper_indices)
    gripper = contract.gripper_indices[0]
    target = start_pose(contract)
    target[arm_joint] = upper[arm_joint] + 0.01
    target[gripper] = upper[gripper] + 0.2
    assert np.array_equal(shaper.clamp_grippers(target), target) and shaper.clamped_ticks == 0
    gate.reset(start_pose(contract))
    assert gate.check(shaper.shape(target, None, None), None).reason == "invalid"
    # the accepted range is the gate's own: a gripper on its edge passes, a hair beyond does not
    target = start_pose(contract)
    target[gripper] = upper[gripper] + 0.04
    edge = shaper.clamp_grippers(target)
    assert edge[gripper] == upper[gripper] and shaper.clamped_ticks == 1
    gate.reset(edge)
    assert gate.check(edge, edge) is None
    edge[gripper] += 1e-6
    gate.reset(edge)
    assert gate.check(edge, edge).reason == "invalid"


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
