"""What the policy node asks of a policy: prepare an observation (CPU), infer a chunk (device), warm up.

`CosmosBackend` serves a cosmos_policy checkpoint (and, for planning mode, a planning checkpoint that scores
the base policy's proposals). Test doubles with the same interface live in `fake_policies`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from .observation import Observation


@dataclass
class ChunkResult:
    """A chunk (K, d) in robot units with its predicted value; planning adds the spread over candidates."""

    actions: np.ndarray
    value: float
    latency_s: float
    value_spread: float = 0.0
    candidate_values: list[float] | None = None
    future_images: dict[str, np.ndarray] | None = None
    planning_fallback: bool = False  # planning ran out of time: an unscored proposal of the base policy
    proposal_latency_s: float | None = None  # planning: how long the proposals alone took (a direct chunk's cost)


@dataclass
class InferenceRequest:
    """What the control loop asks the inference thread for."""

    observation: Observation
    task: str
    seed: int | None
    planning: bool = False
    action_steps: int | None = None
    num_candidates: int = 8
    want_future_images: bool = False
    deadline: float | None = None  # planning: time.monotonic() by which the chunk is needed (None: no limit)


class PolicyBackend(Protocol):
    cameras: list[str]
    camera_hw: tuple[int, int] | None  # frames must have this size; None = any size (resized by the policy)
    chunk_length: int
    control_hz: float
    execute_steps: int
    action_steps: int
    max_joint_jump_rad: float | None
    has_planning: bool
    description: str

    def prepare(self, request: InferenceRequest) -> Any: ...

    def infer(self, request: InferenceRequest, prepared: Any) -> ChunkResult: ...

    def warmup(self, task: str | None) -> float: ...

    # optional: stop() -> None, called when the node shuts down, ends a running inference early


class CosmosBackend:
    """A cosmos_policy checkpoint (and optional planning checkpoint) behind the node's interface.

    Args:
        checkpoint: checkpoint directory of the base policy.
        planning_checkpoint: checkpoint that scores proposals in planning mode ("" for none).
        device: torch device ("cpu", "cuda", "cuda:1").
        camera_hw_check: "strict" insists on the training resolution; "resize" accepts any frame size.
        vae_base_dir: where this machine keeps the diffusers base folder a checkpoint's VAE comes from.
        world_model_samples / value_samples: planning ensemble per candidate.
        planning_depth: search depth (1: best-of-N; D > 1 re-plans from the predicted future state D - 1 times).
    """

    def __init__(self, checkpoint: str, *, planning_checkpoint: str = "", device: str = "cpu",
                 camera_hw_check: str = "strict", vae_base_dir: str = "", world_model_samples: int = 3,
                 value_samples: int = 5, planning_depth: int = 1) -> None:
        import torch

        from cosmos_policy.policy import CosmosPolicy

        if camera_hw_check not in ("strict", "resize"):
            raise ValueError(f"camera_hw_check={camera_hw_check!r}: expected 'strict' or 'resize'")
        self._torch = torch
        kwargs = dict(device=device, vae_base_dir=vae_base_dir or None)
        self.policy = CosmosPolicy.from_checkpoint(checkpoint, **kwargs)
        if camera_hw_check == "resize":
            self.policy.camera_hw = None
        self.planner = CosmosPolicy.from_checkpoint(planning_checkpoint, **kwargs) if planning_checkpoint else None
        if self.planner is not None:
            self.planner.camera_hw = None  # it sees the same frames the base policy accepted
            if self.planner.layout != self.policy.layout:
                raise ValueError(f"planning_checkpoint {planning_checkpoint}: layout {self.planner.layout.name!r} "
                                 f"differs from the base checkpoint's {self.policy.layout.name!r}")
        layout, deploy = self.policy.layout, self.policy.deploy
        self.cameras = list(layout.cameras)
        self.camera_hw = self.policy.camera_hw
        self.chunk_length = layout.action_chunk
        self.control_hz = deploy.control_hz
        self.execute_steps = deploy.execute_steps
        self.action_steps = deploy.action_steps
        self.max_joint_jump_rad = deploy.max_joint_jump_rad
        self.has_planning = self.planner is not None
        self.stopping = threading.Event()  # set by stop(): planning abandons its scoring at the next network call
        self.world_model_samples = world_model_samples
        self.value_samples = value_samples
        self.planning_depth = planning_depth
        self.description = (f"{checkpoint} ({self.policy.model.network_config.preset}, layout {layout.name}, "
                            f"device {device})" + (f", planning {planning_checkpoint} ({world_model_samples} world "
                                                   f"model x {value_samples} value samples per candidate, depth "
                                                   f"{planning_depth})" if self.planner else ""))

    def known_tasks(self) -> list[str]:
        cache = self.policy.text_cache
        return list(cache.texts) if cache is not None else []

    def _obs(self, request: InferenceRequest) -> dict[str, Any]:
        obs = request.observation
        return {"images": obs.images, "proprio": obs.qpos, "task": request.task}

    def prepare(self, request: InferenceRequest) -> Any:
        if request.planning:
            return None  # planning prepares inside plan(): both checkpoints see the raw observation
        return self.policy.prepare(self._obs(request))

    def infer(self, request: InferenceRequest, prepared: Any) -> ChunkResult:
        start = time.perf_counter()
        if request.planning:
            if self.planner is None:
                raise ValueError("planning mode needs a planning checkpoint (parameter planning_checkpoint)")
            chunk = self.planner.plan(self._obs(request), proposer=self.policy,
                                      num_candidates=request.num_candidates,
                                      world_model_samples=self.world_model_samples,
                                      value_samples=self.value_samples, depth=self.planning_depth,
                                      action_steps=request.action_steps, seed=request.seed,
                                      deadline=request.deadline, stop=self.stopping,
                                      return_future_images=request.want_future_images)
            values = chunk.candidate_values
            spread = float(np.ptp(values)) if values is not None and len(values) else float("nan")
            return ChunkResult(chunk.actions, chunk.value, time.perf_counter() - start, spread,
                               list(map(float, values)) if values is not None else None,
                               planning_fallback=chunk.planning_fallback,
                               proposal_latency_s=chunk.proposal_latency_s, future_images=chunk.future_images)
        chunk = self.policy.infer(prepared, num_steps=request.action_steps, seed=request.seed,
                                  return_future_images=request.want_future_images)
        return ChunkResult(chunk.actions, chunk.value, time.perf_counter() - start,
                           future_images=chunk.future_images)

    def warmup(self, task: str | None) -> float:
        return self.policy.warmup(task or None)

    def stop(self) -> None:
        # a direct chunk is a second or so: only planning (tens of seconds on a CPU) is worth interrupting
        self.stopping.set()
