"""The latent sequence: pixel frames (1 + 4k), one-pass causal VAE encode, normalisation, injection."""

from __future__ import annotations

import torch
from torch import nn

from .config import VAE_FRAME_MODES, LayoutConfig
from .injection import extract, inject, inject_value
from .networks import decode_normalised, encode_normalised
from .objectives import POLICY, clean_mask_for

# Pixel value of the blank first frame and of placeholders for injected slots: a black image
# (uint8 0 -> -1 in [-1, 1]); injected placeholders are overwritten after encoding anyway.
BLANK_PIXEL = -1.0


def prefix_slots(layout: LayoutConfig) -> int:
    """Number of leading latent frames that are clean for the policy (all that inference must encode)."""
    clean = clean_mask_for(layout, POLICY).tolist()
    if False in clean:
        first_target = clean.index(False)
        if any(clean[first_target:]):
            raise ValueError(f"layout {layout.name}: policy clean frames must form a prefix, got {clean}")
        return first_target
    return len(clean)


def build_pixel_frames(
    layout: LayoutConfig,
    images: torch.Tensor,
    future_images: torch.Tensor | None = None,
    num_slots: int | None = None,
) -> torch.Tensor:
    """Pixel video (B, 3, 1 + 4(n-1), H, W) for the first `num_slots` slots (default: all).

    images / future_images: (B, n_cams, 3, H, W) in [-1, 1], cameras in layout order. Each slot after the
    blank first frame is 4 identical pixel frames; future-image placeholders copy the current images
    when `future_images` is None.
    """
    frames = slot_frames(layout, images, future_images, num_slots)
    b, _, h, w = frames[0].shape
    video = [frames[0][:, :, None]] + [f[:, :, None].expand(b, 3, 4, h, w) for f in frames[1:]]
    return torch.cat(video, dim=2)


def slot_frames(
    layout: LayoutConfig,
    images: torch.Tensor,
    future_images: torch.Tensor | None = None,
    num_slots: int | None = None,
) -> list[torch.Tensor]:
    """One pixel frame (B, 3, H, W) per slot of the first `num_slots`: its camera's image, or blank."""
    n = layout.num_latent_frames if num_slots is None else num_slots
    b, n_cams, c, h, w = images.shape
    if n_cams != len(layout.cameras) or c != 3:
        raise ValueError(
            f"images: got shape {tuple(images.shape)}, expected (B, {len(layout.cameras)}, 3, H, W) "
            f"for cameras {list(layout.cameras)}"
        )
    if future_images is None:
        future_images = images
    elif future_images.shape != images.shape:
        raise ValueError(f"future_images: got {tuple(future_images.shape)}, expected {tuple(images.shape)}")
    blank = torch.full((b, 3, h, w), BLANK_PIXEL, dtype=images.dtype, device=images.device)
    frames = []
    for slot in layout.slots[:n]:
        if slot.kind == "image":
            frame = images[:, layout.cameras.index(slot.camera)]
        elif slot.kind == "future_image":
            frame = future_images[:, layout.cameras.index(slot.camera)]
        else:
            frame = blank
        frames.append(frame)
    return frames


def inject_vectors(
    layout: LayoutConfig,
    latents: torch.Tensor,
    proprio: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
    future_proprio: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
) -> torch.Tensor:
    """Overwrite the injected slots present in `latents` (B, C, T, h, w) with the given normalised vectors."""
    t = latents.shape[2]
    for kind, vec in (("proprio", proprio), ("action", actions), ("future_proprio", future_proprio)):
        idx = layout.index(kind)
        if vec is None or idx >= t:
            continue
        flat = vec.reshape(vec.shape[0], -1)
        if flat.shape[1] != layout.vector_length(kind):
            raise ValueError(
                f"{kind}: got {flat.shape[1]} values per sample, expected {layout.vector_length(kind)} "
                f"for layout {layout.name}"
            )
        latents = inject(latents, idx, flat)
    idx = layout.index("value")
    if value is not None and idx < t:
        latents = inject_value(latents, idx, value.reshape(-1))
    return latents


def future_state_as_current(
    layout: LayoutConfig, latents: torch.Tensor, proprio: torch.Tensor | None = None
) -> torch.Tensor:
    """A new observation prefix from a predicted future state (depth search: re-plan from s').

    latents: (B, C, T, h, w) after a world-model pass. Returns (B, C, T, h, w) whose current image slots
    hold the predicted future-image latents of the same cameras, whose proprio slot holds `proprio`
    (normalised (B, d); default: the predicted future proprio read back from its slot and clipped to
    [-1, 1]), and whose frames after the policy prefix are zero (they are generated anew).
    """
    out = torch.zeros_like(latents)
    p = prefix_slots(layout)
    out[:, :, :p] = latents[:, :, :p]
    for cam in layout.cameras:
        out[:, :, layout.index("image", cam)] = latents[:, :, layout.index("future_image", cam)]
    if proprio is None:
        proprio = extract(latents, layout.index("future_proprio"), layout.proprio_dim).clamp(-1.0, 1.0)
    return inject_vectors(layout, out, proprio=proprio)


@torch.no_grad()
def encode_sequence(
    vae: nn.Module,
    layout: LayoutConfig,
    images: torch.Tensor,
    future_images: torch.Tensor | None = None,
    *,
    proprio: torch.Tensor | None = None,
    actions: torch.Tensor | None = None,
    future_proprio: torch.Tensor | None = None,
    value: torch.Tensor | None = None,
    num_slots: int | None = None,
    vae_frames: str = "video",
) -> torch.Tensor:
    """Normalised latents (B, 16, n, h, w) of the first `num_slots` slots, injected vectors written in.

    "video" (the release): the whole pixel sequence goes through the causal VAE in one pass, so a latent
    depends on all earlier pixel frames. "per_frame": each slot is its own one-frame video, batched, as
    `pretrain-vae` trains the CPU presets' VAEs (config.VAE_FRAME_MODES).
    """
    if vae_frames == "video":
        latents = encode_normalised(vae, build_pixel_frames(layout, images, future_images, num_slots)).float()
    elif vae_frames == "per_frame":
        frames = torch.stack(slot_frames(layout, images, future_images, num_slots), dim=1)  # (B, n, 3, H, W)
        b, n = frames.shape[:2]
        latents = encode_normalised(vae, frames.flatten(0, 1)[:, :, None]).float()  # (B n, 16, 1, h, w)
        latents = latents[:, :, 0].unflatten(0, (b, n)).transpose(1, 2)
    else:
        raise ValueError(f"vae_frames={vae_frames!r}: expected one of {VAE_FRAME_MODES}")
    return inject_vectors(layout, latents, proprio, actions, future_proprio, value)


def decode_slots(vae: nn.Module, latents: torch.Tensor, vae_frames: str = "video") -> torch.Tensor:
    """One pixel frame per latent frame: (B, 3, T, H, W) in about [-1, 1] from normalised latents (B, 16, T, h, w).

    "video": the sequence decoded in one pass (1 + 4(T-1) frames), each slot's last pixel frame kept;
    "per_frame": each latent frame decoded alone."""
    if vae_frames == "video":
        pixels = decode_normalised(vae, latents)
        return pixels[:, :, [0] + [4 * k for k in range(1, latents.shape[2])]]
    if vae_frames == "per_frame":
        b, _, t = latents.shape[:3]
        pixels = decode_normalised(vae, latents.transpose(1, 2).flatten(0, 1)[:, :, None])  # (B T, 3, 1, H, W)
        return pixels[:, :, 0].unflatten(0, (b, t)).transpose(1, 2)
    raise ValueError(f"vae_frames={vae_frames!r}: expected one of {VAE_FRAME_MODES}")
