"""Image augmentation as the release: one random draw per sample, applied to every frame of it.

Convention: augmentation works on float tensors shaped (..., 3, H, W) (CHW, any leading dims) in
[0, 255]; every frame of one call shares one set of parameters (crop box, rotation, colour jitter), as
the release applies one draw to a whole sample so current and future images of all cameras stay
geometrically and photometrically consistent. Camera frames arrive as uint8 (H, W, 3) RGB numpy
arrays: `frames_to_tensor` converts them and `to_model_range` maps [0, 255] to the model's [-1, 1].

Training (`augment_images`): random crop of 90 % of the area (square images give a square crop)
resized back, then, in the "stronger" variant the released ALOHA / LIBERO / RoboCasa runs use, a
rotation by U[-5, 5] degrees about the centre (corners filled black, as torchvision's fill=0), then
colour jitter in a random order (as torchvision's ColorJitter): brightness x U[0.7, 1.3], contrast
x U[0.6, 1.4], saturation x U[0.5, 1.5], hue + U[-0.05, 0.05]. The "weaker" variant: no rotation,
brightness / contrast / saturation x U[0.8, 1.2], hue +-0.05. Crop and rotation are one bilinear
resampling (`grid_sample`), so the image is interpolated once. Plain torch: no torchvision.

Test time (`prepare_observation_image`): resize the camera frame to the layout's image size, then the
centred 90 % crop resized back, no rotation or jitter.

A layout may name a region of interest per camera (`LayoutConfig.camera_crops`, not in the release):
`crop_region` cuts it out of the camera frame before anything else, in training and at inference alike.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

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


def crop_region(frames: np.ndarray, box: tuple[float, float, float, float] | None) -> np.ndarray:
    """The region of interest `box` = (top, left, height, width), fractions of the frame, of uint8
    (..., H, W, 3) frames; None keeps the whole frame. Pixel edges are rounded, at least one pixel kept."""
    if box is None:
        return frames
    height, width = frames.shape[-3:-1]
    top, left, box_h, box_w = box
    row0, col0 = int(round(top * height)), int(round(left * width))
    row1 = min(height, max(row0 + 1, int(round((top + box_h) * height))))
    col1 = min(width, max(col0 + 1, int(round((left + box_w) * width))))
    return frames[..., row0:row1, col0:col1, :]


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


def camera_view(frames: np.ndarray, region: tuple[float, float, float, float] | None,
                size_hw: tuple[int, int]) -> np.ndarray:
    """What the model sees of a camera before augmentation: its region of interest, resized to size_hw."""
    return resize_frames(crop_region(frames, region), size_hw)


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
                              area_fraction: float = CROP_AREA_FRACTION,
                              region: tuple[float, float, float, float] | None = None) -> torch.Tensor:
    """Camera frame uint8 (H, W, 3) -> float32 (3, h, w) in [-1, 1], as training saw it (its region of
    interest, if any, then the centre crop)."""
    resized = camera_view(frame, region, image_hw)
    return to_model_range(center_crop_resize(frames_to_tensor(resized), image_hw, area_fraction))


@dataclass(frozen=True)
class JitterRanges:
    """Rotation (degrees, symmetric) and colour-jitter ranges of one augmentation variant."""

    rotation_deg: float
    brightness: tuple[float, float]
    contrast: tuple[float, float]
    saturation: tuple[float, float]
    hue: float


AUGMENT_VARIANTS = {
    "stronger": JitterRanges(5.0, (0.7, 1.3), (0.6, 1.4), (0.5, 1.5), 0.05),
    "weaker": JitterRanges(0.0, (0.8, 1.2), (0.8, 1.2), (0.8, 1.2), 0.05),
}
DEFAULT_AUGMENT_VARIANT = "stronger"


@dataclass(frozen=True)
class AugmentDraw:
    """One sample's augmentation: crop box (pixels of the input), rotation, jitter factors and order."""

    top: int
    left: int
    crop_h: int
    crop_w: int
    angle_deg: float
    brightness: float
    contrast: float
    saturation: float
    hue: float
    order: tuple[int, ...]  # permutation of (0 brightness, 1 contrast, 2 saturation, 3 hue)


def _uniform(generator: torch.Generator | None, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=generator))


def draw_augmentation(height: int, width: int, generator: torch.Generator | None = None,
                      variant: str = DEFAULT_AUGMENT_VARIANT,
                      area_fraction: float = CROP_AREA_FRACTION) -> AugmentDraw:
    """One random draw of the augmentation parameters for (height, width) frames."""
    if variant not in AUGMENT_VARIANTS:
        raise ValueError(f"augmentation variant {variant!r}: expected one of {sorted(AUGMENT_VARIANTS)}")
    ranges = AUGMENT_VARIANTS[variant]
    crop_h, crop_w = crop_size(height, width, area_fraction)
    top = int(torch.randint(0, height - crop_h + 1, (1,), generator=generator))
    left = int(torch.randint(0, width - crop_w + 1, (1,), generator=generator))
    angle = _uniform(generator, -ranges.rotation_deg, ranges.rotation_deg) if ranges.rotation_deg > 0 else 0.0
    brightness = _uniform(generator, *ranges.brightness)
    contrast = _uniform(generator, *ranges.contrast)
    saturation = _uniform(generator, *ranges.saturation)
    hue = _uniform(generator, -ranges.hue, ranges.hue)
    order = tuple(int(i) for i in torch.randperm(4, generator=generator))
    return AugmentDraw(top, left, crop_h, crop_w, angle, brightness, contrast, saturation, hue, order)


def crop_rotate_resize(images: torch.Tensor, draw: AugmentDraw, out_hw: tuple[int, int]) -> torch.Tensor:
    """Crop the draw's box, resize to out_hw and rotate by its angle about the centre (one resampling).

    Without rotation this is the plain crop + resize of `center_crop_resize` / `random_crop_resize`.
    """
    if draw.angle_deg == 0.0:
        return _crop_and_resize(images, draw.top, draw.left, (draw.crop_h, draw.crop_w), out_hw)
    height, width = images.shape[-2:]
    out_h, out_w = out_hw
    lead = images.shape[:-3]
    flat = images.reshape(-1, *images.shape[-3:])
    # output pixel centres in the output image, relative to its centre (pixels of the resized crop)
    ys = torch.arange(out_h, dtype=torch.float32) + 0.5 - out_h / 2
    xs = torch.arange(out_w, dtype=torch.float32) + 0.5 - out_w / 2
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    # a counter-clockwise rotation of the picture by `angle` samples the unrotated picture at R(-angle) p
    theta = math.radians(draw.angle_deg)
    cos, sin = math.cos(theta), math.sin(theta)
    # image coordinates have y pointing down: rotating the content counter-clockwise on screen
    ux = cos * gx - sin * gy
    uy = sin * gx + cos * gy
    # resized-crop pixels -> input pixels, then to grid_sample's [-1, 1] (align_corners=False)
    sx = draw.left + draw.crop_w / 2 + ux * (draw.crop_w / out_w)
    sy = draw.top + draw.crop_h / 2 + uy * (draw.crop_h / out_h)
    grid = torch.stack([sx / width * 2 - 1, sy / height * 2 - 1], dim=-1)
    grid = grid.to(flat.dtype)[None].expand(flat.shape[0], out_h, out_w, 2)
    out = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(*lead, *out.shape[-3:])


_GRAY = (0.299, 0.587, 0.114)


def _grayscale(img: torch.Tensor) -> torch.Tensor:
    return (img[..., 0, :, :] * _GRAY[0] + img[..., 1, :, :] * _GRAY[1] + img[..., 2, :, :] * _GRAY[2])[..., None, :, :]


def rgb_to_hsv(img: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> HSV in [0, 1] (hue as a fraction of a turn)."""
    r, g, b = img.unbind(-3)
    maxc, _ = img.max(dim=-3)
    minc, _ = img.min(dim=-3)
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    s = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([h, s, maxc], dim=-3)


def hsv_to_rgb(img: torch.Tensor) -> torch.Tensor:
    """Inverse of `rgb_to_hsv`."""
    h, s, v = img.unbind(-3)
    h6 = (h % 1.0) * 6.0
    sector = torch.floor(h6)
    f = h6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    sector = sector.long() % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    out = [torch.zeros_like(v) for _ in range(3)]
    for k, (rr, gg, bb) in enumerate(choices):
        pick = sector == k
        out = [torch.where(pick, new, old) for new, old in zip((rr, gg, bb), out)]
    return torch.stack(out, dim=-3)


def color_jitter(images: torch.Tensor, draw: AugmentDraw) -> torch.Tensor:
    """Brightness, contrast, saturation and hue of the draw in its order; (..., 3, H, W) in [0, 255].

    Contrast blends with the mean grey level of each frame (as torchvision does per image).
    """
    img = (images / 255.0).clamp(0.0, 1.0)
    for op in draw.order:
        if op == 0:
            img = (img * draw.brightness).clamp(0.0, 1.0)
        elif op == 1:
            mean = _grayscale(img).mean(dim=(-3, -2, -1), keepdim=True)
            img = (img * draw.contrast + mean * (1.0 - draw.contrast)).clamp(0.0, 1.0)
        elif op == 2:
            img = (img * draw.saturation + _grayscale(img) * (1.0 - draw.saturation)).clamp(0.0, 1.0)
        elif draw.hue != 0.0:
            hsv = rgb_to_hsv(img)
            hsv = torch.stack([(hsv[..., 0, :, :] + draw.hue) % 1.0, hsv[..., 1, :, :], hsv[..., 2, :, :]], dim=-3)
            img = hsv_to_rgb(hsv).clamp(0.0, 1.0)
    return img * 255.0


def augment_images(images: torch.Tensor, out_hw: tuple[int, int] | None = None,
                   generator: torch.Generator | None = None, variant: str = DEFAULT_AUGMENT_VARIANT,
                   draw: AugmentDraw | None = None) -> torch.Tensor:
    """Training augmentation of one sample's frames (..., 3, H, W) in [0, 255]: one draw for all frames."""
    height, width = images.shape[-2:]
    out_hw = out_hw or (height, width)
    if draw is None:
        draw = draw_augmentation(height, width, generator, variant)
    return color_jitter(crop_rotate_resize(images, draw, out_hw), draw)
