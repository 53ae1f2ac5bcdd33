"""Translation between the 14-D robot contract and the per-arm Interbotix interfaces (plain Python, no ROS).

The real-robot driver node only wires topics to these pieces:
- :func:`arm_commands`: a 14-D command -> per follower arm, the 'arm' group targets and the gripper joint
  target (normalised gripper -> follower gripper *joint*, index 6 of joint_states);
- :class:`FollowerStates`: the latest follower joint_states of both arms -> the 14-D state (gripper from the
  *finger position*, ``contract.follower_finger_index``), the same in command space for the safety gate
  (gripper *joint*, ``contract.follower_gripper_index``), and their staleness;
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aloha_contract.contract import Contract, GripperCalibration
from aloha_contract.gripper import follower_targets_from_command, qpos_from_follower_positions

ARM_GROUP = "arm"  # the joint group of the six arm joints in Interbotix motor configs
GRIPPER_JOINT = "gripper"  # the gripper's single joint

# Operating modes the driver sets on the followers at start, as the ALOHA stack does: the arm tracks joint
# positions; the gripper tracks a position with a current limit, so that it squeezes an object instead of
# overloading its motor.
FOLLOWER_ARM_MODE = "position"
FOLLOWER_GRIPPER_MODE = "current_based_position"

# Services of Interbotix's xs_sdk node, under the robot's namespace (interbotix_xs_sdk/src/xs_sdk_obj.cpp); relative,
# like the contract's topics, so that a namespace over the whole robot applies.
# A contract `services` entry named interbotix_<key> (e.g. `interbotix_torque_enable: "{arm_robot}/torque_enable"`)
# takes precedence.
INTERBOTIX_SERVICES = {
    "torque_enable": "{arm_robot}/torque_enable",  # interbotix_xs_msgs/TorqueEnable
    "set_operating_modes": "{arm_robot}/set_operating_modes",  # OperatingModes
    "reboot_motors": "{arm_robot}/reboot_motors",  # Reboot
    "get_robot_info": "{arm_robot}/get_robot_info",  # RobotInfo
    "set_motor_registers": "{arm_robot}/set_motor_registers",  # RegisterValues
    "get_motor_registers": "{arm_robot}/get_motor_registers",  # RegisterValues
}


class FollowerStateError(ValueError):
    """A follower joint_states message that does not carry the Interbotix layout."""


def interbotix_service(contract: Contract, key: str, robot: str) -> str:
    """The name of an xs_sdk service of `robot`, e.g. ``follower_left/torque_enable``."""
    template = contract.raw.get("services", {}).get(f"interbotix_{key}") or INTERBOTIX_SERVICES[key]
    return str(template).format(arm_robot=robot)


@dataclass(frozen=True)
class ArmCommand:
    """What one follower arm is sent for one 14-D command."""

    robot: str  # e.g. follower_left
    arm_positions: tuple[float, ...]  # the 'arm' group, in the contract's arm joint order (rad)
    gripper_position: float  # follower gripper joint (rad)


def arm_commands(contract: Contract, target: np.ndarray, calibration: GripperCalibration) -> list[ArmCommand]:
    """A checked 14-D target -> one :class:`ArmCommand` per follower arm, arms in contract order."""
    per_arm = follower_targets_from_command(contract, np.asarray(target, dtype=np.float64), calibration)
    return [ArmCommand(contract.follower_robot(arm), tuple(float(v) for v in joints), float(gripper))
            for arm, (joints, gripper) in zip(contract.arms, per_arm, strict=True)]


def positions_by_name(names: Sequence[str], values: Sequence[float], wanted: Sequence[str], what: str) -> np.ndarray:
    """``values`` of the joints ``wanted``, in that order, from a message's parallel name/value lists."""
    if len(values) != len(names):
        raise FollowerStateError(f"{what}: {len(names)} names but {len(values)} values (malformed message)")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise FollowerStateError(f"{what}: joints {missing} missing (got {list(names)}); expected the Interbotix "
                                 f"layout {list(wanted)}")
    out = np.array([values[index[n]] for n in wanted], dtype=np.float64)
    bad = [n for n, v in zip(wanted, out, strict=True) if not np.isfinite(v)]
    if bad:
        raise FollowerStateError(f"{what}: NaN/inf for {bad}")
    return out


@dataclass
class _ArmSample:
    position: np.ndarray  # the 9 follower values in contract order
    velocity: np.ndarray | None
    effort: np.ndarray | None
    stamp: object  # the source message's stamp, passed through untouched
    stamp_ns: int
    received_s: float
    fresh: bool = True  # not yet part of a published 14-D state


@dataclass
class Observation:
    """The 14-D state assembled from both arms."""

    position: np.ndarray
    velocity: np.ndarray | None  # None unless every arm reported velocities
    effort: np.ndarray | None
    stamp: object  # the older of the arms' stamps: the state is no newer than its oldest part


class FollowerStates:
    """The latest joint_states of each follower arm, and the 14-D state made from them.

    Args:
        contract: joint order, follower layout and the arms.
        calibration: the gripper calibration profile of this robot.
    """

    def __init__(self, contract: Contract, calibration: GripperCalibration) -> None:
        self.contract = contract
        self.calibration = calibration
        self.layout = contract.follower_joint_names
        self._arms: dict[str, _ArmSample] = {}

    def update(self, arm: str, names: Sequence[str], position: Sequence[float], velocity: Sequence[float],
               effort: Sequence[float], stamp: object, stamp_ns: int, received_s: float) -> None:
        """Store one follower message of `arm` (raises :class:`FollowerStateError` for a malformed one)."""
        what = self.contract.follower_joint_states_topic(arm)
        pos = positions_by_name(names, position, self.layout, what)
        # velocity and effort are optional in JointState: use them only when complete
        vel = positions_by_name(names, velocity, self.layout, what) if len(velocity) == len(names) else None
        eff = positions_by_name(names, effort, self.layout, what) if len(effort) == len(names) else None
        self._arms[arm] = _ArmSample(pos, vel, eff, stamp, int(stamp_ns), float(received_s))

    def complete(self) -> bool:
        return all(arm in self._arms for arm in self.contract.arms)

    def stale_arms(self, now_s: float, max_age_s: float) -> list[str]:
        """Arms whose latest message arrived more than `max_age_s` ago, or never."""
        return [arm for arm in self.contract.arms
                if arm not in self._arms or now_s - self._arms[arm].received_s > max_age_s]

    def take_if_fresh(self) -> Observation | None:
        """The 14-D state once every arm has a message not yet used, else None (one state per pair of messages)."""
        if not self.complete() or not all(self._arms[arm].fresh for arm in self.contract.arms):
            return None
        for arm in self.contract.arms:
            self._arms[arm].fresh = False
        return self.observation()

    def observation(self) -> Observation:
        """The 14-D state in the ACT convention: gripper = normalised finger position (follower_finger_index)."""
        c = self.contract
        samples = [self._arms[arm] for arm in c.arms]
        position = qpos_from_follower_positions(c, [s.position for s in samples], self.calibration)
        arm, finger_i, gripper_i = c.follower_arm_indices, c.follower_finger_index, c.follower_gripper_index
        velocity = effort = None
        if all(s.velocity is not None for s in samples):
            finger = self.calibration.follower_finger_position_m
            velocity = np.concatenate([np.append(s.velocity[arm], s.velocity[finger_i] / (finger.open - finger.close))
                                       for s in samples])
        if all(s.effort is not None for s in samples):
            # gripper: the gripper motor's effort
            effort = np.concatenate([np.append(s.effort[arm], s.effort[gripper_i]) for s in samples])
        oldest = min(samples, key=lambda s: s.stamp_ns)
        return Observation(position, velocity, effort, oldest.stamp)

    def measured_for_commands(self) -> np.ndarray:
        """The measured state in *command* space: gripper = normalised gripper joint (follower_gripper_index).

        The safety gate compares targets with this, so that a gripper target is compared with the same
        joint, through the same calibration, that executes it.
        """
        c = self.contract
        joint_range = self.calibration.follower_gripper_joint_rad
        out = []
        for arm in c.arms:
            pos = self._arms[arm].position
            out.extend([*pos[c.follower_arm_indices], joint_range.normalize(pos[c.follower_gripper_index])])
        return np.array(out, dtype=np.float64)
