"""Test doubles for the policy node: the node's behaviour (timing, faults, safety) without a model.

Selected with the node parameter `fake_policy`, a spec such as "hold:latency_s=0.3,nan_at_chunk=2":
- every chunk holds the measured joint state of its observation, except that the left waist follows a slow
  sine of the observation time (amplitude `amplitude_rad`, 0.25 Hz), so a subscriber sees motion that is
  continuous across chunks;
- `latency_s`: inference time (sleep), to test prefetch against a slow policy;
- `planning_latency_s`: accept planning goals; scoring the proposals takes this long on top of `latency_s`,
  and, as the real planner, is abandoned at the request's deadline for the unscored first proposal;
- `nan_at_chunk=N`: chunk N (0-based) has NaN from row 5 on; `jump_at_chunk=N`: a 1 rad step at row 5;
- `fail_at_chunk=N`: inference raises;
- `gripper_target=V`: both grippers are commanded to V (normalised; e.g. 1.12, a little past "open", as ACT);
- `image_height=H,image_width=W`: frames must have that size (as a checkpoint's training size).
Never use it on a robot: it is not a policy.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from .policy_backend import ChunkResult, InferenceRequest

FAULT_ROW = 5  # a faulty chunk is faulty from this row on (rows of the past are skipped when a chunk is late)


def parse_spec(spec: str) -> tuple[str, dict[str, float]]:
    kind, _, rest = spec.partition(":")
    options: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fake_policy {spec!r}: option {item!r} must be key=value")
        options[key.strip()] = float(value)
    return kind.strip(), options


class FakeHoldPolicy:
    """See the module docstring. Args: the parsed options, the camera names and the contract's rate."""

    known = ("latency_s", "planning_latency_s", "nan_at_chunk", "jump_at_chunk", "fail_at_chunk", "chunk_length",
             "execute_steps", "amplitude_rad", "control_hz", "image_height", "image_width", "gripper_target")

    def __init__(self, options: dict[str, float], cameras: list[str], control_hz: float,
                 gripper_indices: tuple[int, ...] = ()) -> None:
        unknown = sorted(set(options) - set(self.known))
        if unknown:
            raise ValueError(f"fake_policy: unknown options {unknown} (known: {list(self.known)})")
        self.options = options
        self.cameras = list(cameras)
        self.gripper_indices = list(gripper_indices)
        if "gripper_target" in options and not self.gripper_indices:
            raise ValueError("fake_policy: gripper_target needs the contract's gripper indices")
        # frames must have this size when given (to test the node's size check); any size otherwise
        self.camera_hw = ((int(options["image_height"]), int(options["image_width"]))
                          if "image_height" in options and "image_width" in options else None)
        self.chunk_length = int(options.get("chunk_length", 50))
        self.execute_steps = int(options.get("execute_steps", self.chunk_length))
        self.control_hz = float(options.get("control_hz", control_hz))
        self.action_steps = 1
        self.max_joint_jump_rad = None
        self.has_planning = "planning_latency_s" in options
        self.amplitude = float(options.get("amplitude_rad", 0.05))
        self.description = f"fake hold policy {options}"
        self.chunks = 0
        self._start_stamp: float | None = None

    def prepare(self, request: InferenceRequest) -> Any:
        return request.observation

    def infer(self, request: InferenceRequest, prepared: Any) -> ChunkResult:
        index = self.chunks
        self.chunks += 1
        start = time.perf_counter()
        if index == self.options.get("fail_at_chunk"):
            raise RuntimeError(f"fake policy: injected inference failure at chunk {index}")
        obs = request.observation
        if self._start_stamp is None or obs.stamp_s < self._start_stamp:
            self._start_stamp = obs.stamp_s
        t = obs.stamp_s - self._start_stamp + np.arange(self.chunk_length) / self.control_hz
        actions = np.repeat(obs.qpos[None].astype(np.float64), self.chunk_length, axis=0)
        actions[:, 0] = self.amplitude * np.sin(2 * math.pi * 0.25 * t)
        if "gripper_target" in self.options:
            actions[:, self.gripper_indices] = self.options["gripper_target"]
        if index == self.options.get("nan_at_chunk"):
            actions[FAULT_ROW:, 1] = np.nan
        if index == self.options.get("jump_at_chunk"):
            actions[FAULT_ROW:, 1] += 1.0
        remaining = self.options.get("latency_s", 0.0) - (time.perf_counter() - start)
        if remaining > 0:
            time.sleep(remaining)
        if request.planning:
            return self._score(actions.astype(np.float32), request.deadline, start, time.perf_counter() - start)
        return ChunkResult(actions.astype(np.float32), 0.5, time.perf_counter() - start)

    def _score(self, actions: np.ndarray, deadline: float | None, start: float, proposal_s: float) -> ChunkResult:
        scoring_s = self.options.get("planning_latency_s", 0.0)
        if deadline is not None and time.monotonic() + scoring_s > deadline:
            time.sleep(max(0.0, deadline - time.monotonic()))  # scoring runs until the deadline, then gives up
            return ChunkResult(actions, float("nan"), time.perf_counter() - start, float("nan"),
                               planning_fallback=True, proposal_latency_s=proposal_s)
        time.sleep(scoring_s)
        return ChunkResult(actions, 0.6, time.perf_counter() - start, 0.2, [0.4, 0.6], proposal_latency_s=proposal_s)

    def warmup(self, task: str | None) -> float:
        return float(self.options.get("latency_s", 0.0))


def make_fake_policy(spec: str, cameras: list[str], control_hz: float,
                     gripper_indices: tuple[int, ...] = ()) -> FakeHoldPolicy:
    kind, options = parse_spec(spec)
    if kind != "hold":
        raise ValueError(f"fake_policy {spec!r}: unknown kind {kind!r} (known: 'hold')")
    return FakeHoldPolicy(options, cameras, control_hz, gripper_indices)
