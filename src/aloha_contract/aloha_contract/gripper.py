"""Conversions between the 14-D ACT vectors and per-arm Interbotix quantities.

Observation grippers come from the follower *finger position* (joint_states index 7,
``contract.follower_finger_index``); commands are executed on the follower *gripper joint* (index 6,
``contract.follower_gripper_index``). Keeping both directions here, next to the calibration, avoids the
index-6/index-7 confusion that makes real grippers oscillate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .contract import Contract, GripperCalibration


def qpos_from_follower_positions(contract: Contract, arm_positions: Sequence[Sequence[float]],
                                 calibration: GripperCalibration) -> np.ndarray:
    """Per-arm follower joint_states positions (9 values each, arms in contract order) -> 14-D qpos."""
    n_joints = len(contract.arm_joints)
    out = np.empty(len(contract.joint_names), dtype=np.float64)
    for i, positions in enumerate(arm_positions):
        if len(positions) != len(contract.follower_joint_names):
            raise ValueError(f"{contract.arms[i]} follower joint_states: got {len(positions)} positions, "
                             f"expected {len(contract.follower_joint_names)} ({contract.follower_joint_names})")
        base = i * (n_joints + 1)
        out[base:base + n_joints] = [positions[j] for j in contract.follower_arm_indices]
        out[base + n_joints] = calibration.follower_finger_position_m.normalize(
            positions[contract.follower_finger_index])
    return out


def follower_targets_from_command(contract: Contract, command: np.ndarray,
                                  calibration: GripperCalibration) -> list[tuple[np.ndarray, float]]:
    """14-D command -> per arm (6 joint targets in rad, follower gripper joint target in rad)."""
    n_joints = len(contract.arm_joints)
    targets = []
    for i in range(len(contract.arms)):
        base = i * (n_joints + 1)
        gripper = calibration.follower_gripper_joint_rad.unnormalize(float(command[base + n_joints]))
        targets.append((np.asarray(command[base:base + n_joints], dtype=np.float64), gripper))
    return targets


def leader_command_from_positions(contract: Contract, arm_positions: Sequence[Sequence[float]],
                                  calibration: GripperCalibration) -> np.ndarray:
    """Leader arms' joint positions (teleoperation) -> 14-D action (gripper from the leader gripper joint)."""
    n_joints = len(contract.arm_joints)
    out = np.empty(len(contract.joint_names), dtype=np.float64)
    for i, positions in enumerate(arm_positions):
        base = i * (n_joints + 1)
        out[base:base + n_joints] = positions[:n_joints]
        out[base + n_joints] = calibration.leader_gripper_joint_rad.normalize(positions[n_joints])
    return out
