"""The joint model behind the fake Interbotix driver: one arm's motors, torque, operating modes, registers.

Plain Python so that its rules are tested without ROS. The rules it keeps from the real motors: a joint moves
only while torqued on and in a position-type mode; enabling torque makes the goal the present position (an
X-series motor does not jump to an old goal); a reboot leaves the motor limp unless asked to torque on; a
group command must carry one value per joint of the group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from aloha_contract.contract import Contract, GripperCalibration

from .interbotix_bridge import ARM_GROUP, FOLLOWER_ARM_MODE, GRIPPER_JOINT

OPERATING_MODES = ("position", "ext_position", "velocity", "current", "current_based_position", "pwm",
                   "linear_position")
POSITION_MODES = ("position", "ext_position", "current_based_position", "linear_position")
PROFILE_TYPES = ("velocity", "time")
ALL_GROUP = "all"  # xs_sdk's name for every joint
INITIAL_GRIPPER_MODE = "linear_position"  # what Interbotix's ALOHA mode files load; the driver changes it


class FakeArmError(ValueError):
    """A command or request the real xs_sdk would reject (unknown name, wrong length, unknown mode)."""


@dataclass(frozen=True)
class JointInfo:
    mode: str
    profile_type: str
    joint_names: list[str]
    joint_ids: list[int]
    lower_limits: list[float]
    upper_limits: list[float]
    velocity_limits: list[float]
    sleep_positions: list[float]
    joint_state_indices: list[int]


class FakeArm:
    """Seven motors (six arm joints and the gripper) following their goals with a first-order lag.

    Args:
        contract: joint names, limits and the follower joint_states layout.
        calibration: maps the gripper joint to the finger position (open to open, closed to closed).
        time_constant_s: the lag of every joint.
    """

    def __init__(self, contract: Contract, calibration: GripperCalibration, time_constant_s: float = 0.05) -> None:
        self.contract = contract
        self.calibration = calibration
        self.time_constant_s = float(time_constant_s)
        self.arm_joints = list(contract.arm_joints)
        self.joints = [*self.arm_joints, GRIPPER_JOINT]
        # the contract's start pose (above the table, gripper in view of the wrist camera), gripper open
        gripper_open = calibration.follower_gripper_joint_rad.open
        self.position = np.array([*contract.start_arm_joints_rad, gripper_open], dtype=np.float64)
        self.velocity = np.zeros(len(self.joints))
        self.goal = self.position.copy()
        self.torqued = np.zeros(len(self.joints), dtype=bool)
        self.modes = [FOLLOWER_ARM_MODE] * len(self.arm_joints) + [INITIAL_GRIPPER_MODE]
        self.profile_types = ["velocity"] * len(self.joints)
        self.registers: dict[tuple[str, str], int] = {}

    # ---- names ----
    def resolve(self, cmd_type: str, name: str) -> list[int]:
        """Indices of the joints a ('group' | 'single', name) request addresses."""
        if cmd_type == "group":
            if name == ARM_GROUP:
                return list(range(len(self.arm_joints)))
            if name == ALL_GROUP:
                return list(range(len(self.joints)))
            raise FakeArmError(f"group '{name}' does not exist (groups: ['{ARM_GROUP}', '{ALL_GROUP}'])")
        if cmd_type == "single":
            if name in self.joints:
                return [self.joints.index(name)]
            raise FakeArmError(f"joint '{name}' does not exist (joints: {self.joints})")
        raise FakeArmError(f"cmd_type '{cmd_type}' must be 'group' or 'single'")

    # ---- services ----
    def torque(self, cmd_type: str, name: str, enable: bool) -> None:
        for i in self.resolve(cmd_type, name):
            if enable and not self.torqued[i]:
                self.goal[i] = self.position[i]
            self.torqued[i] = bool(enable)

    def set_mode(self, cmd_type: str, name: str, mode: str, profile_type: str = "velocity") -> None:
        if mode not in OPERATING_MODES:
            raise FakeArmError(f"operating mode '{mode}' is not one of {OPERATING_MODES}")
        if profile_type not in PROFILE_TYPES:
            raise FakeArmError(f"profile type '{profile_type}' is not one of {PROFILE_TYPES}")
        for i in self.resolve(cmd_type, name):
            self.modes[i] = mode
            self.profile_types[i] = profile_type
            self.goal[i] = self.position[i]

    def reboot(self, cmd_type: str, name: str, enable: bool) -> None:
        indices = self.resolve(cmd_type, name)
        for i in indices:
            self.torqued[i] = False
        if enable:
            for i in indices:
                self.torque("single", self.joints[i], True)

    def set_register(self, cmd_type: str, name: str, reg: str, value: int) -> None:
        for i in self.resolve(cmd_type, name):
            if reg == "Torque_Enable":
                self.torque("single", self.joints[i], bool(value))
            else:
                self.registers[(self.joints[i], reg)] = int(value)

    def get_register(self, cmd_type: str, name: str, reg: str) -> list[int]:
        indices = self.resolve(cmd_type, name)
        if reg == "Torque_Enable":
            return [int(self.torqued[i]) for i in indices]
        return [self.registers.get((self.joints[i], reg), 0) for i in indices]

    def info(self, cmd_type: str, name: str) -> JointInfo:
        indices = self.resolve(cmd_type, name)
        limits = self.contract.joint_limits_rad
        velocity = self.contract.raw.get("safety", {}).get("joint_velocity_limits_rad_s", {})
        gripper = self.calibration.follower_gripper_joint_rad
        lower = [limits[i][0] if i < len(limits) else min(gripper.open, gripper.close) for i in indices]
        upper = [limits[i][1] if i < len(limits) else max(gripper.open, gripper.close) for i in indices]
        return JointInfo(
            mode=self.modes[indices[0]], profile_type=self.profile_types[indices[0]],
            joint_names=[self.joints[i] for i in indices], joint_ids=[i + 1 for i in indices],
            lower_limits=lower, upper_limits=upper,
            velocity_limits=[float(velocity.get(self.joints[i], math.pi)) for i in indices],
            sleep_positions=[0.0 for _ in indices], joint_state_indices=indices)

    # ---- commands ----
    def command_group(self, name: str, cmd: list[float]) -> list[tuple[str, str]]:
        """Set the goals of a group; returns the (joint, why) commands the motors ignore."""
        indices = self.resolve("group", name)
        if len(cmd) != len(indices):
            raise FakeArmError(f"group '{name}' has {len(indices)} joints but the command has {len(cmd)} values")
        return [ignored for i, value in zip(indices, cmd, strict=True) if (ignored := self._set_goal(i, value))]

    def command_single(self, name: str, value: float) -> list[tuple[str, str]]:
        ignored = self._set_goal(self.resolve("single", name)[0], value)
        return [ignored] if ignored else []

    def _set_goal(self, i: int, value: float) -> tuple[str, str] | None:
        if not self.torqued[i]:
            return self.joints[i], "torque off"
        if self.modes[i] not in POSITION_MODES:
            return self.joints[i], f"mode '{self.modes[i]}': the fake moves only in position modes"
        if not math.isfinite(value):
            return self.joints[i], "not a finite number"
        if self.modes[i] == "linear_position":  # a distance between the fingers (m) -> gripper joint angle
            value = self._finger_to_joint(value / 2.0)
        self.goal[i] = float(value)
        return None

    # ---- motion ----
    def step(self, dt_s: float) -> None:
        """Advance the motors by `dt_s`: every torqued joint in a position mode closes in on its goal."""
        if dt_s <= 0:
            return
        alpha = 1.0 - math.exp(-dt_s / self.time_constant_s)
        moving = self.torqued & np.array([m in POSITION_MODES for m in self.modes])
        before = self.position.copy()
        self.position[moving] += alpha * (self.goal[moving] - self.position[moving])
        self.velocity = (self.position - before) / dt_s

    def joint_states(self) -> tuple[np.ndarray, np.ndarray]:
        """Positions and velocities in the follower layout: 6 joints, gripper, left_finger, right_finger."""
        finger = self._joint_to_finger(self.position[-1])
        finger_velocity = self.velocity[-1] * self._finger_per_joint()
        position = np.array([*self.position, finger, -finger])
        velocity = np.array([*self.velocity, finger_velocity, -finger_velocity])
        order = {n: i for i, n in enumerate([*self.joints, "left_finger", "right_finger"])}
        index = [order[n] for n in self.contract.follower_joint_names]
        return position[index], velocity[index]

    def _finger_per_joint(self) -> float:
        j, f = self.calibration.follower_gripper_joint_rad, self.calibration.follower_finger_position_m
        return (f.open - f.close) / (j.open - j.close)

    def _joint_to_finger(self, joint: float) -> float:
        j, f = self.calibration.follower_gripper_joint_rad, self.calibration.follower_finger_position_m
        return f.close + (joint - j.close) * self._finger_per_joint()

    def _finger_to_joint(self, finger: float) -> float:
        j, f = self.calibration.follower_gripper_joint_rad, self.calibration.follower_finger_position_m
        return j.close + (finger - f.close) / self._finger_per_joint()
