"""Image augmentation: random crop of 90 % area + resize back (training), centre crop + resize (test).

Convention: augmentation works on float tensors shaped (..., 3, H, W) (CHW, any leading dims, any
value range); every frame of one call shares the same crop box, as the release applies one set of
augmentation parameters to a whole sample so current and future images stay geometrically aligned.
Camera frames arrive as uint8 (H, W, 3) RGB numpy arrays: `frames_to_tensor` converts them and
`to_model_range` maps [0, 255] to the model's [-1, 1].

The pipeline is the same at training and test time: resize the camera frame to the layout's image
size (`resize_frames`, done as an item's frames are read), then crop 90 % of the area (random while
training, centred at test time) and resize back. `prepare_observation_image` is the test-time path.
The method specifies no colour jitter, so none is applied.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

CROP_AREA_FRACTION = 0.9


def crop_size(height: int, width: int, area_fraction: float = CROP_AREA_FRACTION) -> tuple[int, int]:
    """Crop (h, w) covering `area_fraction` of the image with the image's aspect ratio."""
    if not 0.0 < area_fraction <= 1.0:
        raise ValueError(f"area_fraction={area_fraction}: expected 0 < fraction <= 1")
    side = math.sqrt(area_fraction)
    return max(1, int(round(height * side))), max(1, int(round(width * side)))


def resize_frames(frames: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize uint8 (..., H, W, 3) frames to size_hw (area interpolation when shrinking)."""
    height, width = size_hw
    if frames.shape[-3:-1] == (height, width):
        return frames
    flat = frames.reshape(-1, *frames.shape[-3:])
    interp = cv2.INTER_AREA if flat.shape[1] >= height and flat.shape[2] >= width else cv2.INTER_LINEAR
    out = np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in flat]) if len(flat) else (
        np.zeros((0, height, width, 3), np.uint8))
    return out.reshape(*frames.shape[:-3], height, width, 3)


def frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float32 (..., 3, H, W) in [0, 255]."""
    if frames.dtype != np.uint8 or frames.shape[-1] != 3:
        raise ValueError(f"frames: got {frames.shape} {frames.dtype}, expected (..., H, W, 3) uint8 rgb")
    return torch.from_numpy(np.ascontiguousarray(frames)).movedim(-1, -3).float()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """[0, 255] -> [-1, 1]."""
    return images / 127.5 - 1.0


def _crop_and_resize(images: torch.Tensor, top: int, left: int, crop_hw: tuple[int, int],
                     out_hw: tuple[int, int]) -> torch.Tensor:
    crop_h, crop_w = crop_hw
    cropped = images[..., top:top + crop_h, left:left + crop_w]
    lead = cropped.shape[:-3]
    flat = cropped.reshape(-1, *cropped.shape[-3:])
    resized = F.interpolate(flat, size=out_hw, mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(*lead, *resized.shape[-3:])


def random_crop_resize(images: torch.Tensor, out_hw: tuple[int, int] | None = None,
                       generator: torch.Generator | None = None,
                       area_fraction: float = CROP_AREA_FRACTION) -> torch.Tensor:
    """Training augmentation: one random crop of `area_fraction` of the area for all frames, resized to out_hw."""
    height, width = images.shape[-2:]
    out_hw = out_hw or (height, width)
    crop_hw = crop_size(height, width, area_fraction)
    top = int(torch.randint(0, height - crop_hw[0] + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_hw[1] + 1, (1,), generator=generator))
    return _crop_and_resize(images, top, left, crop_hw, out_hw)


def center_crop_resize(images: torch.Tensor, out_hw: tuple[int, int] | None = None,
                       area_fraction: float = CROP_AREA_FRACTION) -> torch.Tensor:
    """Test-time counterpart: the centred crop of `area_fraction` of the area, resized to out_hw."""
    height, width = images.shape[-2:]
    out_hw = out_hw or (height, width)
    crop_hw = crop_size(height, width, area_fraction)
    return _crop_and_resize(images, (height - crop_hw[0]) // 2, (width - crop_hw[1]) // 2, crop_hw, out_hw)


def prepare_observation_image(frame: np.ndarray, image_hw: tuple[int, int],
                              area_fraction: float = CROP_AREA_FRACTION) -> torch.Tensor:
    """Camera frame uint8 (H, W, 3) -> float32 (3, h, w) in [-1, 1], as training saw it (centre crop)."""
    resized = resize_frames(frame, image_hw)
    return to_model_range(center_crop_resize(frames_to_tensor(resized), image_hw, area_fraction))
