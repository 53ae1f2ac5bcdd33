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
    ) -> None:
        self.model = model.eval()
        self.layout: LayoutConfig = model.layout
        self.sampler = sampler
        self.statistics = statistics
        self.text_cache = text_cache
        self.text_encoder = text_encoder
        self._text_memo: dict[str, torch.Tensor] = {}

    @classmethod
    def from_checkpoint(
        cls,
        directory: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype | None = None,
        layout: str | None = None,
        text_encoder: TextEncoder | None = None,
    ) -> "CosmosPolicy":
        """Load a checkpoint directory (see checkpoint.py); `layout` checks the embodiment."""
        loaded = load_checkpoint(directory, device=device, dtype=dtype, expected_layout=layout)
        return cls(loaded.model, loaded.sampler, loaded.statistics, loaded.text_cache, text_encoder=text_encoder)

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
                raise ValueError(f"dataset statistics: missing {modality}_{stat} (regenerate with `cosmos-policy stats`)")
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

    def _validate(self, obs: Mapping[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
            if self.layout.camera_hw is not None and tuple(frame.shape[:2]) != tuple(self.layout.camera_hw):
                h, w = self.layout.camera_hw
                raise ValueError(
                    f"{cam}: got {frame.shape[0]}x{frame.shape[1]} rgb8, expected {h}x{w} rgb8 (check the camera config)"
                )
            frames.append(prepare_observation_image(frame, (size, size)))
        proprio = np.asarray(obs["proprio"], dtype=np.float64)
        if proprio.shape != (self.layout.proprio_dim,):
            raise ValueError(
                f"proprio: got shape {proprio.shape}, expected ({self.layout.proprio_dim},) for layout {self.layout.name}"
            )
        if not np.all(np.isfinite(proprio)):
            raise ValueError(f"proprio: non-finite values at indices {np.flatnonzero(~np.isfinite(proprio)).tolist()}")
        task = obs["task"]
        if not isinstance(task, str) or not task.strip():
            raise ValueError(f"task: got {task!r}, expected a non-empty task description")
        proprio_n = torch.as_tensor(self._normalizer("proprio").normalize(proprio.astype(np.float32)))
        self._normalizer("actions")
        image_tensor = torch.stack(frames)[None].to(self.device)
        return image_tensor, proprio_n[None].float().to(self.device), self._text(task)[None]

    def _generator(self, seed: int | None) -> torch.Generator | None:
        if seed is None:
            return None
        return torch.Generator(device=self.device).manual_seed(int(seed))

    def _clean_mask(self, objective: int, batch: int) -> torch.Tensor:
        return clean_mask_for(self.layout, objective).to(self.device)[None].expand(batch, -1)

    def encode_observation(self, images: torch.Tensor, proprio: torch.Tensor) -> torch.Tensor:
        """x_clean (B, 16, T, h, w): the encoded prefix (images + injected proprio), zeros after it."""
        prefix = encode_sequence(self.model.vae, self.layout, images, proprio=proprio, num_slots=prefix_slots(self.layout))
        b, c, p, h, w = prefix.shape
        x = torch.zeros((b, c, self.layout.num_latent_frames, h, w), device=prefix.device, dtype=torch.float32)
        x[:, :, :p] = prefix
        return x

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

    def _future_images(self, latents: torch.Tensor) -> list[dict[str, np.ndarray]]:
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

        num_steps overrides the sampler's action steps; num_candidates > 1 samples that many chunks in
        one batch and returns ActionCandidates. Future images are decoded only when asked (expensive).
        """
        if num_candidates < 1:
            raise ValueError(f"num_candidates={num_candidates}: expected >= 1")
        steps = self.sampler.action_steps if num_steps is None else int(num_steps)
        if steps < 1:
            raise ValueError(f"num_steps={num_steps}: expected >= 1")
        start = time.perf_counter()
        images, proprio, text = self._validate(obs)
        generator = self._generator(seed)
        with torch.no_grad():
            x_clean = self.encode_observation(images, proprio).expand(num_candidates, -1, -1, -1, -1).contiguous()
            out = self._run(x_clean, text.expand(num_candidates, -1, -1), steps, generator)
            layout = self.layout
            flat = extract(out.action_latents, layout.index("action"), layout.vector_length("action"))
            actions = self._normalizer("actions").unnormalize(
                flat.reshape(num_candidates, layout.action_chunk, layout.action_dim)
            )
            values = value_to_unit(extract_value(out.value_latents, layout.index("value")))
            future = self._future_images(out.latents) if return_future_images else None
            actions_np = actions.float().cpu().numpy().astype(np.float32)
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
        n, w, v = actions.shape[0], world_model_samples, value_samples
        images, proprio, text = self._validate(obs)
        generator = self._generator(seed)
        prefix = self.encode_observation(images, proprio)
        actions_n = torch.as_tensor(self._normalizer("actions").normalize(actions)).to(self.device)
        x = prefix.expand(n * w, -1, -1, -1, -1)
        x = inject_vectors(layout, x, actions=actions_n.repeat_interleave(w, dim=0))
        cfg = self.sampler
        x = generate(self.model, x, self._clean_mask(WORLD_MODEL, n * w), text.expand(n * w, -1, -1),
                     cfg.future_state_steps, cfg, generator)
        x = x.repeat_interleave(v, dim=0)
        x = generate(self.model, x, self._clean_mask(VALUE, n * w * v), text.expand(n * w * v, -1, -1),
                     cfg.value_steps, cfg, generator)
        values = value_to_unit(extract_value(x, layout.index("value"))).reshape(n, w * v)
        return majority_mean(values).float().cpu().numpy()

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
        """Best-of-N: `proposer` (default: this policy) samples N chunks, this model scores V(s'), best wins."""
        start = time.perf_counter()
        proposals = (proposer or self).act(obs, seed=seed, num_candidates=max(2, num_candidates))
        sub_seed = None if seed is None else seed + 1
        values = self.score_actions(obs, proposals.actions[:num_candidates], world_model_samples=world_model_samples,
                                    value_samples=value_samples, seed=sub_seed)
        i = int(np.argmax(values))
        return ActionChunk(proposals.actions[i], float(values[i]), None, time.perf_counter() - start)

