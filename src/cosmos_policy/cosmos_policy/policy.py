"""Inference API: `CosmosPolicy.from_checkpoint(dir).act(obs)` -> action chunk, value, optional future images.

Planning as the release deploys it: `planner.plan(obs, proposer=base_policy)`. The base policy's checkpoint
proposes N chunks; the planning checkpoint predicts s' for each (3 world-model samples, 5 denoising steps)
and V(s') (5 value samples per s', 5 steps, current state and action masked out of the value pass); the
15 values of a candidate are aggregated by the release's majority mean (threshold 0.05) and the highest
wins. Every ensemble member has its own seed ("seed switching"); batches are chunked (`max_batch`).
With a deadline, planning that would run past it falls back to the base policy's first proposal (a direct
chunk) and says so (`ActionChunk.planning_fallback`): a controller never waits on scoring.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .config import LayoutConfig, SamplerConfig
from .deploy import DeployConfig, default_deploy
from .diffusion import CosmosPolicyModel
from .injection import extract, extract_value, value_to_unit
from .latent_sequence import decode_slots, encode_sequence, future_state_as_current, inject_vectors, prefix_slots
from .objectives import (
    NEXT_STATE,
    POLICY,
    STATE_ACTION_NEXT_STATE,
    VALUE,
    WORLD_MODEL,
    check_value_conditioning,
    clean_mask_for,
)
from .sampler import generate

TextEncoder = Callable[[str], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class ActionChunk:
    """One action chunk in robot units, its predicted value, optional predicted future images."""

    actions: np.ndarray
    value: float
    future_images: dict[str, np.ndarray] | None
    latency_s: float
    candidate_values: np.ndarray | None = None  # planning: every candidate's aggregated value
    planning_fallback: bool = False  # planning ran out of time: the base policy's first proposal, unscored
    proposal_latency_s: float | None = None  # planning: from the call to the proposals being ready
    candidate_value_samples: np.ndarray | None = None  # planning: (N, W x V) raw V(s') samples, before aggregation


@dataclass
class ActionCandidates:
    """N candidate chunks (N, K, d) with values (N,), e.g. proposals for best-of-N planning."""

    actions: np.ndarray
    values: np.ndarray
    future_images: list[dict[str, np.ndarray]] | None
    latency_s: float

    def best(self) -> ActionChunk:
        """The candidate with the highest value."""
        i = int(np.argmax(self.values))
        future = self.future_images[i] if self.future_images is not None else None
        return ActionChunk(self.actions[i], float(self.values[i]), future, self.latency_s)


@dataclass
class PreparedObservation:
    """An observation checked and turned into model inputs on the CPU (see `CosmosPolicy.prepare`).

    images: (1, n_cams, 3, S, S) in [-1, 1], cameras in layout order; proprio: (1, d) normalised to [-1, 1].
    """

    images: torch.Tensor
    proprio: torch.Tensor
    task: str


@dataclass
class _Generated:
    latents: torch.Tensor
    action_latents: torch.Tensor
    value_latents: torch.Tensor


RELEASE_VALUE_THRESHOLD = 0.05
AGGREGATIONS = ("majority_mean", "mean")


def release_majority_mean(values: torch.Tensor, threshold: float = RELEASE_VALUE_THRESHOLD) -> torch.Tensor:
    """The release's "majority mean" of value samples (N, S) in [0, 1] -> (N,): if at least half of a
    row's samples exceed `threshold`, the mean of those that do; otherwise 0 (most samples predict
    failure). Clipped to [0, 1]."""
    high = values > threshold
    count = high.sum(dim=1)
    mean_high = (values * high).sum(dim=1) / count.clamp(min=1)
    majority = 2 * count >= values.shape[1]
    return torch.where(majority, mean_high, torch.zeros_like(mean_high)).clamp(0.0, 1.0)


def aggregate_values(
    values: torch.Tensor, aggregation: str = "majority_mean", threshold: float = RELEASE_VALUE_THRESHOLD
) -> torch.Tensor:
    """Aggregate value samples (N, S) in [0, 1] into one value per candidate (N,).

    "majority_mean": the release's (`release_majority_mean`); "mean": plain mean, an ablation only.
    """
    if aggregation == "majority_mean":
        return release_majority_mean(values, threshold)
    if aggregation == "mean":
        return values.mean(dim=1).clamp(0.0, 1.0)
    raise ValueError(f"aggregation={aggregation!r}: expected one of {list(AGGREGATIONS)} ('mean' is an ablation)")


# Keys that make every planning stage draw from its own seeds (see `_derive_seed`).
_PROPOSE, _WORLD_MODEL, _VALUE = 0, 1, 2


def _derive_seed(base: int, *keys: int) -> int:
    """A seed for one ensemble member / candidate / stage, mixed from the base seed and its indices."""
    state = np.random.SeedSequence([int(base) % 2**63, *[int(k) for k in keys]]).generate_state(2, dtype=np.uint64)
    return int(state[0] % np.uint64(2**63))


def _same_statistics(a: CosmosPolicy, b: CosmosPolicy, modality: str) -> bool:
    if a is b:
        return True
    if a.statistics is None or b.statistics is None:
        return a.statistics is b.statistics
    return all(np.array_equal(np.asarray(a.statistics[f"{modality}_{k}"], np.float32),
                              np.asarray(b.statistics[f"{modality}_{k}"], np.float32)) for k in ("min", "max"))


@dataclass(frozen=True)
class PlanningOptions:
    """Best-of-N planning settings; the defaults are the release's deployed ALOHA planning.

    action_steps None: the proposer's deploy action steps (10 on ALOHA). value_conditioning "next_state":
    V(s') as the release's planning model was trained ("state_action_next_state" for a scorer trained with
    V(s, a, s')). aggregation "mean" is an ablation. depth > 1: re-plan from each predicted future state
    (the proposer proposes again, the world model predicts again) and keep the last depth's value.
    max_batch: the most samples per network call (memory cap; results do not depend on it).
    """

    num_candidates: int = 8
    world_model_samples: int = 3
    value_samples: int = 5
    action_steps: int | None = None
    world_model_steps: int = 5
    value_steps: int = 5
    value_conditioning: str = NEXT_STATE
    aggregation: str = "majority_mean"
    value_threshold: float = RELEASE_VALUE_THRESHOLD
    depth: int = 1
    max_batch: int | None = 16

    def __post_init__(self) -> None:
        for name in ("num_candidates", "world_model_samples", "value_samples", "world_model_steps", "value_steps",
                     "depth"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        if self.action_steps is not None and self.action_steps < 1:
            raise ValueError(f"action_steps={self.action_steps}: expected >= 1 or None")
        if self.max_batch is not None and self.max_batch < 1:
            raise ValueError(f"max_batch={self.max_batch}: expected >= 1 or None")
        check_value_conditioning(self.value_conditioning)
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation={self.aggregation!r}: expected one of {list(AGGREGATIONS)}")


@dataclass
class PlanResult:
    """What planning computed: proposals (N, K, d) normalised in the proposer's units, the raw value
    samples (N, W x V) of the last depth, the aggregated values (N,) and the winner's index."""

    actions: torch.Tensor
    value_samples: torch.Tensor
    values: torch.Tensor
    best: int
    fallback: bool = False  # scoring ran out of time: `best` is the first proposal and the values are NaN
    proposals_ready: float | None = None  # time.perf_counter() when the proposals were ready
    predicted: torch.Tensor | None = None  # the last depth's world-model latents (N x W, C, T, h, w), row i*W+j


class _OutOfTime(Exception):
    """Planning's deadline passed before the scoring finished."""


def _deadline_check(deadline: float | None, stop: threading.Event | None = None) -> Callable[[], None] | None:
    """An `interrupt` for the sampler that raises _OutOfTime once time.monotonic() passes `deadline`, or once
    `stop` is set (the caller is shutting down)."""
    if deadline is None and stop is None:
        return None

    def check() -> None:
        if (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop.is_set()):
            raise _OutOfTime

    return check


class CosmosPolicy:
    """Observation -> action chunk with a trained CosmosPolicyModel, its statistics and text embeddings."""

    def __init__(
        self,
        model: CosmosPolicyModel,
        sampler: SamplerConfig,
        statistics: Mapping[str, Any] | None,
        text_cache: Any | None,
        *,
        text_encoder: TextEncoder | None = None,
        camera_hw: tuple[int, int] | None | str = "layout",
        deploy: DeployConfig | None = None,
    ) -> None:
        self.model = model.eval()
        self.layout: LayoutConfig = model.layout
        # Camera frames must have this size (None: any size); "layout" takes the layout's camera_hw.
        self.camera_hw = self.layout.camera_hw if camera_hw == "layout" else camera_hw
        self.sampler = sampler
        # control rate, steps executed per chunk and the action denoising steps the checkpoint deploys with
        self.deploy = deploy or default_deploy(self.layout)
        self.statistics = statistics
        self.text_cache = text_cache
        self.text_encoder = text_encoder
        self._text_memo: dict[str, torch.Tensor] = {}
        self._mask_memo: dict[tuple[int, str], torch.Tensor] = {}

    @classmethod
    def from_checkpoint(
        cls,
        directory: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        layout: str | None = None,
        text_encoder: TextEncoder | None = None,
        camera_hw: tuple[int, int] | None | str = "layout",
        vae_base_dir: str | Path | None = None,
    ) -> CosmosPolicy:
        """Load a checkpoint directory (see checkpoint.py); `layout` checks the embodiment.

        camera_hw: the camera frame size to insist on ("layout": the layout's, e.g. 480 x 640 for ALOHA;
        None: any size, e.g. a simulator rendering smaller frames).
        vae_base_dir: where this machine keeps the diffusers base folder the checkpoint's VAE comes from.
        """
        loaded = load_checkpoint(directory, device=device, dtype=dtype, expected_layout=layout,
                                 vae_base_dir=vae_base_dir)
        return cls(loaded.model, loaded.sampler, loaded.statistics, loaded.text_cache, text_encoder=text_encoder,
                   camera_hw=camera_hw, deploy=loaded.deploy)

    @property
    def device(self) -> torch.device:
        return self.model.device

    def _normalizer(self, modality: str):
        from .data.statistics import Normalizer

        if self.statistics is None:
            raise ValueError(
                "dataset statistics: missing (the checkpoint has no dataset_statistics.json; copy the training "
                "run's statistics into the checkpoint directory)"
            )
        for stat in ("min", "max"):
            if f"{modality}_{stat}" not in self.statistics:
                raise ValueError(
                    f"dataset statistics: missing {modality}_{stat} (regenerate with `cosmos-policy stats`)"
                )
        normalizer = Normalizer(self.statistics, modality)
        want = self.layout.action_dim if modality == "actions" else self.layout.proprio_dim
        if normalizer.dim != want:
            raise ValueError(
                f"dataset statistics: {modality} has {normalizer.dim} dimensions, layout {self.layout.name} "
                f"expects {want}"
            )
        return normalizer

    def _text(self, task: str) -> torch.Tensor:
        if task in self._text_memo:
            return self._text_memo[task]
        if self.text_cache is not None and task in self.text_cache:
            embedding, mask = self.text_cache.get(task)
        elif self.text_encoder is not None:
            embedding, mask = self.text_encoder(task)
        else:
            known = list(self.text_cache.texts)[:5] if self.text_cache is not None else []
            raise ValueError(
                f"task {task!r}: no cached text embedding and no text encoder (known tasks: {known}); add it "
                f"with `cosmos-policy embed-text` or pass text_encoder="
            )
        dim = self.model.network_config.text_embed_dim
        if embedding.shape[-1] != dim:
            raise ValueError(f"task {task!r}: text embedding has {embedding.shape[-1]} dims, the network expects {dim}")
        text = (embedding.float() * mask[..., None].float()).to(self.device)
        self._text_memo[task] = text
        return text

    def prepare(self, obs: Mapping[str, Any]) -> PreparedObservation:
        """Check an observation and turn it into model inputs, on the CPU: the part of inference that a robot
        node can run in its own thread while the device is busy. Raises ValueError naming the bad input."""
        from .data.augment import prepare_observation_image

        if not isinstance(obs, Mapping):
            raise ValueError(f"obs: got {type(obs).__name__}, expected a dict with 'images', 'proprio', 'task'")
        missing = [k for k in ("images", "proprio", "task") if k not in obs]
        if missing:
            raise ValueError(f"obs: missing {missing} (expected 'images', 'proprio', 'task')")
        images = obs["images"]
        cams = list(self.layout.cameras)
        absent = [c for c in cams if c not in images]
        if absent:
            raise ValueError(f"obs images: missing cameras {absent} (layout {self.layout.name} expects {cams})")
        size = self.model.network_config.image_size_px
        frames = []
        for cam in cams:
            frame = images[cam]
            if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
                desc = f"{frame.shape} {frame.dtype}" if isinstance(frame, np.ndarray) else type(frame).__name__
                raise ValueError(f"{cam}: got {desc}, expected uint8 (H, W, 3) rgb")
            if self.camera_hw is not None and tuple(frame.shape[:2]) != tuple(self.camera_hw):
                h, w = self.camera_hw
                raise ValueError(
                    f"{cam}: got {frame.shape[0]}x{frame.shape[1]} rgb8, expected {h}x{w} rgb8 "
                    f"(check the camera config)"
                )
            frames.append(prepare_observation_image(frame, (size, size), region=self.layout.crop_box(cam)))
        proprio = np.asarray(obs["proprio"], dtype=np.float64)
        if proprio.shape != (self.layout.proprio_dim,):
            raise ValueError(
                f"proprio: got shape {proprio.shape}, expected ({self.layout.proprio_dim},) "
                f"for layout {self.layout.name}"
            )
        if not np.all(np.isfinite(proprio)):
            raise ValueError(f"proprio: non-finite values at indices {np.flatnonzero(~np.isfinite(proprio)).tolist()}")
        task = obs["task"]
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task: got {task!r}, expected a non-empty task description")
        proprio_n = torch.as_tensor(self._normalizer("proprio").normalize(proprio.astype(np.float32)))
        if not self.model.proprio_input:  # trained without it (proprio_dropout 1.0): hidden as in training
            proprio_n = torch.zeros_like(proprio_n)
        self._normalizer("actions")
        self._text(task)
        return PreparedObservation(torch.stack(frames)[None], proprio_n[None].float(), task)

    def _validate(self, obs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, proprio, text) on the device, batch 1."""
        return self._to_device(self.prepare(obs))

    def _to_device(self, prepared: PreparedObservation) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return (prepared.images.to(self.device), prepared.proprio.to(self.device),
                self._text(prepared.task)[None])

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def _clean_mask(self, objective: int, batch: int, value_conditioning: str = STATE_ACTION_NEXT_STATE) -> torch.Tensor:
        key = (objective, value_conditioning)
        if key not in self._mask_memo:
            self._mask_memo[key] = clean_mask_for(self.layout, objective, value_conditioning).to(self.device)
        return self._mask_memo[key][None].expand(batch, -1)

    def _row_generators(self, base_seed: int, *keys: tuple[int, ...]) -> list[torch.Generator]:
        """One generator per row, seeded from the base seed and the row's keys (seed switching)."""
        return [torch.Generator(device=self.device).manual_seed(_derive_seed(base_seed, *k)) for k in keys]

    def encode_observation(self, images: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """x_clean (B, 16, T, h, w): the encoded prefix (images + injected proprio), zeros after it."""
        prefix = encode_sequence(
            self.model.vae, self.layout, images, proprio=proprio, num_slots=prefix_slots(self.layout),
            vae_frames=self.model.network_config.vae_frames,
        )
        b, c, p, h, w = prefix.shape
        x = torch.zeros((b, c, self.layout.num_latent_frames, h, w), device=prefix.device, dtype=torch.float32)
        x[:, :, :p] = prefix
        return x

    def placeholder_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Latents (B, 16, T, h, w) of the whole placeholder sequence (blank frames in the injected slots,
        current images as future-image placeholders), before anything is injected: what the decoder sees in
        the injected slots when predicted future images are decoded."""
        return encode_sequence(self.model.vae, self.layout, images, vae_frames=self.model.network_config.vae_frames)

    @torch.no_grad()
    def _run(
        self, x_clean: torch.Tensor, text: torch.Tensor, action_steps: int, generator: torch.Generator | None
    ) -> _Generated:
        b = x_clean.shape[0]
        cfg = self.sampler
        x1 = generate(self.model, x_clean, self._clean_mask(POLICY, b), text, action_steps, cfg, generator)
        if cfg.mode == "parallel":
            return _Generated(x1, x1, x1)
        x2 = generate(self.model, x1, self._clean_mask(WORLD_MODEL, b), text, cfg.future_state_steps, cfg, generator)
        x3 = generate(self.model, x2, self._clean_mask(VALUE, b), text, cfg.value_steps, cfg, generator)
        return _Generated(x3, x1, x3)

    def _future_images(self, latents: torch.Tensor, placeholders: torch.Tensor) -> list[dict[str, np.ndarray]]:
        # The causal decoder carries every earlier latent frame into later ones: decoding the injected
        # vectors (tiled actions, proprio, value) would distort the images, so their slots get back the
        # placeholder latents first, as the release does.
        latents = latents.clone()
        injected = [i for i, slot in enumerate(self.layout.slots) if slot.kind not in ("image", "future_image")]
        latents[:, :, injected] = placeholders[:, :, injected].to(latents.dtype).expand(latents.shape[0], -1, -1, -1, -1)
        pixels = decode_slots(self.model.vae, latents, self.model.network_config.vae_frames).float()
        out = []
        for i in range(latents.shape[0]):
            per_cam = {}
            for cam in self.layout.cameras:
                frame = pixels[i, :, self.layout.index("future_image", cam)]
                per_cam[cam] = ((frame.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
            out.append(per_cam)
        return out

    def _sample_actions(
        self, x_prefix: torch.Tensor, text: torch.Tensor, steps: int, n: int,
        generator: torch.Generator | None, placeholders: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, list[dict[str, np.ndarray]] | None]:
        """(normalised actions (n, K, d), values in [0, 1] (n,), future images or None) from one encoded prefix.

        Future images are decoded when the placeholder latents are given (see `placeholder_latents`)."""
        layout = self.layout
        x_clean = x_prefix.expand(n, -1, -1, -1, -1).contiguous()
        out = self._run(x_clean, text.expand(n, -1, -1), steps, generator)
        flat = extract(out.action_latents, layout.index("action"), layout.vector_length("action"))
        actions = flat.reshape(n, layout.action_chunk, layout.action_dim).clamp(-1.0, 1.0)
        values = value_to_unit(extract_value(out.value_latents, layout.index("value")))
        future = self._future_images(out.latents, placeholders) if placeholders is not None else None
        return actions, values, future

    def act(
        self,
        obs: Mapping[str, Any],
        *,
        num_steps: int | None = None,
        return_future_images: bool = False,
        seed: int | None = None,
        num_candidates: int = 1,
    ) -> ActionChunk | ActionCandidates:
        """Predict an action chunk (robot units) and its value in [0, 1] from one observation.

        num_steps overrides the checkpoint's deploy action steps; num_candidates > 1 samples that many chunks in
        one batch and returns ActionCandidates. Future images are decoded only when asked (expensive).
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates={num_candidates}: expected >= 1")
        steps = self.deploy.action_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise ValueError(f"num_steps={num_steps}: expected >= 1")
        start = time.perf_counter()
        return self.infer(self.prepare(obs), num_steps=steps, return_future_images=return_future_images,
                          seed=seed, num_candidates=num_candidates, _start=start)

    @torch.no_grad()
    def infer(
        self,
        prepared: PreparedObservation,
        *,
        num_steps: int | None = None,
        return_future_images: bool = False,
        seed: int | None = None,
        num_candidates: int = 1,
        _start: float | None = None,
    ) -> ActionChunk | ActionCandidates:
        """The device part of `act`: from a `prepare`d observation to the chunk (see `act` for the options)."""
        start = time.perf_counter() if _start is None else _start
        steps = self.deploy.action_steps if num_steps is None else int(num_steps)
        if steps < 1 or num_candidates < 1:
            raise ValueError(f"num_steps={num_steps}, num_candidates={num_candidates}: expected >= 1")
        images, proprio, text = self._to_device(prepared)
        with torch.no_grad():
            x_prefix = self.encode_observation(images, proprio)
            placeholders = self.placeholder_latents(images) if return_future_images else None
            actions, values, future = self._sample_actions(
                x_prefix, text, steps, num_candidates, self._generator(seed), placeholders
            )
            actions_np = self._normalizer("actions").unnormalize(actions).float().cpu().numpy().astype(np.float32)
            values_np = values.float().cpu().numpy()
        latency_s = time.perf_counter() - start
        if num_candidates == 1:
            return ActionChunk(actions_np[0], float(values_np[0]), future[0] if future else None, latency_s)
        return ActionCandidates(actions_np, values_np, future, latency_s)

    # ---- planning ---------------------------------------------------------------------------------------

    def _propose(
        self, prefix: torch.Tensor, text: torch.Tensor, steps: int, generators, max_batch: int | None,
        interrupt: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Normalised action chunks (R, K, d), one per prefix row (R, C, T, h, w): the policy pass only."""
        layout, r = self.layout, prefix.shape[0]
        x = generate(self.model, prefix, self._clean_mask(POLICY, r), text.expand(r, -1, -1), steps, self.sampler,
                     generators, max_batch=max_batch, interrupt=interrupt)
        flat = extract(x, layout.index("action"), layout.vector_length("action"))
        return flat.reshape(r, layout.action_chunk, layout.action_dim).clamp(-1.0, 1.0)

    def _world_model(
        self, prefix: torch.Tensor, actions: torch.Tensor, text: torch.Tensor, steps: int, generators,
        max_batch: int | None, interrupt: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Latents (R, C, T, h, w) with s' (and a value) predicted from each prefix row and action chunk."""
        r = prefix.shape[0]
        x = inject_vectors(self.layout, prefix, actions=actions.to(prefix.device))
        return generate(self.model, x, self._clean_mask(WORLD_MODEL, r), text.expand(r, -1, -1), steps,
                        self.sampler, generators, max_batch=max_batch, interrupt=interrupt)

    def _values(
        self, latents: torch.Tensor, text: torch.Tensor, steps: int, generators, value_conditioning: str,
        max_batch: int | None, interrupt: Callable[[], None] | None = None,
    ) -> torch.Tensor:
        """Values in [0, 1] (R,) of latent sequences (R, C, T, h, w): only the value frame is generated;
        under "next_state" the current state and action frames are masked out (noise, not condition)."""
        r = latents.shape[0]
        x = generate(self.model, latents, self._clean_mask(VALUE, r, value_conditioning), text.expand(r, -1, -1),
                     steps, self.sampler, generators, max_batch=max_batch, interrupt=interrupt)
        return value_to_unit(extract_value(x, self.layout.index("value")))

    @torch.no_grad()
    def predict_values(
        self,
        latents: torch.Tensor,
        task: str,
        *,
        samples: int = 1,
        num_steps: int = 5,
        value_conditioning: str = NEXT_STATE,
        seed: int | None = None,
        max_batch: int | None = 16,
    ) -> torch.Tensor:
        """Value samples in [0, 1], (B, samples), of whole latent sequences (B, C, T, h, w), e.g. after a
        world-model pass. "next_state": V(s') as the release's planning model (the current state and action
        frames are masked out, so they cannot change the value); "state_action_next_state": V(s, a, s')."""
        check_value_conditioning(value_conditioning)
        b = latents.shape[0]
        base = self._base_seed(seed)
        x = latents.to(self.device).float().repeat_interleave(samples, dim=0)
        gens = self._row_generators(base, *[(_VALUE, 0, i, k) for i in range(b) for k in range(samples)])
        values = self._values(x, self._text(task)[None], num_steps, gens, value_conditioning, max_batch)
        return values.reshape(b, samples)

    @staticmethod
    def _base_seed(seed: int | None) -> int:
        return int(torch.randint(0, 2**62, ()).item()) if seed is None else int(seed)

    def _actions_from(self, actions: torch.Tensor, source: CosmosPolicy) -> torch.Tensor:
        """Normalised actions of `source` (another checkpoint) in this checkpoint's normalisation."""
        if _same_statistics(self, source, "actions"):
            return actions.to(self.device)
        robot = source._normalizer("actions").unnormalize(actions.float())
        return self._normalizer("actions").normalize(robot).to(self.device)

    def _prefix_for(self, latents: torch.Tensor, source: CosmosPolicy) -> torch.Tensor:
        """The predicted future state of `source`'s latents (R, C, T, h, w) as this checkpoint's prefix."""
        proprio = None
        if not _same_statistics(self, source, "proprio"):
            future = extract(latents, source.layout.index("future_proprio"), source.layout.proprio_dim)
            robot = source._normalizer("proprio").unnormalize(future.clamp(-1.0, 1.0))
            proprio = self._normalizer("proprio").normalize(robot).to(latents.device)
        return future_state_as_current(self.layout, latents, proprio).to(self.device)

    def _plan_core(
        self,
        proposer: CosmosPolicy,
        proposer_prefix: torch.Tensor | None,
        proposer_text: torch.Tensor | None,
        prefix: torch.Tensor,
        text: torch.Tensor,
        options: PlanningOptions,
        base_seed: int,
        actions: torch.Tensor | None = None,
        deadline: float | None = None,
        stop: threading.Event | None = None,
    ) -> PlanResult:
        """Propose (unless `actions` (N, K, d) in this checkpoint's units are given), predict s' and V(s'),
        aggregate. Prefixes (1, C, T, h, w) are encoded once per checkpoint and shared by every row.

        deadline (time.monotonic()): once the proposals exist, every later network evaluation first checks
        the clock; past the deadline the scoring is abandoned and the result is the first proposal with NaN
        values and `fallback` set (the proposals themselves always complete: without one there is no chunk)."""
        o = options
        n = o.num_candidates if actions is None else actions.shape[0]
        steps = proposer.deploy.action_steps if o.action_steps is None else o.action_steps
        if actions is None:
            gens = proposer._row_generators(base_seed, *[(_PROPOSE, 0, i) for i in range(n)])
            proposals = proposer._propose(proposer_prefix.expand(n, -1, -1, -1, -1), proposer_text, steps, gens,
                                          o.max_batch)
            actions = self._actions_from(proposals, proposer)
        else:
            proposals = actions
        proposals_ready = time.perf_counter()
        try:
            samples, predicted = self._score(proposer, proposer_text, prefix, text, actions, o, base_seed, steps,
                                             _deadline_check(deadline, stop))
        except _OutOfTime:
            nan = torch.full((n,), float("nan"))
            return PlanResult(proposals, nan[:, None], nan, 0, fallback=True, proposals_ready=proposals_ready)
        values = aggregate_values(samples, o.aggregation, o.value_threshold)
        return PlanResult(proposals, samples, values, int(torch.argmax(values)), proposals_ready=proposals_ready,
                          predicted=predicted)

    def _score(
        self,
        proposer: CosmosPolicy,
        proposer_text: torch.Tensor | None,
        prefix: torch.Tensor,
        text: torch.Tensor,
        actions: torch.Tensor,
        o: PlanningOptions,
        base_seed: int,
        steps: int,
        interrupt: Callable[[], None] | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Value samples (N, W x V) of the candidate chunks `actions` (N, K, d) in this checkpoint's units:
        W world-model rollouts per chunk (re-planned `depth` - 1 times), V values of each last state; and the
        last world-model latents (N x W rows) the values were read from."""
        n, w, v = actions.shape[0], o.world_model_samples, o.value_samples
        rows = [(i, j) for i in range(n) for j in range(w)]
        x = prefix.expand(n * w, -1, -1, -1, -1)
        chunk = actions.repeat_interleave(w, dim=0)
        for d in range(o.depth):
            if d > 0:  # re-plan from every branch's predicted future state
                p_prefix = proposer._prefix_for(x, self)
                gens = proposer._row_generators(base_seed, *[(_PROPOSE, d, i, j) for i, j in rows])
                chunk = self._actions_from(proposer._propose(p_prefix, proposer_text, steps, gens, o.max_batch,
                                                             interrupt), proposer)
                x = future_state_as_current(self.layout, x)
            gens = self._row_generators(base_seed, *[(_WORLD_MODEL, d, i, j) for i, j in rows])
            x = self._world_model(x, chunk, text, o.world_model_steps, gens, o.max_batch, interrupt)
        gens = self._row_generators(base_seed, *[(_VALUE, o.depth - 1, i, j, k) for i, j in rows for k in range(v)])
        values = self._values(x.repeat_interleave(v, dim=0), text, o.value_steps, gens, o.value_conditioning,
                              o.max_batch, interrupt).reshape(n, w * v)
        return values, x

    @torch.no_grad()
    def score_actions(
        self,
        obs: Mapping[str, Any],
        actions: np.ndarray,
        *,
        world_model_samples: int = 3,
        value_samples: int = 5,
        seed: int | None = None,
        world_model_steps: int = 5,
        value_steps: int = 5,
        value_conditioning: str = NEXT_STATE,
        aggregation: str = "majority_mean",
        value_threshold: float = RELEASE_VALUE_THRESHOLD,
        max_batch: int | None = 16,
    ) -> np.ndarray:
        """Aggregated V(s') per candidate chunk (N, K, d) in robot units: world-model samples x value samples
        (release defaults, see `PlanningOptions`)."""
        actions = np.asarray(actions, dtype=np.float32)
        layout = self.layout
        if actions.ndim != 3 or actions.shape[0] < 1 or actions.shape[1:] != (layout.action_chunk, layout.action_dim):
            raise ValueError(
                f"actions: got {actions.shape}, expected (N, {layout.action_chunk}, {layout.action_dim})"
            )
        options = PlanningOptions(num_candidates=actions.shape[0], world_model_samples=world_model_samples,
                                  value_samples=value_samples, world_model_steps=world_model_steps,
                                  value_steps=value_steps, value_conditioning=value_conditioning,
                                  aggregation=aggregation, value_threshold=value_threshold, max_batch=max_batch)
        images, proprio, text = self._validate(obs)
        actions_n = torch.as_tensor(self._normalizer("actions").normalize(actions)).to(self.device)
        result = self._plan_core(self, None, None, self.encode_observation(images, proprio), text, options,
                                 self._base_seed(seed), actions=actions_n)
        return result.values.float().cpu().numpy()

    @torch.no_grad()
    def plan(
        self,
        obs: Mapping[str, Any],
        *,
        proposer: CosmosPolicy | None = None,
        num_candidates: int = 8,
        world_model_samples: int = 3,
        value_samples: int = 5,
        seed: int | None = None,
        action_steps: int | None = None,
        world_model_steps: int = 5,
        value_steps: int = 5,
        value_conditioning: str = NEXT_STATE,
        aggregation: str = "majority_mean",
        value_threshold: float = RELEASE_VALUE_THRESHOLD,
        depth: int = 1,
        max_batch: int | None = 16,
        options: PlanningOptions | None = None,
        deadline: float | None = None,
        stop: threading.Event | None = None,
        return_future_images: bool = False,
    ) -> ActionChunk:
        """Best-of-N as the release deploys it: `proposer` (the base policy's checkpoint; default: this one,
        which then does both) samples N chunks with its deploy action steps; this checkpoint (the planning
        model) scores each by world-model samples x V(s') samples, majority mean; the best chunk wins.

        Each checkpoint encodes the observation once; the prefix is shared by every candidate and sample.
        Every candidate, world-model sample and value sample draws from its own seed, derived from `seed`.
        `options` (a PlanningOptions) replaces all the keyword settings at once; see PlanningOptions for
        their meaning. Returns the winner (robot units), its value and every candidate's value.

        deadline: a time.monotonic() by which the chunk is needed (a controller's next switch). Scoring that
        is still running then is abandoned: the result is the base policy's first proposal, value NaN,
        `planning_fallback` True. None: no limit. `stop` (a threading.Event) abandons the scoring the same way
        once it is set: a node shutting down need not wait out a planning chunk.
        return_future_images: decode the winner's first world-model sample (what the planner expects the
        cameras to see at the end of the chunk, of the last re-planned one when depth > 1); none after a
        fallback, nor when the deadline has passed by the time the winner is known.
        """
        if options is None:
            options = PlanningOptions(num_candidates=num_candidates, world_model_samples=world_model_samples,
                                      value_samples=value_samples, action_steps=action_steps,
                                      world_model_steps=world_model_steps, value_steps=value_steps,
                                      value_conditioning=value_conditioning, aggregation=aggregation,
                                      value_threshold=value_threshold, depth=depth, max_batch=max_batch)
        proposer = self if proposer is None else proposer
        if proposer.layout != self.layout:
            raise ValueError(
                f"proposer: layout {proposer.layout.name!r} differs from the planning model's {self.layout.name!r}"
            )
        start = time.perf_counter()
        prepared = proposer.prepare(obs)
        images, proprio, text = proposer._to_device(prepared)
        proposer_prefix = proposer.encode_observation(images, proprio)
        if proposer is self:
            prefix, own_text = proposer_prefix, text
        else:
            images_s, proprio_s, own_text = self._validate(obs)
            prefix = self.encode_observation(images_s, proprio_s)
        result = self._plan_core(proposer, proposer_prefix, text, prefix, own_text, options, self._base_seed(seed),
                                 deadline=deadline, stop=stop)
        best = result.best
        chunk = proposer._normalizer("actions").unnormalize(result.actions[best]).float().cpu().numpy()
        future = None
        out_of_time = (deadline is not None and time.monotonic() > deadline) or (stop is not None and stop.is_set())
        if return_future_images and result.predicted is not None and not out_of_time:  # never make a chunk late
            w = options.world_model_samples
            own_images = images if proposer is self else images_s
            future = self._future_images(result.predicted[best * w:best * w + 1],
                                         self.placeholder_latents(own_images))[0]
        return ActionChunk(chunk.astype(np.float32), float(result.values[best]), future, time.perf_counter() - start,
                           None if result.fallback else result.values.float().cpu().numpy(),
                           planning_fallback=result.fallback, proposal_latency_s=result.proposals_ready - start,
                           candidate_value_samples=None if result.fallback else
                           result.value_samples.float().cpu().numpy())

    def warmup(self, task: str | None = None, runs: int = 2, num_steps: int | None = None) -> float:
        """Run inference on a synthetic observation so that the first real chunk is not slow (lazy
        allocations, kernel selection); returns the median latency in seconds of the runs."""
        if task is None:
            if self.text_cache is None or not list(self.text_cache.texts):
                raise ValueError("warmup: no task given and the checkpoint caches no task text")
            task = list(self.text_cache.texts)[0]
        h, w = self.camera_hw or (self.model.network_config.image_size_px,) * 2
        proprio = np.zeros(self.layout.proprio_dim, dtype=np.float32)
        if self.statistics is not None and "proprio_min" in self.statistics:
            proprio = (np.asarray(self.statistics["proprio_min"]) + np.asarray(self.statistics["proprio_max"])) / 2
        obs = {"images": {cam: np.zeros((h, w, 3), np.uint8) for cam in self.layout.cameras},
               "proprio": proprio, "task": task}
        latencies = [self.act(obs, num_steps=num_steps, seed=0).latency_s for _ in range(max(1, runs))]
        return float(np.median(latencies))
