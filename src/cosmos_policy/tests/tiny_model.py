"""Tiny-config model, batch and checkpoint builders shared by the model-side tests (not collected)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cosmos_policy.checkpoint import save_checkpoint
from cosmos_policy.config import NetworkConfig, SamplerConfig, load_layout
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel

TASK = "fold the shirt"


def tiny_model(layout: str = "aloha", seed: int = 0) -> CosmosPolicyModel:
    torch.manual_seed(seed)
    return CosmosPolicyModel(NetworkConfig.preset_config("tiny"), load_layout(layout))


def statistics(layout) -> dict[str, list[float]]:
    return {
        "actions_min": [-1.0 - 0.1 * i for i in range(layout.action_dim)],
        "actions_max": [2.0 + 0.1 * i for i in range(layout.action_dim)],
        "proprio_min": [-3.0] * layout.proprio_dim,
        "proprio_max": [3.0] * layout.proprio_dim,
    }


def text_cache(model: CosmosPolicyModel, texts=(TASK,)):
    net = model.network_config
    return build_text_cache(list(texts), d_text=net.text_embed_dim, max_length=net.text_max_tokens)


def write_checkpoint(directory: Path, model: CosmosPolicyModel, sampler: SamplerConfig | None = None) -> Path:
    return save_checkpoint(
        directory, model, sampler=sampler, statistics=statistics(model.layout), text_cache=text_cache(model)
    )


def random_batch(model: CosmosPolicyModel, objectives, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    lay, net = model.layout, model.network_config
    b, s = len(objectives), net.image_size_px

    def u(*shape):
        return torch.rand(*shape, generator=g) * 2 - 1

    return {
        "images": u(b, len(lay.cameras), 3, s, s),
        "future_images": u(b, len(lay.cameras), 3, s, s),
        "proprio": u(b, lay.proprio_dim),
        "future_proprio": u(b, lay.proprio_dim),
        "actions": u(b, lay.action_chunk, lay.action_dim),
        "value": u(b),
        "text_embeddings": torch.randn(b, net.text_max_tokens, net.text_embed_dim, generator=g),
        "text_mask": torch.ones(b, net.text_max_tokens, dtype=torch.bool),
        "objective": torch.tensor(list(objectives), dtype=torch.long),
    }


def random_latents(model: CosmosPolicyModel, batch: int, seed: int = 0) -> torch.Tensor:
    net, lay = model.network_config, model.layout
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, net.latent_channels, lay.num_latent_frames, net.latent_size, net.latent_size, generator=g)


def observation(layout, seed: int = 0, task: str = TASK) -> dict:
    rng = np.random.default_rng(seed)
    hw = layout.camera_hw or (96, 96)
    return {
        "images": {c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c in layout.cameras},
        "proprio": rng.uniform(-2.0, 2.0, layout.proprio_dim),
        "task": task,
    }
