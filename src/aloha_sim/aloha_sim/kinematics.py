"""Arm kinematics of the ViperX 300 S in the sim model: gripper tool-point pose and damped least-squares IK."""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

# tool point: on the gripper link's x axis, between the finger pads (finger meshes span 0.064-0.154 m)
TOOL_OFFSET_M = 0.12


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out


def axis_angle_quat(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, dtype=np.float64), float(angle_rad))
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, s: float) -> np.ndarray:
    """Spherical interpolation between unit quaternions (shortest path), s in [0, 1]."""
    q0, q1 = np.asarray(q0, dtype=np.float64), np.asarray(q1, dtype=np.float64)
    dot = float(np.dot(q0, q1))
    if dot < 0.0:
        q1, dot = -q1, -dot
    if dot > 0.9995:
        q = q0 + s * (q1 - q0)
        return q / np.linalg.norm(q)
    theta = np.arccos(dot)
    return (np.sin((1 - s) * theta) * q0 + np.sin(s * theta) * q1) / np.sin(theta)


class ArmKinematics:
    """Forward and inverse kinematics of one arm's tool point, on a private copy of the model state."""

    def __init__(self, model: mujoco.MjModel, arm: str, joint_names: Sequence[str],
                 tool_offset_m: float = TOOL_OFFSET_M) -> None:
        self.model = model
        self.data = mujoco.MjData(model)
        self.arm = arm
        joints = [model.joint(f"vx300s_{arm}/{j}") for j in joint_names]
        self.qpos_adr = np.array([model.jnt_qposadr[j.id] for j in joints])
        self.dof_adr = np.array([model.jnt_dofadr[j.id] for j in joints])
        self.lower = np.array([model.jnt_range[j.id][0] for j in joints])
        self.upper = np.array([model.jnt_range[j.id][1] for j in joints])
        self.body = model.body(f"vx300s_{arm}/gripper_link").id
        self.tool_offset = np.array([tool_offset_m, 0.0, 0.0])
        self._jacp = np.zeros((3, model.nv))
        self._jacr = np.zeros((3, model.nv))

    def _set(self, q: np.ndarray) -> None:
        self.data.qpos[self.qpos_adr] = q
        mujoco.mj_kinematics(self.model, self.data)
        mujoco.mj_comPos(self.model, self.data)

    def tool_pose(self, q: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
        """World position and quaternion (wxyz) of the tool point for joint angles ``q``."""
        self._set(np.asarray(q, dtype=np.float64))
        rot = self.data.xmat[self.body].reshape(3, 3)
        return self.data.xpos[self.body] + rot @ self.tool_offset, self.data.xquat[self.body].copy()

    def solve(self, pos: Sequence[float], quat: Sequence[float], q_init: Sequence[float],
              iterations: int = 60, damping: float = 1e-2, tol: float = 1e-4) -> tuple[np.ndarray, float]:
        """Joint angles putting the tool point at ``pos`` with orientation ``quat``; returns (q, error)."""
        q = np.asarray(q_init, dtype=np.float64).copy()
        target_pos = np.asarray(pos, dtype=np.float64)
        target_quat = np.asarray(quat, dtype=np.float64)
        err = np.zeros(6)
        conj = np.zeros(4)
        dq_quat = np.zeros(4)
        for _ in range(iterations):
            p, cur_quat = self.tool_pose(q)
            err[:3] = target_pos - p
            mujoco.mju_negQuat(conj, cur_quat)
            mujoco.mju_mulQuat(dq_quat, target_quat, conj)
            mujoco.mju_quat2Vel(err[3:], dq_quat, 1.0)
            if np.linalg.norm(err) < tol:
                break
            mujoco.mj_jac(self.model, self.data, self._jacp, self._jacr, p, self.body)
            jac = np.vstack([self._jacp[:, self.dof_adr], self._jacr[:, self.dof_adr]])
            step = jac.T @ np.linalg.solve(jac @ jac.T + damping**2 * np.eye(6), err)
            q = np.clip(q + step, self.lower, self.upper)
        return q, float(np.linalg.norm(err))
