"""Latent frame injection: tiling, exact round trip, value mapping, size errors."""

from __future__ import annotations

import pytest
import torch

from cosmos_policy.injection import (
    extract,
    extract_value,
    inject,
    inject_value,
    tile_to_frame,
    unit_to_value,
    value_to_unit,
)


def _latents(b=2, t=11, c=16, s=8, seed=0):
    return torch.randn(b, c, t, s, s, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("length", [700, 112, 14, 9, 1, 1024])
def test_round_trip_is_exact(length):
    latents = _latents()
    vector = torch.rand(2, length, generator=torch.Generator().manual_seed(length)) * 2 - 1
    out = inject(latents, 5, vector)
    assert torch.equal(extract(out, 5, length), vector)


def test_tiling_fills_the_whole_frame_with_copies():
    vector = torch.arange(700, dtype=torch.float32)[None]
    frame = tile_to_frame(vector, (16, 8, 8)).reshape(-1)
    assert frame.numel() == 1024
    assert torch.equal(frame[:700], vector[0])
    assert torch.equal(frame[700:], vector[0, :324])


def test_extract_averages_the_whole_copies():
    latents = _latents(b=1)
    flat = torch.zeros(1024)
    flat[:14] = 1.0
    flat[14:28] = 3.0
    flat[28:42] = 5.0
    latents[0, :, 2] = flat.reshape(16, 8, 8)
    got = extract(latents, 2, 14)
    copies = 1024 // 14
    assert torch.allclose(got, torch.full((1, 14), 9.0 / copies))


def test_inject_touches_only_its_frame():
    latents = _latents()
    out = inject(latents, 6, torch.ones(2, 14))
    changed = (out != latents).flatten(3).any(dim=(0, 1, 3))
    assert changed.tolist() == [i == 6 for i in range(11)]


def test_value_fills_frame_and_maps_to_unit_interval():
    latents = _latents()
    value = torch.tensor([-0.5, 0.8])
    out = inject_value(latents, 10, value)
    assert torch.equal(out[:, :, 10], value[:, None, None, None].expand(2, 16, 8, 8))
    assert torch.allclose(extract_value(out, 10), value)
    assert torch.allclose(value_to_unit(torch.tensor([-1.0, 0.0, 1.0, 3.0, -2.0])), torch.tensor([0.0, 0.5, 1.0, 1.0, 0.0]))
    assert torch.allclose(unit_to_value(value_to_unit(value)), value)


def test_vector_longer_than_a_frame_raises():
    with pytest.raises(ValueError, match="does not fit one latent frame of 1024"):
        inject(_latents(), 5, torch.zeros(2, 1025))
