"""Inference API: `CosmosPolicy.from_checkpoint(dir).act(obs)` -> action chunk, value, optional future images."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .checkpoint import load_checkpoint
from .config import LayoutConfig, SamplerConfig
from .deploy import DeployConfig, default_deploy
from .diffusion import CosmosPolicyModel
from .injection import extract, extract_value, value_to_unit
from .latent_sequence import encode_sequence, inject_vectors, prefix_slots
from .networks import decode_normalised
from .objectives import POLICY, VALUE, WORLD_MODEL, clean_mask_for
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


def majority_mean(values: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Aggregate value samples (N, S) in [0, 1]: the mean of the majority side of `threshold`."""
    high = values >= threshold
    majority_high = high.float().mean(dim=1) >= 0.5
    pick = torch.where(majority_high[:, None], high, ~high).float()
    return (values * pick).sum(dim=1) / pick.sum(dim=1).clamp(min=1.0)


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
        self._mask_memo: dict[int, torch.Tensor] = {}

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
    ) -> "CosmosPolicy":
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
            frames.append(prepare_observation_image(frame, (size, size)))
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

    def _clean_mask(self, objective: int, batch: int) -> torch.Tensor:
        if objective not in self._mask_memo:
            self._mask_memo[objective] = clean_mask_for(self.layout, objective).to(self.device)
        return self._mask_memo[objective][None].expand(batch, -1)

    def encode_observation(self, images: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """x_clean (B, 16, T, h, w): the encoded prefix (images + injected proprio), zeros after it."""
        prefix = encode_sequence(
            self.model.vae, self.layout, images, proprio=proprio, num_slots=prefix_slots(self.layout)
        )
        b, c, p, h, w = prefix.shape
        x = torch.zeros((b, c, self.layout.num_latent_frames, h, w), device=prefix.device, dtype=torch.float32)
        x[:, :, :p] = prefix
        return x

    def placeholder_latents(self, images: torch.Tensor) -> torch.Tensor:
        """Latents (B, 16, T, h, w) of the whole placeholder sequence (blank frames in the injected slots,
        current images as future-image placeholders), before anything is injected: what the decoder sees in
        the injected slots when predicted future images are decoded."""
        return encode_sequence(self.model.vae, self.layout, images)

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
        pixels = decode_normalised(self.model.vae, latents).float()
        out = []
        for i in range(latents.shape[0]):
            per_cam = {}
            for cam in self.layout.cameras:
                k = self.layout.index("future_image", cam)
                frame = pixels[i, :, 4 * k]
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

    def _score(
        self, x_prefix: torch.Tensor, text: torch.Tensor, actions: torch.Tensor, world_model_samples: int,
        value_samples: int, generator: torch.Generator | None,
    ) -> torch.Tensor:
        """Majority-mean V(s') (n,) of normalised action chunks (n, K, d): world model, then value, batched."""
        n, w, v = actions.shape[0], world_model_samples, value_samples
        cfg = self.sampler
        x = x_prefix.expand(n * w, -1, -1, -1, -1)
        x = inject_vectors(self.layout, x, actions=actions.repeat_interleave(w, dim=0))
        x = generate(self.model, x, self._clean_mask(WORLD_MODEL, n * w), text.expand(n * w, -1, -1),
                     cfg.future_state_steps, cfg, generator)
        x = x.repeat_interleave(v, dim=0)
        x = generate(self.model, x, self._clean_mask(VALUE, n * w * v), text.expand(n * w * v, -1, -1),
                     cfg.value_steps, cfg, generator)
        values = value_to_unit(extract_value(x, self.layout.index("value"))).reshape(n, w * v)
        return majority_mean(values)

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

    @torch.no_grad()
    def score_actions(
        self,
        obs: Mapping[str, Any],
        actions: np.ndarray,
        *,
        world_model_samples: int = 3,
        value_samples: int = 5,
        seed: int | None = None,
    ) -> np.ndarray:
        """V(s') per candidate chunk (N, K, d) in robot units: world-model samples x value samples, majority mean."""
        actions = np.asarray(actions, dtype=np.float32)
        layout = self.layout
        if actions.ndim != 3 or actions.shape[1:] != (layout.action_chunk, layout.action_dim):
            raise ValueError(
                f"actions: got {actions.shape}, expected (N, {layout.action_chunk}, {layout.action_dim})"
            )
        images, proprio, text = self._validate(obs)
        actions_n = torch.as_tensor(self._normalizer("actions").normalize(actions)).to(self.device)
        values = self._score(self.encode_observation(images, proprio), text, actions_n, world_model_samples,
                             value_samples, self._generator(seed))
        return values.float().cpu().numpy()

    @torch.no_grad()
    def plan(
        self,
        obs: Mapping[str, Any],
        *,
        proposer: "CosmosPolicy | None" = None,
        num_candidates: int = 8,
        world_model_samples: int = 3,
        value_samples: int = 5,
        seed: int | None = None,
    ) -> ActionChunk:
        """Best-of-N: `proposer` (default: this policy) samples N chunks, this model scores V(s'), best wins.

        With the default proposer the observation is encoded once and nothing leaves the device until
        the winner is chosen.
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates={num_candidates}: expected >= 1")
        if proposer is not None and proposer.layout != self.layout:
            raise ValueError(
                f"proposer: layout {proposer.layout.name!r} differs from the planning model's {self.layout.name!r}"
            )
        start = time.perf_counter()
        images, proprio, text = self._validate(obs)
        generator = self._generator(seed)
        x_prefix = self.encode_observation(images, proprio)
        if proposer is None:
            actions, _, _ = self._sample_actions(x_prefix, text, self.deploy.action_steps, num_candidates,
                                                 generator, None)
        else:
            proposals = proposer.act(obs, seed=seed, num_candidates=num_candidates)
            chunks = proposals.actions if num_candidates > 1 else proposals.actions[None]
            actions = torch.as_tensor(self._normalizer("actions").normalize(chunks)).to(self.device)
        values = self._score(x_prefix, text, actions, world_model_samples, value_samples, generator)
        best = int(torch.argmax(values))
        chunk = self._normalizer("actions").unnormalize(actions[best]).float().cpu().numpy().astype(np.float32)
        return ActionChunk(chunk, float(values[best]), None, time.perf_counter() - start,
                           values.float().cpu().numpy())

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
