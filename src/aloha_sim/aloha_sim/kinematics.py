"""Arm kinematics of the ViperX 300 S in the sim model: tool-point pose and inverse kinematics."""

from __future__ import annotations

from collections.abc import Sequence

import mujoco
import numpy as np

# tool point: on the gripper link's x axis, between the finger pads (finger meshes span 0.064-0.154 m)
TOOL_OFFSET_M = 0.12
MAX_IK_STEP_RAD = 0.2


def quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64))
    return out


def axis_angle_quat(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, dtype=np.float64), float(angle_rad))
    return out


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
        self._idx = {n: list(joint_names).index(n) for n in ("waist", "shoulder", "elbow", "forearm_roll",
                                                               "wrist_angle", "wrist_rotate")}
        self._forearm = model.body(f"vx300s_{arm}/lower_forearm_link").id
        self._wrist = model.body(f"vx300s_{arm}/wrist_link").id
        # the wrist is spherical: forearm roll, wrist angle and wrist rotate axes meet at wrist_link's origin
        self._wrist_to_tool_m = float(model.body_pos[self.body][0]) + tool_offset_m
        self.base_pos = model.body(f"vx300s_{arm}").pos.copy()  # the arm's root body sits in the world frame
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

    def solve(self, pos: Sequence[float], quat: Sequence[float], q_prev: Sequence[float]) -> tuple[np.ndarray, float]:
        """Joint angles for a tool pose; returns (q, residual of the tool pose).

        Places the wrist centre with waist/shoulder/elbow (least squares from ``q_prev``), then splits
        the remaining rotation into forearm roll, wrist angle and wrist rotate in closed form, forearm
        roll within +-pi/2. A 6-joint least-squares solve instead drifts along the roll/rotate null
        space whenever the wrist passes through straight and ends with both rolled by pi.
        """
        idx = self._idx
        q = np.asarray(q_prev, dtype=np.float64).copy()
        target_rot = np.zeros(9)
        mujoco.mju_quat2Mat(target_rot, np.asarray(quat, dtype=np.float64))
        target_rot = target_rot.reshape(3, 3)
        centre = np.asarray(pos, dtype=np.float64) - self._wrist_to_tool_m * target_rot[:, 0]
        arm_cols = np.array([idx["waist"], idx["shoulder"], idx["elbow"]])
        for _ in range(50):
            self._set(q)
            err = centre - self.data.xpos[self._wrist]
            if np.linalg.norm(err) < 1e-6:
                break
            mujoco.mj_jac(self.model, self.data, self._jacp, self._jacr, self.data.xpos[self._wrist],
                          self._wrist)
            jac = self._jacp[:, self.dof_adr[arm_cols]]
            step = np.linalg.solve(jac.T @ jac + 1e-4 * np.eye(3), jac.T @ err)
            step *= min(1.0, MAX_IK_STEP_RAD / float(np.max(np.abs(step))))  # no overshoot to the far side
            q[arm_cols] = np.clip(q[arm_cols] + step, self.lower[arm_cols], self.upper[arm_cols])
        q_roll0 = q.copy()
        q_roll0[idx["forearm_roll"]] = 0.0
        self._set(q_roll0)
        rel = self.data.xmat[self._forearm].reshape(3, 3).T @ target_rot  # = Rx(roll) Ry(angle) Rx(rotate)
        prev = q[[idx["forearm_roll"], idx["wrist_angle"], idx["wrist_rotate"]]]
        q[[idx["forearm_roll"], idx["wrist_angle"], idx["wrist_rotate"]]] = _xyx_nearest(rel, prev)
        p, cur = self.tool_pose(q)
        rot_err = np.zeros(3)
        conj = np.zeros(4)
        mujoco.mju_negQuat(conj, cur)
        mujoco.mju_quat2Vel(rot_err, quat_mul(np.asarray(quat, dtype=np.float64), conj), 1.0)
        return q, float(np.linalg.norm(np.concatenate([np.asarray(pos) - p, rot_err])))


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    return (np.asarray(angle) + np.pi) % (2 * np.pi) - np.pi


def _xyx_nearest(rot: np.ndarray, prev: np.ndarray) -> np.ndarray:
    """Angles (a, b, c) with rot = Rx(a) Ry(b) Rx(c): forearm roll a within +-pi/2 (the arm's
    natural, unflipped wrist); at a straight wrist only a + c is defined and a stays at ``prev``."""
    b = float(np.arccos(np.clip(rot[0, 0], -1.0, 1.0)))
    if abs(np.sin(b)) < 1e-3:
        total = float(np.arctan2(rot[2, 1], rot[1, 1]))
        return np.array([prev[0], b, _wrap(total - prev[0])])
    candidates = []
    for sb in (np.sin(b), -np.sin(b)):
        a = np.arctan2(rot[1, 0] / sb, -rot[2, 0] / sb)
        c = np.arctan2(rot[0, 1] / sb, rot[0, 2] / sb)
        candidates.append(np.array([a, b if sb > 0 else -b, c]))
    return min(candidates, key=lambda cand: (abs(cand[0]) > np.pi / 2, float(np.sum(np.abs(_wrap(cand - prev))))))
