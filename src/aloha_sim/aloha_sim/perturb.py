"""Smooth random offsets on the arm joints while a scripted demo executes (DART-style disturbances).

A scripted plan depends only on the objects' reset poses, so along an unperturbed demo the arm's pose alone
says which demo it is in, hence where the cube is. A policy that conditions on its joint state then copies
that pose instead of looking at the scene (model_quality's state-swap probe: 20/20 on clean demos). Executing
``plan + offset``, with the plan's command still recorded as the action (the expert's label at the
disturbed state, which steers back onto the plan), breaks that shortcut: the recorded state no longer pins
down the plan, while the cameras still show where the object is. (Laskey et al. 2017, DART: noise injected
into the supervisor's execution.)

The offsets are an Ornstein-Uhlenbeck process per arm joint: stationary std ``std_rad``, correlation time
``tau_s``, drawn from the episode's seed so a demo is reproducible. Grippers are left alone. The plan does not
re-plan, so an offset that lasts into a grasp makes it miss (measured at 0.03 rad throughout: transfer cube
5/10, insertion 0/10): the offsets fade out over ``fade_s`` before ``until_step``, the end of the approach.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class JointNoise:
    std_rad: float
    tau_s: float = 0.5
    fade_s: float = 0.5

    def __post_init__(self) -> None:
        if not (math.isfinite(self.std_rad) and self.std_rad >= 0.0):
            raise ValueError(f"joint noise std {self.std_rad} rad: expected a finite value >= 0 (0: off)")
        if not (math.isfinite(self.tau_s) and self.tau_s > 0.0):
            raise ValueError(f"joint noise correlation time {self.tau_s} s: expected a positive number of seconds")

    def offsets(self, steps: int, dim: int, arm_indices: list[int], period_s: float, seed: int,
                until_step: int | None = None) -> np.ndarray:
        """(steps, dim) offsets, zero outside ``arm_indices``; the process starts at zero (the start pose) and,
        with ``until_step``, is faded to zero by then and stays zero after."""
        out = np.zeros((steps, dim))
        if self.std_rad == 0.0 or steps == 0:
            return out
        rng = np.random.default_rng([int(seed), 0x0DA7])  # its own stream: the scene's draw is untouched
        keep = math.exp(-period_s / self.tau_s)
        kick = self.std_rad * math.sqrt(1.0 - keep * keep)  # stationary std = std_rad
        x = np.zeros(len(arm_indices))
        for t in range(1, steps):
            x = keep * x + kick * rng.standard_normal(len(arm_indices))
            out[t, arm_indices] = x
        if until_step is not None:
            fade = max(1, round(self.fade_s / period_s))
            envelope = np.clip((until_step - np.arange(steps)) / fade, 0.0, 1.0)
            out *= envelope[:, None]
        return out
