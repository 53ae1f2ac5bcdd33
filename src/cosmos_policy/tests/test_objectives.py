"""Per-sample clean masks for the policy / world-model / value objectives (the method's table)."""

from __future__ import annotations

import pytest
import torch

from cosmos_policy.config import load_layout
from cosmos_policy.objectives import POLICY, VALUE, WORLD_MODEL, clean_mask_for, clean_masks


def test_aloha_masks_follow_the_method_table():
    layout = load_layout("aloha")
    clean, target = True, False
    assert clean_mask_for(layout, POLICY).tolist() == [clean] * 5 + [target] * 6
    assert clean_mask_for(layout, WORLD_MODEL).tolist() == [clean] * 6 + [target] * 5
    assert clean_mask_for(layout, VALUE).tolist() == [clean] * 10 + [target]


def test_libero_masks_have_nine_frames():
    layout = load_layout("libero")
    assert clean_mask_for(layout, POLICY).tolist() == [True] * 4 + [False] * 5
    assert clean_mask_for(layout, VALUE).tolist() == [True] * 8 + [False]


def test_batch_masks_are_per_sample():
    layout = load_layout("robocasa")
    masks = clean_masks(layout, torch.tensor([2, 0, 1, 0]))
    assert masks.shape == (4, 11)
    assert torch.equal(masks[1], clean_mask_for(layout, POLICY))
    assert torch.equal(masks[0], clean_mask_for(layout, VALUE))
    assert torch.equal(masks[2], clean_mask_for(layout, WORLD_MODEL))


def test_unknown_objective_raises():
    with pytest.raises(ValueError, match=r"objective ids \[3\]"):
        clean_masks(load_layout("aloha"), torch.tensor([0, 3]))
