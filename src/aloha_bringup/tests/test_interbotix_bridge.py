"""The contract <-> Interbotix translation of the real-robot driver, without ROS."""

import numpy as np
import pytest

from aloha_bringup.fake_arm import FakeArm
from aloha_bringup.interbotix_bridge import FollowerStateError, FollowerStates, arm_commands, interbotix_service
from aloha_contract import load_contract
from aloha_contract.reason_log import ReasonLog


@pytest.fixture(scope="module")
def contract():
    return load_contract()


@pytest.fixture(scope="module")
def cal(contract):
    return contract.gripper_calibration("real")


def follower_msg(contract, joints, gripper_rad, finger_m, order=None):
    """A follower joint_states message as (names, positions), optionally in another name order."""
    names = list(contract.follower_joint_names)
    values = [*joints, gripper_rad, finger_m, -finger_m]
    if order is not None:
        names, values = [names[i] for i in order], [values[i] for i in order]
    return names, values


def test_command_goes_to_each_followers_arm_group_and_gripper_joint(contract, cal):
    left, right = [0.1, -0.9, 1.1, 0.0, -0.3, 0.2], [-0.1, -0.8, 1.0, 0.1, -0.2, -0.2]
    commands = arm_commands(contract, np.array([*left, 1.0, *right, 0.0]), cal)
    assert [c.robot for c in commands] == ["follower_left", "follower_right"]
    assert commands[0].arm_positions == pytest.approx(left) and commands[1].arm_positions == pytest.approx(right)
    # normalised 1 = open, 0 = closed, on the follower gripper *joint*
    assert commands[0].gripper_position == pytest.approx(cal.follower_gripper_joint_rad.open)
    assert commands[1].gripper_position == pytest.approx(cal.follower_gripper_joint_rad.close)


def test_state_takes_gripper_from_finger_position_and_matches_names(contract, cal):
    states = FollowerStates(contract, cal)
    left = [0.1, -0.9, 1.1, 0.0, -0.3, 0.2]
    finger_half_open = (cal.follower_finger_position_m.open + cal.follower_finger_position_m.close) / 2
    names, values = follower_msg(contract, left, 0.3, finger_half_open, order=[8, 7, 6, 5, 4, 3, 2, 1, 0])
    states.update("left", names, values, [], [], stamp="t_left", stamp_ns=2_000, received_s=10.0)
    assert states.take_if_fresh() is None  # the right arm has not reported yet
    names, values = follower_msg(contract, [0.0] * 6, cal.follower_gripper_joint_rad.close,
                                 cal.follower_finger_position_m.close)
    states.update("right", names, values, [], [], stamp="t_right", stamp_ns=1_000, received_s=10.0)
    obs = states.take_if_fresh()
    assert obs is not None and states.take_if_fresh() is None  # one 14-D state per pair of arm messages
    assert obs.position[:6] == pytest.approx(left)
    assert obs.position[6] == pytest.approx(0.5) and obs.position[13] == pytest.approx(0.0)
    assert obs.stamp == "t_right"  # the older source stamp
    assert obs.velocity is None and obs.effort is None
    # command space: the gripper *joint* through the joint calibration (index 6, not 7)
    measured = states.measured_for_commands()
    assert measured[6] == pytest.approx(cal.follower_gripper_joint_rad.normalize(0.3))
    assert measured[13] == pytest.approx(0.0)


def test_velocity_and_effort_when_every_arm_reports_them(contract, cal):
    states = FollowerStates(contract, cal)
    finger_range = cal.follower_finger_position_m.open - cal.follower_finger_position_m.close
    for arm in contract.arms:
        names, values = follower_msg(contract, [0.0] * 6, 1.0, 0.05)
        velocity = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, finger_range, -finger_range]
        effort = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
        states.update(arm, names, values, velocity, effort, stamp=None, stamp_ns=0, received_s=0.0)
    obs = states.observation()
    assert obs.velocity[:7] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0])  # finger velocity, normalised
    assert obs.effort[:7] == pytest.approx([1, 2, 3, 4, 5, 6, 7])  # gripper: the gripper motor's effort


def test_malformed_follower_states_are_named(contract, cal):
    states = FollowerStates(contract, cal)
    names, values = follower_msg(contract, [0.0] * 6, 1.0, 0.05)
    with pytest.raises(FollowerStateError, match=r"follower_left/joint_states: joints \['left_finger'\] missing"):
        states.update("left", names[:7] + ["finger"] + names[8:], values, [], [], None, 0, 0.0)
    with pytest.raises(FollowerStateError, match="NaN/inf for \\['elbow'\\]"):
        states.update("left", names, [0, 0, float("nan"), *values[3:]], [], [], None, 0, 0.0)
    with pytest.raises(FollowerStateError, match="9 names but 3 values"):
        states.update("left", names, values[:3], [], [], None, 0, 0.0)


def test_stale_arms_by_arrival_time(contract, cal):
    states = FollowerStates(contract, cal)
    assert states.stale_arms(now_s=0.0, max_age_s=1.0) == ["left", "right"]  # never heard of
    names, values = follower_msg(contract, [0.0] * 6, 1.0, 0.05)
    states.update("left", names, values, [], [], None, 0, received_s=10.0)
    states.update("right", names, values, [], [], None, 0, received_s=10.05)
    assert states.stale_arms(now_s=10.1, max_age_s=0.1) == []
    assert states.stale_arms(now_s=10.12, max_age_s=0.1) == ["left"]


def test_gripper_round_trip_through_the_fake_arm(contract, cal):
    """Command normalisation (joint) and observation normalisation (finger) agree on a calibrated gripper."""
    arm = FakeArm(contract, cal, time_constant_s=0.01)
    arm.torque("group", "all", True)
    arm.set_mode("single", "gripper", "current_based_position")
    states = FollowerStates(contract, cal)
    for g in (0.0, 0.25, 1.0):
        command = arm_commands(contract, np.array([0, -0.96, 1.16, 0, -0.3, 0, g] * 2), cal)[0]
        arm.command_single("gripper", command.gripper_position)
        for _ in range(200):
            arm.step(0.01)
        position, _ = arm.joint_states()
        for side in contract.arms:
            states.update(side, contract.follower_joint_names, position, [], [], None, 0, 0.0)
        assert states.observation().position[6] == pytest.approx(g, abs=1e-6)
        assert states.measured_for_commands()[6] == pytest.approx(g, abs=1e-6)


def test_refusals_are_logged_once_per_reason_per_interval():
    log = ReasonLog(interval_s=1.0)
    assert log.record("step", 0.0) == 0
    assert log.record("step", 0.5) is None
    assert log.record("invalid", 0.6) == 0  # another reason is not throttled by the first
    assert log.record("step", 0.9) is None
    assert log.record("step", 1.1) == 2  # logged again, saying how many were suppressed
    assert log.counts == {"step": 4, "invalid": 1} and log.total == 5
    assert log.summary() == "invalid 1, step 4"


def test_service_names(contract):
    # relative, like xs_sdk's own names: resolved under the robot namespace of the driver
    assert interbotix_service(contract, "torque_enable", "follower_left") == "follower_left/torque_enable"
    assert interbotix_service(contract, "set_operating_modes", "leader_right") == "leader_right/set_operating_modes"
