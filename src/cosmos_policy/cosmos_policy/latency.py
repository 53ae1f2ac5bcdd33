"""Latency measurement of the inference path (used by benchmarks/ and the `bench` command). Never asserts."""

from __future__ import annotations

import statistics as stats
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .config import NetworkConfig, SamplerConfig, load_layout
from .diffusion import CosmosPolicyModel
from .latent_sequence import encode_sequence, prefix_slots
from .networks import build_transformer, build_vae
from .policy import CosmosPolicy

BENCH_TASK = "benchmark task"


@dataclass
class Timing:
    """Wall-clock figures of one measured call, in seconds."""

    what: str
    median_s: float
    min_s: float
    runs: int


def time_call(what: str, fn: Callable[[], Any], runs: int, device: torch.device) -> Timing:
    """Median / min wall time of `fn` after one warm-up; the device is synchronised around each run only."""
    fn()
    times = []
    for _ in range(max(1, runs)):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return Timing(what, stats.median(times), min(times), len(times))


def random_policy(
    preset: str, layout_name: str, device: torch.device | str, dtype: torch.dtype = torch.float32, seed: int = 0
) -> CosmosPolicy:
    """A CosmosPolicy with random weights, unit statistics and a random task embedding (for timing only).

    Built on the meta device and initialised where it will run, so the 2B model never needs an fp32
    copy in host memory.
    """
    device = torch.device(device)
    net = NetworkConfig.preset_config(preset)
    layout = load_layout(layout_name)
    with torch.device("meta"):
        model = CosmosPolicyModel(net, layout, transformer=build_transformer(net), vae=build_vae(net))
    model.to_empty(device=device)
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for module in model.modules():
            if module is not model and hasattr(module, "reset_parameters"):
                module.reset_parameters()
    model = model.to(dtype=dtype).eval()
    statistics = {
        "actions_min": np.full(layout.action_dim, -1.0, np.float32),
        "actions_max": np.full(layout.action_dim, 1.0, np.float32),
        "proprio_min": np.full(layout.proprio_dim, -1.0, np.float32),
        "proprio_max": np.full(layout.proprio_dim, 1.0, np.float32),
    }
    from .data.text import TextEmbeddingCache

    tokens = net.text_max_tokens
    generator = torch.Generator().manual_seed(seed)
    embedding = 0.2 * torch.randn(tokens, net.text_embed_dim, generator=generator)
    cache = TextEmbeddingCache({BENCH_TASK: (embedding, torch.ones(tokens, dtype=torch.bool))}, source="random")
    return CosmosPolicy(model, SamplerConfig(), statistics, cache)


def synthetic_observation(policy: CosmosPolicy, task: str = BENCH_TASK, seed: int = 0) -> dict:
    """Random camera frames at the layout's camera size (or 256 x 256), zero proprio."""
    rng = np.random.default_rng(seed)
    hw = policy.camera_hw or (256, 256)
    return {
        "images": {c: rng.integers(0, 256, (*hw, 3), dtype=np.uint8) for c in policy.layout.cameras},
        "proprio": np.zeros(policy.layout.proprio_dim),
        "task": task,
    }


def benchmark_policy(
    policy: CosmosPolicy,
    obs: dict,
    *,
    runs: int = 5,
    action_steps: tuple[int, ...] = (1, 5, 10),
    candidates: int = 8,
    world_model_samples: int = 3,
    value_samples: int = 5,
    future_images: bool = True,
) -> list[Timing]:
    """Time the prefix encode, one chunk per step count, N candidates in one batch, best-of-N planning."""
    device = policy.device
    layout, net = policy.layout, policy.model.network_config
    size = net.image_size_px
    images = torch.rand(1, len(layout.cameras), 3, size, size, device=device) * 2 - 1
    rows = []
    with torch.no_grad():
        rows.append(time_call("VAE encode, prefix only (B=1)", lambda: encode_sequence(
            policy.model.vae, layout, images, num_slots=prefix_slots(layout), vae_frames=net.vae_frames), runs, device))
        for steps in action_steps:
            rows.append(time_call(f"chunk, {steps} action steps", lambda s=steps: policy.act(
                obs, num_steps=s, seed=0), runs, device))
        if candidates > 1:
            rows.append(time_call(f"{candidates} candidates, 5 steps, one batch", lambda: policy.act(
                obs, num_steps=5, seed=0, num_candidates=candidates), runs, device))
            rows.append(time_call(
                f"best-of-{candidates} + {world_model_samples}x{value_samples} world model x value",
                lambda: policy.plan(obs, num_candidates=candidates, world_model_samples=world_model_samples,
                                    value_samples=value_samples, seed=0), max(1, runs // 2), device))
        if future_images:
            rows.append(time_call("chunk, 5 steps + future images", lambda: policy.act(
                obs, num_steps=5, seed=0, return_future_images=True), runs, device))
    return rows


def format_table(rows: list[Timing]) -> str:
    """One line per timing: what, median and min in ms."""
    lines = [f"{'what':48s} {'median_ms':>10s} {'min_ms':>10s} {'runs':>5s}"]
    lines += [f"{r.what:48s} {1000 * r.median_s:10.1f} {1000 * r.min_s:10.1f} {r.runs:5d}" for r in rows]
    return "\n".join(lines)
