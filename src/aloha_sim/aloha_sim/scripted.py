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

from .kinematics import ArmKinematics, axis_angle_quat, quat_mul
from .scene import load_model
from .stages import REST_HEIGHT_M
from .tasks import Pose, TaskSpec, load_task

OPEN = 1.0
CLOSED = 0.0


@dataclass(frozen=True)
class Waypoint:
    """Tool point target reached at control step ``step`` (linear in between).

    The tool points straight away from its arm's base (the heading needs no forearm roll, which
    keeps the wrist far from flipping), pitched down by ``pitch_deg`` and rolled about its own
    axis by ``roll_deg``. Fingers are therefore not square to the objects; closing squares them.
    """

    step: int
    pos: np.ndarray
    gripper: float
    pitch_deg: float = 0.0
    roll_deg: float = 0.0


def gripper_quat(heading_rad: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> np.ndarray:
    """Tool orientation: pointing along world heading ``heading_rad``, pitched down, rolled about its axis."""
    yaw = axis_angle_quat([0, 0, 1], heading_rad)
    pitch = axis_angle_quat([0, 1, 0], np.deg2rad(pitch_deg))
    roll = axis_angle_quat([1, 0, 0], np.deg2rad(roll_deg))
    return quat_mul(quat_mul(yaw, pitch), roll)


def _wp(step: int, pos: np.ndarray, gripper: float, pitch_deg: float = 0.0, roll_deg: float = 0.0) -> Waypoint:
    return Waypoint(step, np.asarray(pos, dtype=np.float64), gripper, pitch_deg, roll_deg)


@lru_cache(maxsize=4)
def _kinematics(model_file: str, arm: str, joints: tuple[str, ...]) -> ArmKinematics:
    return ArmKinematics(load_model(model_file), arm, joints)


def _natural_heading(kin: ArmKinematics, pos: np.ndarray) -> float:
    delta = pos[:2] - kin.base_pos[:2]
    return float(np.arctan2(delta[1], delta[0]))


def _arm_trajectory(kin: ArmKinematics, waypoints: Sequence[Waypoint], steps: int,
                    start_q: Sequence[float]) -> np.ndarray:
    """(steps, 7): 6 joint angles from IK along the interpolated path (seeded at `start_q`), then the gripper."""
    out = np.zeros((steps, 7))
    q = np.array(start_q, dtype=np.float64)
    for t in range(steps):
        nxt = next((i for i, w in enumerate(waypoints) if w.step > t), len(waypoints) - 1)
        a, b = waypoints[max(nxt - 1, 0)], waypoints[nxt]
        s = 1.0 if b.step == a.step else float(np.clip((t - a.step) / (b.step - a.step), 0.0, 1.0))
        pos = (1 - s) * a.pos + s * b.pos
        heading = _natural_heading(kin, pos)
        pitch_deg = (1 - s) * a.pitch_deg + s * b.pitch_deg
        quat = gripper_quat(heading, pitch_deg, (1 - s) * a.roll_deg + s * b.roll_deg)
        q, _ = kin.solve(pos, quat, q)
        out[t, :6] = q
        out[t, 6] = (1 - s) * a.gripper + s * b.gripper
    return out


def _start_waypoint(kin: ArmKinematics, joints: Sequence[str], start_q: Sequence[float], gripper: float) -> Waypoint:
    pos, _ = kin.tool_pose(start_q)
    start = dict(zip(joints, start_q))
    pitch_rad = start["shoulder"] + start["elbow"] + start["wrist_angle"]  # all three pitch about y
    return _wp(0, pos, gripper, pitch_deg=float(np.rad2deg(pitch_rad)))


def _transfer_cube_waypoints(start: dict[str, Waypoint], poses: dict[str, Pose]) -> dict[str, list[Waypoint]]:
    cube = np.array([poses["box"][0][0], poses["box"][0][1], REST_HEIGHT_M["box"]])
    meet = np.array([0.0, 0.5, 0.25])
    pick = {"pitch_deg": 60}
    right = [
        start["right"],
        _wp(90, cube + [0, 0, 0.08], OPEN, **pick),
        _wp(130, cube + [0, 0, 0.005], OPEN, **pick),
        _wp(170, cube + [0, 0, 0.005], CLOSED, **pick),
        _wp(200, meet + [0.05, 0, 0], CLOSED, **pick),
        _wp(220, meet, CLOSED, **pick),
        _wp(310, meet, CLOSED, **pick),  # let go only after the left gripper has closed
        _wp(330, meet, OPEN, **pick),
        _wp(360, meet + [0.1, 0, 0.02], OPEN, **pick),
        _wp(400, meet + [0.1, 0, 0.02], OPEN, **pick),
    ]
    # rolled 90 deg, the left fingers close on the cube's top and bottom, clear of the right fingers
    take = {"pitch_deg": 0, "roll_deg": 90}
    left = [
        start["left"],
        _wp(100, meet + [-0.1, 0, -0.02], OPEN, **take),
        _wp(260, meet + [0.0, 0, -0.02], OPEN, **take),
        _wp(300, meet + [0.0, 0, -0.02], CLOSED, **take),
        _wp(360, meet + [-0.1, 0, -0.02], CLOSED, **take),
        _wp(400, meet + [-0.1, 0, -0.02], CLOSED, **take),
    ]
    return {"left": left, "right": right}


def _insertion_waypoints(start: dict[str, Waypoint], poses: dict[str, Pose]) -> dict[str, list[Waypoint]]:
    peg = np.array([poses["peg"][0][0], poses["peg"][0][1], REST_HEIGHT_M["peg"]])
    socket = np.array([poses["socket"][0][0], poses["socket"][0][1], REST_HEIGHT_M["socket"]])
    meet = np.array([0.0, 0.5, 0.15])
    # the fingers stop on the table before reaching the centres, so the peg hangs ~3 cm and the socket
    # ~1 cm below their tool points: raising the peg centres its tip on the socket mouth (60 seeds)
    peg_raise = 0.023
    pick = {"pitch_deg": 60}
    right = [
        start["right"],
        _wp(120, peg + [0, 0, 0.08], OPEN, **pick),
        _wp(170, peg + [0, 0, 0.0], OPEN, **pick),
        _wp(220, peg + [0, 0, 0.0], CLOSED, **pick),
        _wp(285, meet + [0.1, 0, peg_raise], CLOSED, **pick),
        _wp(340, meet + [0.05, 0, peg_raise], CLOSED, **pick),
        # nominally 1 cm past the pin: enough to absorb grasp offsets, little enough not to twist the peg
        _wp(400, meet + [0.035, 0, peg_raise], CLOSED, **pick),
        _wp(500, meet + [0.035, 0, peg_raise], CLOSED, **pick),
    ]
    left = [
        start["left"],
        _wp(120, socket + [0, 0, 0.08], OPEN, **pick),
        _wp(170, socket + [0, 0, 0.0], OPEN, **pick),
        _wp(220, socket + [0, 0, 0.0], CLOSED, **pick),
        _wp(285, meet + [-0.1, 0, 0], CLOSED, **pick),
        _wp(340, meet + [-0.05, 0, 0], CLOSED, **pick),
        _wp(400, meet + [-0.035, 0, 0], CLOSED, **pick),
        _wp(500, meet + [-0.035, 0, 0], CLOSED, **pick),
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
    finger = contract.gripper_calibration("sim").follower_finger_position_m
    start = {arm: _start_waypoint(_kinematics(task.sim.model, arm, joints), joints, contract.start_arm_joints_rad,
                                  finger.normalize(contract.start_sim_finger_position_m)) for arm in contract.arms}
    return _PLANNERS[task.name](start, object_poses)


def approach_end_step(task: str | TaskSpec, object_poses: dict[str, Pose], contract: Contract | None = None) -> int:
    """The step at which the first arm reaches its first target after the start pose: the end of the free-space
    approach, before any contact."""
    contract = contract or load_contract()
    spec = load_task(task) if isinstance(task, str) else task
    return min(waypoints[1].step for waypoints in plan_waypoints(spec, object_poses, contract).values())


def plan_episode(task: str | TaskSpec, object_poses: dict[str, Pose], contract: Contract | None = None) -> np.ndarray:
    """(episode_steps, 14) joint commands in the ACT convention for a scripted demonstration."""
    contract = contract or load_contract()
    spec = load_task(task) if isinstance(task, str) else task
    waypoints = plan_waypoints(spec, object_poses, contract)
    joints = tuple(contract.arm_joints)
    per_arm = [_arm_trajectory(_kinematics(spec.sim.model, arm, joints), waypoints[arm], spec.episode_steps,
                               contract.start_arm_joints_rad) for arm in contract.arms]
    return np.concatenate(per_arm, axis=1)
