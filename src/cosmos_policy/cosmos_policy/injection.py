"""Latent frame injection: tile a normalised vector over a whole latent frame, and read it back."""

from __future__ import annotations

import torch


def tile_to_frame(vector: torch.Tensor, frame_shape: tuple[int, int, int]) -> torch.Tensor:
    """(B, n) -> (B, C, H, W): the vector repeated until it fills the frame (last copy truncated)."""
    b, n = vector.shape
    numel = frame_shape[0] * frame_shape[1] * frame_shape[2]
    if n > numel:
        raise ValueError(
            f"injected vector of {n} values does not fit one latent frame of {numel} values "
            f"({frame_shape[0]}x{frame_shape[1]}x{frame_shape[2]}); use a larger image or a smaller chunk"
        )
    copies = -(-numel // n)
    return vector.repeat(1, copies)[:, :numel].reshape(b, *frame_shape)


def inject(latents: torch.Tensor, frame: int, vector: torch.Tensor) -> torch.Tensor:
    """Return latents (B, C, T, H, W) with latent frame `frame` overwritten by the tiled vector (B, n)."""
    out = latents.clone()
    out[:, :, frame] = tile_to_frame(vector.to(latents.dtype), tuple(latents.shape[1:2] + latents.shape[3:]))
    return out


def extract(latents: torch.Tensor, frame: int, length: int) -> torch.Tensor:
    """Read a vector of `length` back from latent frame `frame`: the mean of its whole copies, (B, length)."""
    flat = latents[:, :, frame].reshape(latents.shape[0], -1)
    copies = flat.shape[1] // length
    if copies < 1:
        raise ValueError(f"vector of {length} values does not fit one latent frame of {flat.shape[1]} values")
    # Averaged in float64 so identical copies give back exactly the injected float32 values.
    whole = flat[:, : copies * length].reshape(latents.shape[0], copies, length)
    return whole.double().mean(dim=1).to(latents.dtype)


def inject_value(latents: torch.Tensor, frame: int, value: torch.Tensor) -> torch.Tensor:
    """Overwrite latent frame `frame` with the scalar value (B,) in [-1, 1] everywhere."""
    return inject(latents, frame, value.reshape(-1, 1))


def extract_value(latents: torch.Tensor, frame: int) -> torch.Tensor:
    """Value in [-1, 1] units: the mean over the whole frame, (B,)."""
    return latents[:, :, frame].reshape(latents.shape[0], -1).double().mean(dim=1).to(latents.dtype)


def value_to_unit(value: torch.Tensor) -> torch.Tensor:
    """Map a value in [-1, 1] to [0, 1]: (v + 1) / 2, clipped."""
    return ((value + 1.0) / 2.0).clamp(0.0, 1.0)


def unit_to_value(value01: torch.Tensor) -> torch.Tensor:
    """Inverse of `value_to_unit` for values already in [0, 1]."""
    return value01 * 2.0 - 1.0
