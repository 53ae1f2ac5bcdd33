"""Dataset statistics for actions and proprio, and min/max normalisation to [-1, 1].

The JSON file is a flat dict of lists, keyed like the release's `dataset_statistics.json`:
`actions_min`, `actions_max`, `actions_mean`, `actions_std`, `actions_median`, `actions_q01`,
`actions_q99`, and the same with the `proprio_` prefix, plus `num_steps` / `num_episodes` counts.

Constant dimensions (max == min) cannot be scaled: `normalize` maps them to 0 (the middle of
[-1, 1]) and `unnormalize` maps anything back to that constant, so no division by zero happens and
the injected value carries no spurious signal.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import torch

STAT_NAMES = ("min", "max", "mean", "std", "median", "q01", "q99")
MODALITIES = ("actions", "proprio")
REQUIRED_FOR_NORMALISATION = ("min", "max")
# Ranges below this are treated as constant dimensions.
MIN_RANGE = 1e-8


def compute_statistics(arrays: Mapping[str, Iterable[np.ndarray]]) -> dict[str, list[float] | int]:
    """Per-dimension statistics of each modality, e.g. {"actions": [episode arrays (T, d)], ...}."""
    stats: dict[str, list[float] | int] = {}
    for name, chunks in arrays.items():
        chunks = [np.asarray(c, dtype=np.float64) for c in chunks]
        if not chunks:
            raise ValueError(f"{name}: no episodes given (point --data at a folder of episode files)")
        dims = {c.shape[-1] for c in chunks}
        if len(dims) != 1 or any(c.ndim != 2 for c in chunks):
            shapes = sorted({c.shape for c in chunks})
            raise ValueError(f"{name}: expected (T, d) arrays with one d, got shapes {shapes[:4]}")
        values = np.concatenate(chunks, axis=0)
        stats[f"{name}_min"] = values.min(axis=0).tolist()
        stats[f"{name}_max"] = values.max(axis=0).tolist()
        stats[f"{name}_mean"] = values.mean(axis=0).tolist()
        stats[f"{name}_std"] = values.std(axis=0).tolist()
        stats[f"{name}_median"] = np.median(values, axis=0).tolist()
        stats[f"{name}_q01"] = np.quantile(values, 0.01, axis=0).tolist()
        stats[f"{name}_q99"] = np.quantile(values, 0.99, axis=0).tolist()
        stats["num_steps"] = int(values.shape[0])
        stats["num_episodes"] = len(chunks)
    return stats


def save_statistics(stats: Mapping[str, object], path: str | Path) -> Path:
    """Write statistics as a flat JSON dict of lists (release key style)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    plain = {k: (np.asarray(v).tolist() if not isinstance(v, (int, float, str)) else v) for k, v in stats.items()}
    path.write_text(json.dumps(plain, indent=2, sort_keys=True) + "\n")
    return path


def load_statistics(
    path: str | Path, modalities: Iterable[str] = MODALITIES
) -> dict[str, np.ndarray]:
    """Read a statistics JSON; every key the normaliser needs must be present."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: dataset statistics not found (create it with `cosmos-policy stats --data DIR --out {path}`)"
        )
    raw = json.loads(path.read_text())
    return statistics_from_dict(raw, modalities, source=str(path))


def statistics_from_dict(
    raw: Mapping[str, object], modalities: Iterable[str] = MODALITIES, source: str = "statistics"
) -> dict[str, np.ndarray]:
    """Validate a flat statistics dict and convert its lists to float32 arrays."""
    for modality in modalities:
        for stat in REQUIRED_FOR_NORMALISATION:
            key = f"{modality}_{stat}"
            if key not in raw:
                raise KeyError(
                    f"{source}: missing key '{key}' (expected {modality}_min and {modality}_max lists; "
                    f"regenerate the file with `cosmos-policy stats --data DIR --out FILE`)"
                )
        lo = np.asarray(raw[f"{modality}_min"], dtype=np.float32)
        hi = np.asarray(raw[f"{modality}_max"], dtype=np.float32)
        if lo.shape != hi.shape or lo.ndim != 1:
            raise ValueError(f"{source}: {modality}_min {lo.shape} and {modality}_max {hi.shape} "
                             f"must be equal-length lists")
        if np.any(hi < lo):
            raise ValueError(f"{source}: {modality}_max is below {modality}_min in some dimension")
    out: dict[str, np.ndarray] = {}
    for key, value in raw.items():
        if isinstance(value, list):
            out[key] = np.asarray(value, dtype=np.float32)
    return out


def normalize(x, lo, hi):
    """Map x from [lo, hi] to [-1, 1] per dimension; constant dimensions map to 0. numpy or torch."""
    if isinstance(x, torch.Tensor):
        lo = torch.as_tensor(lo, dtype=x.dtype, device=x.device)
        hi = torch.as_tensor(hi, dtype=x.dtype, device=x.device)
        span = hi - lo
        valid = span > MIN_RANGE
        scaled = 2.0 * (x - lo) / torch.where(valid, span, torch.ones_like(span)) - 1.0
        return torch.where(valid, scaled, torch.zeros_like(scaled))
    x = np.asarray(x, dtype=np.float32)
    lo = np.asarray(lo, dtype=np.float32)
    hi = np.asarray(hi, dtype=np.float32)
    span = hi - lo
    valid = span > MIN_RANGE
    scaled = 2.0 * (x - lo) / np.where(valid, span, 1.0) - 1.0
    return np.where(valid, scaled, 0.0).astype(np.float32)


def unnormalize(y, lo, hi, clip: bool = True):
    """Inverse of `normalize`; with clip, y is first clipped to [-1, 1] (predictions can overshoot)."""
    if isinstance(y, torch.Tensor):
        lo = torch.as_tensor(lo, dtype=y.dtype, device=y.device)
        hi = torch.as_tensor(hi, dtype=y.dtype, device=y.device)
        if clip:
            y = y.clamp(-1.0, 1.0)
        return (y + 1.0) * 0.5 * (hi - lo) + lo
    y = np.asarray(y, dtype=np.float32)
    lo = np.asarray(lo, dtype=np.float32)
    hi = np.asarray(hi, dtype=np.float32)
    if clip:
        y = np.clip(y, -1.0, 1.0)
    return ((y + 1.0) * 0.5 * (hi - lo) + lo).astype(np.float32)


class Normalizer:
    """Normalise / un-normalise one modality with the min/max of loaded statistics."""

    def __init__(self, stats: Mapping[str, np.ndarray], modality: str):
        self.modality = modality
        self.lo = np.asarray(stats[f"{modality}_min"], dtype=np.float32)
        self.hi = np.asarray(stats[f"{modality}_max"], dtype=np.float32)

    @property
    def dim(self) -> int:
        return int(self.lo.shape[0])

    def normalize(self, x):
        return normalize(x, self.lo, self.hi)

    def unnormalize(self, y, clip: bool = True):
        return unnormalize(y, self.lo, self.hi, clip=clip)
