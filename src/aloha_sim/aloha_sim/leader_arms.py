"""What the leader arms report for a 14-D command: the simulated operator's side of teleoperation (no ROS).

The simulated leader replays a scripted demonstration as if a person moved the leader arms. Per arm it
publishes the Interbotix joint_states layout (the contract's ``follower_joint_names``: xs_sdk reports leaders
and followers alike) whose arm joints are the command's and whose gripper joint is the command's normalised
gripper on the *leader* calibration: teleop, which normalises the leader gripper joint with that calibration,
then commands exactly the demonstration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aloha_contract import Contract
from aloha_contract.contract import GripperCalibration


@dataclass(frozen=True)
class LeaderJointState:
    """One leader arm's joint_states: names in the Interbotix layout and their positions."""

    robot: str  # e.g. leader_left
    names: list[str]
    position: np.ndarray


def leader_robots(contract: Contract) -> dict[str, str]:
    """Arm -> leader robot name (``leader_robots`` of the contract)."""
    robots = contract.raw.get("leader_robots") or {}
    missing = [arm for arm in contract.arms if arm not in robots]
    if missing:
        raise KeyError(f"{contract.source}: leader_robots lacks {missing} (e.g. leader_robots: "
                       f"{{left: leader_left, right: leader_right}})")
    return {arm: str(robots[arm]) for arm in contract.arms}


def leader_joint_states(contract: Contract, command: Sequence[float],
                        calibration: GripperCalibration) -> dict[str, LeaderJointState]:
    """A 14-D command -> per arm the leader joint_states that teleop maps back to it."""
    command = np.asarray(command, dtype=np.float64)
    if command.shape != (len(contract.joint_names),):
        raise ValueError(f"command has shape {command.shape}, expected ({len(contract.joint_names)},) in the order "
                         f"{contract.joint_names}")
    names = contract.follower_joint_names
    per_arm = len(contract.arm_joints) + 1
    robots = leader_robots(contract)
    known = {*contract.follower_arm_indices, contract.follower_gripper_index, contract.follower_finger_index}
    other_fingers = [j for j in range(len(names)) if j not in known]  # right_finger in the Interbotix layout
    states = {}
    for i, arm in enumerate(contract.arms):
        row = command[i * per_arm:(i + 1) * per_arm]
        gripper = float(row[-1])
        position = np.zeros(len(names))
        position[contract.follower_arm_indices] = row[:-1]
        position[contract.follower_gripper_index] = calibration.leader_gripper_joint_rad.unnormalize(gripper)
        # the leader's fingers are not read by teleop; they open with the gripper, mirrored as Interbotix reports them
        finger_m = calibration.follower_finger_position_m.unnormalize(gripper)
        position[contract.follower_finger_index] = finger_m
        position[other_fingers] = -finger_m
        states[arm] = LeaderJointState(robots[arm], list(names), position)
    return states
