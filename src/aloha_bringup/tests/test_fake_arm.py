"""The fake Interbotix arm keeps the motors' rules: torque before motion, position modes, whole groups."""

import numpy as np
import pytest

from aloha_bringup.fake_arm import FakeArm, FakeArmError
from aloha_contract import load_contract

START_ARM_POSE = np.array(load_contract().start_arm_joints_rad)  # the arms start in the contract's start pose


@pytest.fixture
def arm():
    contract = load_contract()
    return FakeArm(contract, contract.gripper_calibration("real"), time_constant_s=0.05)


def settle(arm, seconds=1.0, dt=0.01):
    for _ in range(int(seconds / dt)):
        arm.step(dt)


def arm_positions(arm):
    position, _ = arm.joint_states()
    return position[:6]


def test_nothing_moves_without_torque(arm):
    target = [0.2, -0.8, 1.0, 0.1, -0.2, 0.1]
    ignored = arm.command_group("arm", target)
    assert [why for _, why in ignored] == ["torque off"] * 6
    settle(arm)
    assert arm_positions(arm) == pytest.approx(START_ARM_POSE)


def test_torqued_joints_follow_a_first_order_lag(arm):
    arm.torque("group", "arm", True)
    target = np.array([0.2, -0.8, 1.0, 0.1, -0.2, 0.1])
    assert arm.command_group("arm", list(target)) == []
    arm.step(0.05)  # one time constant: 1 - 1/e of the way
    moved = (arm_positions(arm) - START_ARM_POSE) / (target - START_ARM_POSE)
    assert moved[np.isfinite(moved)] == pytest.approx(1 - np.exp(-1), rel=1e-6)
    settle(arm)
    assert arm_positions(arm) == pytest.approx(target, abs=1e-6)
    _, velocity = arm.joint_states()
    assert np.all(np.abs(velocity[:6]) < 1e-3)


def test_enabling_torque_holds_the_present_position(arm):
    arm.torque("group", "arm", True)
    arm.command_group("arm", [0.3] * 6)
    arm.torque("group", "arm", False)
    arm.torque("group", "arm", True)  # the old goal is forgotten, as on an X-series motor
    settle(arm)
    assert arm_positions(arm) == pytest.approx(START_ARM_POSE)


def test_modes_and_requests_the_sdk_would_reject(arm):
    arm.torque("group", "all", True)
    arm.set_mode("group", "arm", "pwm")
    assert [why for _, why in arm.command_group("arm", [0.0] * 6)][0].startswith("mode 'pwm'")
    with pytest.raises(FakeArmError, match="6 joints but the command has 7"):
        arm.command_group("arm", [0.0] * 7)
    with pytest.raises(FakeArmError, match="group 'arms' does not exist"):
        arm.torque("group", "arms", True)
    with pytest.raises(FakeArmError, match="joint 'finger' does not exist"):
        arm.command_single("finger", 0.0)
    with pytest.raises(FakeArmError, match="operating mode 'servo'"):
        arm.set_mode("single", "gripper", "servo")


def test_reboot_registers_and_info(arm):
    arm.torque("group", "all", True)
    arm.reboot("single", "gripper", enable=False)
    assert arm.get_register("single", "gripper", "Torque_Enable") == [0]
    assert arm.get_register("group", "arm", "Torque_Enable") == [1] * 6
    arm.reboot("single", "gripper", enable=True)
    assert arm.get_register("group", "all", "Torque_Enable") == [1] * 7
    arm.set_register("group", "arm", "Position_P_Gain", 800)
    assert arm.get_register("single", "elbow", "Position_P_Gain") == [800]
    arm.set_mode("single", "gripper", "current_based_position")
    info = arm.info("single", "gripper")
    assert info.mode == "current_based_position" and info.joint_names == ["gripper"]
    assert arm.info("group", "arm").joint_names[0] == "waist"


def test_fingers_follow_the_gripper_joint(arm):
    cal = arm.calibration
    arm.torque("single", "gripper", True)
    arm.set_mode("single", "gripper", "current_based_position")
    arm.command_single("gripper", cal.follower_gripper_joint_rad.close)
    settle(arm)
    position, _ = arm.joint_states()
    names = arm.contract.follower_joint_names
    assert position[names.index("left_finger")] == pytest.approx(cal.follower_finger_position_m.close)
    assert position[names.index("right_finger")] == pytest.approx(-cal.follower_finger_position_m.close)
    arm.set_mode("single", "gripper", "linear_position")  # commands the distance between the fingers (m)
    arm.command_single("gripper", 2 * cal.follower_finger_position_m.open)
    settle(arm)
    position, _ = arm.joint_states()
    assert position[names.index("gripper")] == pytest.approx(cal.follower_gripper_joint_rad.open)
