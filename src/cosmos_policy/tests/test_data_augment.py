import numpy as np
import torch

from cosmos_policy.data.augment import (
    center_crop_resize,
    crop_size,
    frames_to_tensor,
    prepare_observation_image,
    random_crop_resize,
    resize_frames,
)


def test_crop_size_covers_ninety_percent_of_the_area():
    h, w = crop_size(224, 224)
    assert abs(h * w / 224 ** 2 - 0.9) < 0.01 and h == w
    h, w = crop_size(480, 640)
    assert abs(h * w / (480 * 640) - 0.9) < 0.01 and abs(w / h - 640 / 480) < 0.01


def test_random_crop_is_deterministic_given_a_generator_and_shared_across_frames():
    images = torch.rand(2, 3, 3, 40, 40)
    a = random_crop_resize(images, (32, 32), generator=torch.Generator().manual_seed(3))
    b = random_crop_resize(images, (32, 32), generator=torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 3, 32, 32)
    assert torch.equal(a, b)
    outs = {random_crop_resize(images, generator=torch.Generator().manual_seed(s)).sum().item() for s in range(8)}
    assert len(outs) > 1
    # identical input frames get the identical crop
    same = images[:1].expand(2, 3, 3, 40, 40)
    c = random_crop_resize(same, generator=torch.Generator().manual_seed(5))
    assert torch.equal(c[0], c[1])


def test_center_crop_geometry():
    # a coordinate image: value = column index; the centre crop of 90 % area keeps the middle columns
    width = 100
    img = torch.arange(width, dtype=torch.float32).expand(1, 3, width, width).clone()
    crop_h, crop_w = crop_size(width, width)
    out = center_crop_resize(img, (crop_h, crop_w))
    left = (width - crop_w) // 2
    torch.testing.assert_close(out[0, 0, 0], torch.arange(left, left + crop_w, dtype=torch.float32))
    # resized back to full size, the centre column keeps the centre value (symmetric crop)
    full = center_crop_resize(img, (width, width))
    assert abs(full[0, 0, 0, width // 2].item() - width / 2) < 1.0
    assert full[0, 0, 0, 0].item() >= left - 0.5 and full[0, 0, 0, -1].item() <= left + crop_w - 0.5


def test_prepare_observation_image_range_and_shape():
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = prepare_observation_image(frame, (32, 32))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert resize_frames(frame[None], (32, 32)).shape == (1, 32, 32, 3)
    assert frames_to_tensor(frame).shape == (3, 48, 64)
