"""Running a scripted demonstration through the joint-controlled env and collecting it ACT-style."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .env import AlohaSimEnv
from .perturb import JointNoise
from .scripted import approach_end_step, plan_episode
from .stages import StageScore


@dataclass
class Rollout:
    """Per-step arrays (T rows): the observation at step t and the command then applied."""

    seed: int
    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    score: StageScore | None = None
    plan_s: float = 0.0
    run_s: float = 0.0


def run_scripted_episode(env: AlohaSimEnv, seed: int, record: bool = True, max_steps: int | None = None,
                         noise: JointNoise | None = None) -> Rollout:
    """Reset ``env`` with ``seed``, plan from the object poses, execute every command.

    With ``record=False`` only the score and timings are kept (fast success-rate runs);
    ``max_steps`` truncates the episode (smoke tests). With ``noise`` the arm executes the plan plus smooth
    random joint offsets (perturb.py), kept inside the joint limits, while the plan's command is what is
    recorded as the action: the expert's label at the disturbed state. The offsets last through the approach
    and are gone before the first contact.
    """
    obs = env.reset(seed)
    t0 = time.perf_counter()
    plan = plan_episode(env.task, env.object_poses(), env.contract)[:max_steps]
    executed = plan
    if noise is not None:
        contract = env.contract
        arm = [i for i in range(plan.shape[1]) if i not in contract.gripper_indices]
        until = approach_end_step(env.task, env.object_poses(), contract)
        executed = plan + noise.offsets(len(plan), plan.shape[1], arm, contract.control_period_s, seed, until)
        lo, hi = (np.array([lim[k] for lim in contract.joint_limits_rad] * len(contract.arms)) for k in (0, 1))
        executed[:, arm] = np.clip(executed[:, arm], lo, hi)
    plan_s = time.perf_counter() - t0
    states: dict[str, list[np.ndarray]] = {"qpos": [], "qvel": [], "effort": []}
    frames: dict[str, list[np.ndarray]] = {cam: [] for cam in obs.images}
    t0 = time.perf_counter()
    for command in executed:
        if record:
            states["qpos"].append(obs.qpos)
            states["qvel"].append(obs.qvel)
            states["effort"].append(obs.effort)
            for cam, img in obs.images.items():
                frames[cam].append(img)
        obs = env.step(command)
    run_s = time.perf_counter() - t0
    dim = len(env.contract.joint_names)

    def stack(rows: list[np.ndarray]) -> np.ndarray:
        return np.stack(rows) if rows else np.zeros((0, dim))

    return Rollout(seed=int(seed), qpos=stack(states["qpos"]), qvel=stack(states["qvel"]),
                   effort=stack(states["effort"]), action=plan if record else np.zeros((0, dim)),
                   images={cam: np.stack(f) for cam, f in frames.items() if f},
                   score=env.stage_score(), plan_s=plan_s, run_s=run_s)
