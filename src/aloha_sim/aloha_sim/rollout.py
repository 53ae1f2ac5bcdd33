"""Running a scripted demonstration through the joint-controlled env and collecting it ACT-style."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from .env import AlohaSimEnv
from .scripted import plan_episode
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


def run_scripted_episode(env: AlohaSimEnv, seed: int, record: bool = True, max_steps: int | None = None) -> Rollout:
    """Reset ``env`` with ``seed``, plan from the object poses, execute every command.

    With ``record=False`` only the score and timings are kept (fast success-rate runs);
    ``max_steps`` truncates the episode (smoke tests).
    """
    obs = env.reset(seed)
    t0 = time.perf_counter()
    plan = plan_episode(env.task, env.object_poses(), env.contract)[:max_steps]
    plan_s = time.perf_counter() - t0
    states: dict[str, list[np.ndarray]] = {"qpos": [], "qvel": [], "effort": []}
    frames: dict[str, list[np.ndarray]] = {cam: [] for cam in obs.images}
    t0 = time.perf_counter()
    for command in plan:
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
