"""The joint-controlled bimanual ALOHA simulator: 14-D ACT commands in, observations and stage scores out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import mujoco
import numpy as np

from aloha_contract import Contract, InvalidCommand, check_joint_command, load_contract

from .scene import CameraRenderer, load_model
from .stages import StageScore, StageTracker, contact_state, predicates_for
from .tasks import Pose, TaskSpec, load_task

__all__ = ["AlohaSimEnv", "FollowerJointState", "InvalidCommand", "Observation"]

GRIPPER_CALIBRATION_PROFILE = "sim"
FINGER_JOINTS = ("left_finger", "right_finger")  # the MJCF finger joints, named as in the Interbotix layout


@dataclass
class Observation:
    """State after a step in the ACT convention (grippers normalised 0 closed .. 1 open)."""

    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    sim_time_s: float = 0.0


@dataclass
class FollowerJointState:
    """One follower arm in the Interbotix joint_states layout (9 joints)."""

    robot: str
    names: list[str]
    position: np.ndarray
    velocity: np.ndarray
    effort: np.ndarray


def _mjcf_joint(arm: str, joint: str) -> str:
    return f"vx300s_{arm}/{joint}"


class AlohaSimEnv:
    """One simulated ALOHA task, advanced one 50 Hz control period per :meth:`step`.

    Invalid commands raise :class:`InvalidCommand` before anything changes: the arms keep holding
    the last valid target. Same seed and same commands give identical states and images.
    ``image_size`` (height, width) defaults to the contract's camera size; episodes start in the
    contract's start pose.
    """

    def __init__(self, task: str | TaskSpec, cameras: Sequence[str] | None = None,
                 image_size: tuple[int, int] | None = None, render: bool = True,
                 contract: Contract | None = None, check_joint_steps: bool = False) -> None:
        self.contract = contract or load_contract()
        self.task = load_task(task) if isinstance(task, str) else task
        if self.task.sim is None:
            raise ValueError(f"task '{self.task.name}' has no sim section in tasks.yaml")
        self.model = load_model(self.task.sim.model)
        self.data = mujoco.MjData(self.model)
        self.check_joint_steps = check_joint_steps
        self._calibration = self.contract.gripper_calibration(GRIPPER_CALIBRATION_PROFILE)
        self._finger = self._calibration.follower_finger_position_m
        self._gripper_joint = self._calibration.follower_gripper_joint_rad

        period_s = self.contract.control_period_s
        self.substeps = int(round(period_s / self.model.opt.timestep))
        if self.substeps < 1 or abs(self.substeps * self.model.opt.timestep - period_s) > 1e-9:
            raise ValueError(f"control period {period_s} s is not a multiple of the physics step "
                             f"{self.model.opt.timestep} s")
        self._index_joints()
        self._follower_order = self._follower_layout_order()

        self.cameras = list(self.contract.cameras if cameras is None else cameras)
        self.image_size = tuple(image_size or (self.contract.image_height, self.contract.image_width))
        self._renderer = CameraRenderer(self.model, self.cameras, self.image_size) if render and self.cameras else None
        self.render_enabled = self._renderer is not None

        self._tracker = StageTracker(self.task.stages, predicates_for(self.task))
        self._objects = list(self.task.sim.objects)
        self._last_command = np.zeros(len(self.contract.joint_names))
        self.step_count = 0
        self.seed: int | None = None

    def _index_joints(self) -> None:
        m = self.model
        arm_joints = self.contract.arm_joints
        self._arm_qpos, self._arm_dof, self._arm_act = [], [], []
        self._finger_qpos, self._finger_dof, self._finger_act = [], [], []
        joint_to_actuator = {int(m.actuator_trnid[a, 0]): a for a in range(m.nu)}
        for arm in self.contract.arms:
            jids = [m.joint(_mjcf_joint(arm, j)).id for j in arm_joints]
            fids = [m.joint(_mjcf_joint(arm, f)).id for f in FINGER_JOINTS]
            self._arm_qpos.append(np.array([m.jnt_qposadr[j] for j in jids]))
            self._arm_dof.append(np.array([m.jnt_dofadr[j] for j in jids]))
            self._arm_act.append(np.array([joint_to_actuator[j] for j in jids]))
            self._finger_qpos.append(np.array([m.jnt_qposadr[j] for j in fids]))
            self._finger_dof.append(np.array([m.jnt_dofadr[j] for j in fids]))
            self._finger_act.append(np.array([joint_to_actuator[j] for j in fids]))

    def _follower_layout_order(self) -> list[int]:
        """Where each name of the contract's follower layout sits in [arm joints, gripper, fingers]."""
        c = self.contract
        simulated = [*c.arm_joints, str(c.raw["gripper_joint"]), *FINGER_JOINTS]
        unknown = [n for n in c.follower_joint_names if n not in simulated]
        if unknown:
            raise ValueError(f"{c.source}: follower_joint_names {unknown} have no simulated joint "
                             f"(the sim has {simulated})")
        return [simulated.index(n) for n in c.follower_joint_names]

    @property
    def episode_steps(self) -> int:
        return self.task.episode_steps

    @property
    def sim_time_s(self) -> float:
        return float(self.data.time)

    @property
    def last_command(self) -> np.ndarray:
        """The target the arms are holding (14-D, ACT convention)."""
        return self._last_command.copy()

    def start_command(self) -> np.ndarray:
        """The 14-D command that holds the contract's start pose."""
        c = self.contract
        gripper = self._finger.normalize(c.start_sim_finger_position_m)
        return np.array([*c.start_arm_joints_rad, gripper] * len(c.arms), dtype=np.float64)

    def reset(self, seed: int, object_poses: dict[str, Pose] | None = None) -> Observation:
        """Arms to the start pose, objects to the seed's random poses (or ``object_poses``)."""
        m, d = self.model, self.data
        mujoco.mj_resetData(m, d)
        self.seed = int(seed)
        poses = object_poses if object_poses is not None else self.task.sample_object_poses(seed)
        finger_m = self.contract.start_sim_finger_position_m
        for arm_i in range(len(self.contract.arms)):
            d.qpos[self._arm_qpos[arm_i]] = self.contract.start_arm_joints_rad
            d.qpos[self._finger_qpos[arm_i]] = (finger_m, -finger_m)
        for name in self._objects:
            if name not in poses:
                raise KeyError(f"object_poses lacks '{name}' (task {self.task.name} needs {self._objects})")
            pos, quat = poses[name]
            adr = m.jnt_qposadr[m.body(name).jntadr[0]]
            d.qpos[adr:adr + 3] = pos
            d.qpos[adr + 3:adr + 7] = np.asarray(quat, dtype=np.float64) / np.linalg.norm(quat)
        self._apply_command(self.start_command())
        mujoco.mj_forward(m, d)
        self._tracker.reset()
        self.step_count = 0
        return self.observe()

    def _apply_command(self, cmd: np.ndarray) -> None:
        n = len(self.contract.arm_joints)
        for arm_i in range(len(self.contract.arms)):
            base = arm_i * (n + 1)
            self.data.ctrl[self._arm_act[arm_i]] = cmd[base:base + n]
            finger_m = self._finger.unnormalize(float(cmd[base + n]))
            self.data.ctrl[self._finger_act[arm_i]] = (finger_m, -finger_m)
        self._last_command = np.array(cmd, dtype=np.float64)

    def step(self, command: Sequence[float] | np.ndarray, render: bool = True) -> Observation:
        """Validate ``command`` (14-D) and advance one control period; raises InvalidCommand untouched.

        ``render=False`` skips the cameras (the returned images are empty): rendering costs far more
        than physics, so callers that publish images at their own rate render separately.
        """
        current = self.qpos() if self.check_joint_steps else None
        cmd = check_joint_command(command, self.contract, current=current)
        self._apply_command(cmd)
        mujoco.mj_step(self.model, self.data, nstep=self.substeps)
        self.step_count += 1
        self._tracker.update(contact_state(self.model, self.data, self._objects))
        return self.observe(render=render)

    def qpos(self) -> np.ndarray:
        out = []
        for arm_i in range(len(self.contract.arms)):
            out.extend(self.data.qpos[self._arm_qpos[arm_i]])
            out.append(self._finger.normalize(float(self.data.qpos[self._finger_qpos[arm_i][0]])))
        return np.array(out)

    def qvel(self) -> np.ndarray:
        span_m = self._finger.open - self._finger.close
        out = []
        for arm_i in range(len(self.contract.arms)):
            out.extend(self.data.qvel[self._arm_dof[arm_i]])
            out.append(float(self.data.qvel[self._finger_dof[arm_i][0]]) / span_m)
        return np.array(out)

    def effort(self) -> np.ndarray:
        """Actuator forces: N m for the arm joints, N on the left finger for the gripper."""
        out = []
        for arm_i in range(len(self.contract.arms)):
            out.extend(self.data.actuator_force[self._arm_act[arm_i]])
            out.append(float(self.data.actuator_force[self._finger_act[arm_i][0]]))
        return np.array(out)

    def render(self) -> dict[str, np.ndarray]:
        """Images of the configured cameras now ({} when rendering is off)."""
        return self._renderer.render(self.data) if self._renderer is not None else {}

    def observe(self, render: bool = True) -> Observation:
        return Observation(qpos=self.qpos(), qvel=self.qvel(), effort=self.effort(),
                           images=self.render() if render else {}, sim_time_s=self.sim_time_s)

    def follower_joint_states(self) -> dict[str, FollowerJointState]:
        """Per arm (``left``/``right``), joint_states in the contract's Interbotix layout (9 joints).

        The sim has no gripper joint: its angle is the finger opening mapped through the sim
        calibration (finger position -> normalised -> follower gripper joint range).
        """
        d = self.data
        names, order = self.contract.follower_joint_names, self._follower_order
        span_m = self._finger.open - self._finger.close
        span_rad = self._gripper_joint.open - self._gripper_joint.close
        states = {}
        for arm_i, arm in enumerate(self.contract.arms):
            fq, fd, fa = self._finger_qpos[arm_i], self._finger_dof[arm_i], self._finger_act[arm_i]
            finger_norm = self._finger.normalize(float(d.qpos[fq[0]]))
            position = [*d.qpos[self._arm_qpos[arm_i]], self._gripper_joint.unnormalize(finger_norm), *d.qpos[fq]]
            velocity = [*d.qvel[self._arm_dof[arm_i]], float(d.qvel[fd[0]]) / span_m * span_rad, *d.qvel[fd]]
            effort = [*d.actuator_force[self._arm_act[arm_i]], float(d.actuator_force[fa[0]]),
                      *d.actuator_force[fa]]
            states[arm] = FollowerJointState(robot=self.contract.follower_robot(arm), names=list(names),
                                             position=np.array(position)[order], velocity=np.array(velocity)[order],
                                             effort=np.array(effort)[order])
        return states

    def object_poses(self) -> dict[str, Pose]:
        """Current world pose (position m, quaternion wxyz) of each task object, e.g. ``box``."""
        return {name: (self.data.xpos[self.model.body(name).id].copy(),
                       self.data.xquat[self.model.body(name).id].copy()) for name in self._objects}

    def stage_score(self) -> StageScore:
        """Episode score so far (stages in order; the last one only while it holds)."""
        return self._tracker.score()

    def close(self) -> None:
        """Release the offscreen GL context (call before the process exits)."""
        if self._renderer is not None:
            self._renderer.close()
            self._renderer = None

    def __enter__(self) -> AlohaSimEnv:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
