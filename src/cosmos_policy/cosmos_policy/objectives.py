"""Training objectives as per-sample, per-latent-frame clean masks and loss (target) masks.

Value conditioning: the base run's value objective is V(s, a, s') (every frame but the value is clean
conditioning). The release's planning model predicts V(s'): the current-state frames (proprio, current
images) and the action frame are masked out of the value pass, i.e. they enter as noise like a target
(not as ground truth) in training and at inference, so only the future state s' conditions the value; the
loss still covers the value frame only.
"""

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

# How the value objective is conditioned: "state_action_next_state" = V(s, a, s') (the base run's);
# "next_state" = V(s') (the release's planning model: current state and action frames masked out).
STATE_ACTION_NEXT_STATE = "state_action_next_state"
NEXT_STATE = "next_state"
VALUE_CONDITIONINGS = (STATE_ACTION_NEXT_STATE, NEXT_STATE)
# Slot kinds masked out of the value pass (fed as noise, not as ground truth) under V(s').
NEXT_STATE_MASKED_KINDS = frozenset({"proprio", "image", "action"})


def check_value_conditioning(value_conditioning: str) -> str:
    if value_conditioning not in VALUE_CONDITIONINGS:
        raise ValueError(f"value_conditioning={value_conditioning!r}: expected one of {list(VALUE_CONDITIONINGS)}")
    return value_conditioning


def masked_kinds(objective: int, value_conditioning: str = STATE_ACTION_NEXT_STATE) -> frozenset[str]:
    """Slot kinds that are neither clean nor in the loss under `objective` (noised inputs only)."""
    check_value_conditioning(value_conditioning)
    if objective == VALUE and value_conditioning == NEXT_STATE:
        return NEXT_STATE_MASKED_KINDS
    return frozenset()


def clean_mask_for(layout: LayoutConfig, objective: int, value_conditioning: str = STATE_ACTION_NEXT_STATE) -> torch.Tensor:
    """bool (T,): True where the latent frame is clean (ground truth, condition) under `objective`."""
    if objective not in TARGET_KINDS:
        raise ValueError(f"objective {objective}: unknown, expected one of {OBJECTIVE_NAMES}")
    noised = TARGET_KINDS[objective] | masked_kinds(objective, value_conditioning)
    return torch.tensor([slot.kind not in noised for slot in layout.slots], dtype=torch.bool)


def loss_mask_for(layout: LayoutConfig, objective: int, value_conditioning: str = STATE_ACTION_NEXT_STATE) -> torch.Tensor:
    """bool (T,): True where the latent frame is a target (in the loss) under `objective`.

    Equal to ~clean except for V(s'): the masked current-state/action frames are noised but not targets."""
    if objective not in TARGET_KINDS:
        raise ValueError(f"objective {objective}: unknown, expected one of {OBJECTIVE_NAMES}")
    check_value_conditioning(value_conditioning)
    targets = TARGET_KINDS[objective]
    return torch.tensor([slot.kind in targets for slot in layout.slots], dtype=torch.bool)


def _per_sample(layout: LayoutConfig, objectives: torch.Tensor, builder, value_conditioning: str) -> torch.Tensor:
    table = torch.stack([builder(layout, k, value_conditioning) for k in sorted(TARGET_KINDS)])
    objectives = objectives.long()
    bad = objectives[(objectives < 0) | (objectives >= len(table))]
    if bad.numel():
        raise ValueError(f"objective ids {bad.tolist()}: unknown, expected 0 policy, 1 world model, 2 value")
    return table.to(objectives.device)[objectives]


def clean_masks(
    layout: LayoutConfig, objectives: torch.Tensor, value_conditioning: str = STATE_ACTION_NEXT_STATE
) -> torch.Tensor:
    """bool (B, T) clean masks for a batch of objective ids (B,) (0 policy, 1 world model, 2 value)."""
    return _per_sample(layout, objectives, clean_mask_for, value_conditioning)


def loss_masks(
    layout: LayoutConfig, objectives: torch.Tensor, value_conditioning: str = STATE_ACTION_NEXT_STATE
) -> torch.Tensor:
    """bool (B, T) loss (target) masks for a batch of objective ids (B,)."""
    return _per_sample(layout, objectives, loss_mask_for, value_conditioning)
