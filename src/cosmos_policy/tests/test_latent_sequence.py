"""Pixel-frame sequence (1 + 4k), one-pass causal encode, prefix-only encode, injected slots."""

from __future__ import annotations

import pytest
import torch

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.injection import extract, extract_value
from cosmos_policy.latent_sequence import BLANK_PIXEL, build_pixel_frames, encode_sequence, prefix_slots
from cosmos_policy.networks import build_vae, encode_normalised, latent_stats


def _images(b, n_cams, s=64, seed=0):
    return torch.rand(b, n_cams, 3, s, s, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_pixel_frames_layout():
    layout = load_layout("aloha")
    images, future = _images(2, 3), _images(2, 3, seed=1)
    video = build_pixel_frames(layout, images, future)
    assert video.shape == (2, 3, 41, 64, 64)
    assert torch.all(video[:, :, 0] == BLANK_PIXEL)
    for k, slot in enumerate(layout.slots[1:], start=1):
        frames = video[:, :, 1 + 4 * (k - 1): 1 + 4 * k]
        assert torch.equal(frames, frames[:, :, :1].expand_as(frames)), slot.name
    left = layout.cameras.index("cam_left_wrist")
    assert torch.equal(video[:, :, 1 + 4 * 1], images[:, left])
    assert torch.equal(video[:, :, 1 + 4 * 6], future[:, left])
    placeholder = build_pixel_frames(layout, images)
    assert torch.equal(placeholder[:, :, 1 + 4 * 7], images[:, layout.cameras.index("cam_right_wrist")])


def test_prefix_is_the_policy_clean_frames():
    assert prefix_slots(load_layout("aloha")) == 5
    assert prefix_slots(load_layout("libero")) == 4
    layout = load_layout("aloha")
    assert build_pixel_frames(layout, _images(1, 3), num_slots=5).shape[2] == 17


def test_wrong_camera_count_names_the_problem():
    with pytest.raises(ValueError, match="expected \\(B, 3, 3, H, W\\)"):
        build_pixel_frames(load_layout("aloha"), _images(1, 2))


def test_one_pass_encode_prefix_matches_full_and_slots_are_causal():
    torch.manual_seed(0)
    vae = build_vae(NetworkConfig.preset_config("tiny")).eval()
    layout = load_layout("aloha")
    images, future = _images(1, 3), _images(1, 3, seed=1)
    proprio, actions = torch.rand(1, 14) * 2 - 1, torch.rand(1, 50, 14) * 2 - 1
    full = encode_sequence(vae, layout, images, future, proprio=proprio, actions=actions,
                           future_proprio=proprio, value=torch.tensor([0.3]))
    prefix = encode_sequence(vae, layout, images, proprio=proprio, num_slots=5)
    assert full.shape == (1, 16, 11, 8, 8) and prefix.shape == (1, 16, 5, 8, 8)
    assert torch.allclose(prefix, full[:, :, :5], atol=1e-5)
    assert torch.equal(extract(full, layout.index("action"), 700), actions.reshape(1, -1))
    assert torch.equal(extract(prefix, layout.index("proprio"), 14), proprio)
    assert torch.allclose(extract_value(full, layout.index("value")), torch.tensor([0.3]))
    # Encoding the primary image on its own gives a different latent: the encoder is causal.
    alone = encode_normalised(vae, images[:, 2, :, None])
    assert not torch.allclose(alone[:, :, 0], full[:, :, layout.index("image", "cam_high")], atol=1e-3)
    mean, std = latent_stats(vae, full.device, full.dtype)
    assert mean.shape == std.shape == (1, 16, 1, 1, 1)
