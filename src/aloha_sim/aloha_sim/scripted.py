"""Scripted demonstrations: tool-point waypoints per arm, turned into 14-D joint commands by IK.

The plan depends only on the object poses at reset, so a ROS driver can compute it from the
reset service's answer and stream it. Waypoints follow ACT's scripted policies in spirit (approach,
descend, close, lift, meet in the middle); the heights, timings and gripper values are our own,
tuned so that the plan succeeds when executed through the joint-controlled scene.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from aloha_contract import Contract, load_contract

from .kinematics import ArmKinematics, axis_angle_quat, quat_mul, slerp
from .scene import load_model
from .stages import REST_HEIGHT_M
from .tasks import START_ARM_JOINTS_RAD, START_FINGER_POSITION_M, Pose, TaskSpec, load_task

OPEN = 1.0
CLOSED = 0.0


@dataclass(frozen=True)
class Waypoint:
    """Tool point target reached at control step ``step`` (linear in between)."""

    step: int
    pos: np.ndarray
    quat: np.ndarray
    gripper: float


def gripper_quat(arm: str, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Tool orientation: facing the other arm, pitched down by ``pitch_deg``, rolled about its axis."""
    yaw = axis_angle_quat([0, 0, 1], 0.0 if arm == "left" else np.pi)
    pitch = axis_angle_quat([0, 1, 0], np.deg2rad(pitch_deg))
    roll = axis_angle_quat([1, 0, 0], np.deg2rad(roll_deg))
    return quat_mul(quat_mul(yaw, pitch), roll)


@lru_cache(maxsize=4)
def _kinematics(model_file: str, arm: str, joints: tuple[str, ...]) -> ArmKinematics:
    return ArmKinematics(load_model(model_file), arm, joints)


def _arm_trajectory(kin: ArmKinematics, waypoints: Sequence[Waypoint], steps: int) -> np.ndarray:
    """(steps, 7): 6 joint angles from IK along the interpolated path, then the gripper command."""
    out = np.zeros((steps, 7))
    q = np.array(START_ARM_JOINTS_RAD, dtype=np.float64)
    for t in range(steps):
        nxt = next((i for i, w in enumerate(waypoints) if w.step > t), len(waypoints) - 1)
        a, b = waypoints[max(nxt - 1, 0)], waypoints[nxt]
        s = 1.0 if b.step == a.step else float(np.clip((t - a.step) / (b.step - a.step), 0.0, 1.0))
        pos = (1 - s) * a.pos + s * b.pos
        quat = slerp(a.quat, b.quat, s)
        q, _ = kin.solve(pos, quat, q)
        out[t, :6] = q
        out[t, 6] = (1 - s) * a.gripper + s * b.gripper
    return out


def _start_waypoint(kin: ArmKinematics, gripper: float) -> Waypoint:
    pos, quat = kin.tool_pose(START_ARM_JOINTS_RAD)
    return Waypoint(0, pos, quat, gripper)


def _transfer_cube_waypoints(kins: dict[str, ArmKinematics], poses: dict[str, Pose],
                             start_gripper: float) -> dict[str, list[Waypoint]]:
    cube = np.array([poses["box"][0][0], poses["box"][0][1], REST_HEIGHT_M["box"]])
    meet = np.array([0.0, 0.5, 0.25])
    pick = gripper_quat("right", pitch_deg=60)
    take = gripper_quat("left", pitch_deg=0, roll_deg=90)
    right = [
        _start_waypoint(kins["right"], start_gripper),
        Waypoint(90, cube + [0, 0, 0.08], pick, OPEN),
        Waypoint(130, cube + [0, 0, 0.005], pick, OPEN),
        Waypoint(170, cube + [0, 0, 0.005], pick, CLOSED),
        Waypoint(200, meet + [0.05, 0, 0], pick, CLOSED),
        Waypoint(220, meet, pick, CLOSED),
        Waypoint(310, meet, pick, CLOSED),
        Waypoint(330, meet, pick, OPEN),
        Waypoint(360, meet + [0.1, 0, 0.02], pick, OPEN),
        Waypoint(400, meet + [0.1, 0, 0.02], pick, OPEN),
    ]
    left = [
        _start_waypoint(kins["left"], start_gripper),
        Waypoint(100, meet + [-0.1, 0, -0.02], take, OPEN),
        Waypoint(260, meet + [0.0, 0, -0.02], take, OPEN),
        Waypoint(300, meet + [0.0, 0, -0.02], take, CLOSED),
        Waypoint(360, meet + [-0.1, 0, -0.02], take, CLOSED),
        Waypoint(400, meet + [-0.1, 0, -0.02], take, CLOSED),
    ]
    return {"left": left, "right": right}


def _insertion_waypoints(kins: dict[str, ArmKinematics], poses: dict[str, Pose],
                         start_gripper: float) -> dict[str, list[Waypoint]]:
    peg = np.array([poses["peg"][0][0], poses["peg"][0][1], REST_HEIGHT_M["peg"]])
    socket = np.array([poses["socket"][0][0], poses["socket"][0][1], REST_HEIGHT_M["socket"]])
    meet = np.array([0.0, 0.5, 0.15])
    # the peg ends up ~2.9 cm below the right tool point, the socket ~1.1 cm below the left one
    # (the fingers stop on the table before reaching the centres): raise the peg to line them up
    peg_raise = 0.018
    pick_right = gripper_quat("right", pitch_deg=60)
    pick_left = gripper_quat("left", pitch_deg=60)
    right = [
        _start_waypoint(kins["right"], start_gripper),
        Waypoint(120, peg + [0, 0, 0.08], pick_right, OPEN),
        Waypoint(170, peg + [0, 0, 0.0], pick_right, OPEN),
        Waypoint(220, peg + [0, 0, 0.0], pick_right, CLOSED),
        Waypoint(285, meet + [0.1, 0, peg_raise], pick_right, CLOSED),
        Waypoint(340, meet + [0.05, 0, peg_raise], pick_right, CLOSED),
        Waypoint(400, meet + [0.035, 0, peg_raise], pick_right, CLOSED),
        Waypoint(500, meet + [0.035, 0, peg_raise], pick_right, CLOSED),
    ]
    left = [
        _start_waypoint(kins["left"], start_gripper),
        Waypoint(120, socket + [0, 0, 0.08], pick_left, OPEN),
        Waypoint(170, socket + [0, 0, 0.0], pick_left, OPEN),
        Waypoint(220, socket + [0, 0, 0.0], pick_left, CLOSED),
        Waypoint(285, meet + [-0.1, 0, 0], pick_left, CLOSED),
        Waypoint(340, meet + [-0.05, 0, 0], pick_left, CLOSED),
        Waypoint(400, meet + [-0.035, 0, 0], pick_left, CLOSED),
        Waypoint(500, meet + [-0.035, 0, 0], pick_left, CLOSED),
    ]
    return {"left": left, "right": right}


_PLANNERS = {"transfer_cube": _transfer_cube_waypoints, "insertion": _insertion_waypoints}


def plan_waypoints(task: TaskSpec, object_poses: dict[str, Pose], contract: Contract) -> dict[str, list[Waypoint]]:
    """Tool-point waypoints per arm (``left``/``right``) for ``task`` given the objects' reset poses."""
    if task.name not in _PLANNERS:
        raise KeyError(f"no scripted demonstration for task '{task.name}' (scripted: {sorted(_PLANNERS)})")
    if task.sim is None:
        raise ValueError(f"task '{task.name}' has no sim section in tasks.yaml")
    joints = tuple(contract.arm_joints)
    kins = {arm: _kinematics(task.sim.model, arm, joints) for arm in contract.arms}
    start_gripper = contract.gripper_calibration("sim").follower_finger_position_m.normalize(START_FINGER_POSITION_M)
    return _PLANNERS[task.name](kins, object_poses, start_gripper)


def plan_episode(task: str | TaskSpec, object_poses: dict[str, Pose], contract: Contract | None = None) -> np.ndarray:
    """(episode_steps, 14) joint commands in the ACT convention for a scripted demonstration."""
    contract = contract or load_contract()
    spec = load_task(task) if isinstance(task, str) else task
    waypoints = plan_waypoints(spec, object_poses, contract)
    joints = tuple(contract.arm_joints)
    per_arm = [_arm_trajectory(_kinematics(spec.sim.model, arm, joints), waypoints[arm], spec.episode_steps)
               for arm in contract.arms]
    return np.concatenate(per_arm, axis=1)
