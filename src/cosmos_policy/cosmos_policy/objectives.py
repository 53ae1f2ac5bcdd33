"""Training objectives as per-sample, per-latent-frame clean masks."""

from __future__ import annotations

import torch

from .config import LayoutConfig

POLICY = 0
WORLD_MODEL = 1
VALUE = 2
OBJECTIVE_NAMES = {POLICY: "policy", WORLD_MODEL: "world_model", VALUE: "value"}

# Slot kinds generated (noised, denoised, in the loss) by each objective; every other slot is clean.
TARGET_KINDS: dict[int, frozenset[str]] = {
    POLICY: frozenset({"action", "future_proprio", "future_image", "value"}),
    WORLD_MODEL: frozenset({"future_proprio", "future_image", "value"}),
    VALUE: frozenset({"value"}),
}


def clean_mask_for(layout: LayoutConfig, objective: int) -> torch.Tensor:
    """bool (T,): True where the latent frame is clean (ground truth) under `objective`."""
    if objective not in TARGET_KINDS:
        raise ValueError(f"objective {objective}: unknown, expected one of {OBJECTIVE_NAMES}")
    targets = TARGET_KINDS[objective]
    return torch.tensor([slot.kind not in targets for slot in layout.slots], dtype=torch.bool)


def clean_masks(layout: LayoutConfig, objectives: torch.Tensor) -> torch.Tensor:
    """bool (B, T) clean masks for a batch of objective ids (B,) (0 policy, 1 world model, 2 value)."""
    table = torch.stack([clean_mask_for(layout, k) for k in sorted(TARGET_KINDS)])
    objectives = objectives.long()
    bad = objectives[(objectives < 0) | (objectives >= len(table))]
    if bad.numel():
        raise ValueError(f"objective ids {bad.tolist()}: unknown, expected 0 policy, 1 world model, 2 value")
    return table.to(objectives.device)[objectives]
