"""Training as the release does it: augmentation, loss reduction, LR schedule, objective mix, cached latents."""

import dataclasses

import numpy as np
import pytest
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy import diffusion
from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.augment import AugmentDraw, augment_images, color_jitter, crop_rotate_resize, draw_augmentation
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel
from cosmos_policy.train import TrainConfig, Trainer, lr_factor

NETWORK = NetworkConfig.preset_config("tiny")
LAYOUT = dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64))
SPEC = SampleSpec.from_configs(LAYOUT, NETWORK)


def _dataset(tmp_path, count=2, steps=12, rollouts=(), **kwargs):
    paths = write_synthetic_episodes(tmp_path / "demos" / "t", count=count, steps=steps)
    raw = compute_dataset_statistics(paths)
    demos = load_episodes(paths, SPEC, is_demo=True)
    rolls = load_episodes(rollouts, SPEC, is_demo=False)
    cache = build_text_cache({e.task for e in demos + rolls}, SPEC.text_dim, max_length=SPEC.text_max_tokens)
    return EpisodeDataset(demos, SPEC, statistics_from_dict(raw), cache, rollouts=rolls, **kwargs), raw, cache


# --- augmentation -------------------------------------------------------------------------------------------

def test_one_draw_is_shared_by_every_frame_of_a_sample():
    frames = torch.rand(2, 3, 3, 40, 40) * 255  # (current / future, camera, rgb, h, w), all different
    joint = augment_images(frames, (32, 32), generator=torch.Generator().manual_seed(11))
    for step in range(2):
        for cam in range(3):
            alone = augment_images(frames[step, cam], (32, 32), generator=torch.Generator().manual_seed(11))
            torch.testing.assert_close(joint[step, cam], alone)
    other = augment_images(frames, (32, 32), generator=torch.Generator().manual_seed(12))
    assert not torch.allclose(joint, other)


def test_dataset_item_frames_of_the_same_step_stay_identical(tmp_path):
    ds, _, _ = _dataset(tmp_path, count=1, steps=12)
    ds.set_epoch(3)
    item = ds[11]  # the last step: the future frame is the current frame, augmented by the same draw
    torch.testing.assert_close(item["images"], item["future_images"])
    assert not torch.allclose(item["images"], ds._images(ds.demos[0], (11,), 0)[0])


def test_stronger_and_weaker_draw_ranges():
    draws = [draw_augmentation(64, 64, torch.Generator().manual_seed(s)) for s in range(300)]
    angles = np.array([d.angle_deg for d in draws])
    assert angles.min() < -4 and angles.max() > 4 and np.abs(angles).max() <= 5
    for name, lo, hi in (("brightness", 0.7, 1.3), ("contrast", 0.6, 1.4), ("saturation", 0.5, 1.5)):
        values = np.array([getattr(d, name) for d in draws])
        assert values.min() >= lo and values.max() <= hi and values.min() < lo + 0.05 and values.max() > hi - 0.05
    assert max(abs(d.hue) for d in draws) <= 0.05
    assert all(d.crop_h == d.crop_w == 61 for d in draws)  # 90 % of the area of a square image, square
    weaker = [draw_augmentation(64, 64, torch.Generator().manual_seed(s), variant="weaker") for s in range(100)]
    assert all(d.angle_deg == 0.0 and 0.8 <= d.brightness <= 1.2 for d in weaker)


def _identity(**changes):
    base = dict(top=0, left=0, crop_h=64, crop_w=64, angle_deg=0.0, brightness=1.0, contrast=1.0,
                saturation=1.0, hue=0.0, order=(0, 1, 2, 3))
    return AugmentDraw(**{**base, **changes})


def test_colour_jitter_acts_on_the_pixels_as_named():
    red = torch.zeros(3, 4, 4)
    red[0] = 200.0
    # hue + 1/3 of a turn: red becomes green; brightness x 1.2 scales; saturation 0 gives grey
    green = color_jitter(red, _identity(hue=1 / 3))
    torch.testing.assert_close(green[1], torch.full((4, 4), 200.0), atol=1e-3, rtol=0)
    assert float(green[0].abs().max()) < 1e-3
    torch.testing.assert_close(color_jitter(red, _identity(brightness=1.2))[0], torch.full((4, 4), 240.0))
    grey = color_jitter(red, _identity(saturation=0.0))
    torch.testing.assert_close(grey[0], grey[2])
    torch.testing.assert_close(grey[0], torch.full((4, 4), 0.299 * 200.0), atol=1e-3, rtol=0)


def test_rotation_turns_the_picture_about_its_centre():
    # a bright dot right of the centre moves up (counter-clockwise) by the drawn angle; corners go black
    img = torch.zeros(3, 65, 65)
    img[:, 32, 52] = 255.0
    out = crop_rotate_resize(img, _identity(crop_h=65, crop_w=65, angle_deg=90.0), (65, 65))
    peak = divmod(int(out[0].argmax()), 65)
    assert peak == (12, 32)
    full = crop_rotate_resize(torch.full((3, 65, 65), 100.0), _identity(crop_h=65, crop_w=65, angle_deg=5.0),
                              (65, 65))
    assert float(full[0, 0, 0]) < 50.0 and float(full[0, 32, 32]) == pytest.approx(100.0)


# --- loss ---------------------------------------------------------------------------------------------------

def test_loss_is_the_weighted_error_averaged_over_all_latent_elements(monkeypatch):
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    b, t = 2, LAYOUT.num_latent_frames
    x0 = torch.zeros(b, 16, t, 8, 8)
    batch = {
        "proprio": torch.zeros(b, 14), "future_proprio": torch.zeros(b, 14), "actions": torch.zeros(b, 50, 14),
        "value": torch.zeros(b), "text_embeddings": torch.zeros(b, NETWORK.text_max_tokens, NETWORK.text_embed_dim),
        "objective": torch.tensor([0, 2]),  # policy: 6 target frames of 11; value: 1
    }
    monkeypatch.setattr(diffusion, "sample_training_sigma", lambda *a, **k: torch.tensor([1.0, 3.0]))
    # the network misses every element by 2: squared error 4 on target frames, clean frames are ground truth
    monkeypatch.setattr(CosmosPolicyModel, "denoise",
                        lambda self, xt, sigma, x_clean, clean, text: torch.where(
                            clean[:, None, :, None, None], x_clean, x_clean + 2.0))
    loss, _ = model.training_loss(batch, torch.Generator().manual_seed(0), latents=x0)
    # weights (1 + sigma)^2 / sigma^2 = 4 and 16/9; all 2 x 16 x 11 x 8 x 8 elements in the mean, x 10
    sample0 = 4.0 * 4.0 * 6 / 11
    sample1 = 16 / 9 * 4.0 * 1 / 11
    assert float(loss) == pytest.approx(10 * (sample0 + sample1) / 2, rel=1e-6)
    older, _ = model.training_loss(batch, latents=x0, reduction="per_sample")
    assert float(older) == pytest.approx(10 * (4.0 * 4.0 + 16 / 9 * 4.0) / 2, rel=1e-6)


# --- learning-rate schedule ---------------------------------------------------------------------------------

def test_release_schedule_at_the_cycle_boundaries():
    cfg = TrainConfig(steps=500, warmup_steps=10, lr_cycle_steps=100)
    assert cfg.decay == "release"
    factors = [lr_factor(s, cfg) for s in range(500)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)  # warm-up
    assert factors[10] == pytest.approx(1.0)  # decay starts from 1.0
    assert factors[55] == pytest.approx(0.65)  # half-way through the decay
    assert factors[99] == pytest.approx(0.3, abs=0.01)  # end of the first cycle
    assert factors[100] == pytest.approx(0.06) and factors[499] == pytest.approx(0.06)  # constant after
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))


# --- objective mix ------------------------------------------------------------------------------------------

def test_base_run_mix_demo_policy_else_world_model_or_value(tmp_path):
    ds, _, _ = _dataset(tmp_path, count=2, steps=50)
    counts = np.zeros(3)
    for epoch in range(60):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            counts[ds.plan(i)[2]] += 1
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.25, 0.25], atol=0.012)


def test_rollout_samples_train_world_model_and_value_only(tmp_path):
    rollouts = write_synthetic_episodes(
        tmp_path / "rollouts", count=2, steps=40,
        attrs=[{"success": True, "success_score": 1.0, "task_description": "t"},
               {"success": False, "success_score": 0.0, "task_description": "t"}])
    ds, _, _ = _dataset(tmp_path, count=2, steps=40, rollouts=rollouts)
    assert ds.demo_sampling_prob == 0.5
    by_pool = {True: np.zeros(3), False: np.zeros(3)}
    for epoch in range(40):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            episode, _, objective, _ = ds.plan(i)
            by_pool[episode.is_demo][objective] += 1
    demo, rollout = by_pool[True], by_pool[False]
    assert demo[1] == demo[2] == 0  # demos: policy only
    assert rollout[0] == 0  # rollouts (successful ones too): never the policy
    assert rollout[1] / rollout.sum() == pytest.approx(0.5, abs=0.03)
    assert demo.sum() / (demo.sum() + rollout.sum()) == pytest.approx(0.5, abs=0.03)


def test_sample_stride_keeps_every_nth_step(tmp_path):
    ds, _, _ = _dataset(tmp_path, count=2, steps=12, sample_stride=5)
    assert len(ds) == 6  # steps 0, 5, 10 of each episode
    assert [ds.plan(i)[1] for i in range(6)] == [0, 5, 10, 0, 5, 10]


# --- cached latents with augmentation -----------------------------------------------------------------------

def _trainer(tmp_path, name, dataset, raw, cache, **options):
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    cfg = TrainConfig(steps=4, batch_size=3, warmup_steps=2, save_every=0, progress=False, cache_latents=True,
                      latent_versions=2, **options)
    return Trainer(model, dataset, cfg, tmp_path / name, raw, cache)


def test_cached_augmented_latents_resume_exactly_with_and_without_workers(tmp_path):
    ds, raw, cache = _dataset(tmp_path, count=1, steps=6)
    straight = _trainer(tmp_path, "straight", ds, raw, cache, num_workers=1)
    full = straight.train()
    assert 0 < len(straight.latent_cache.store) <= 12 and straight.latent_cache.encoded_here == 0  # worker encoded
    first = _trainer(tmp_path, "resumed", ds, raw, cache)
    first.train(until_step=2)
    second = _trainer(tmp_path, "resumed", ds, raw, cache)
    assert second.resume() == 2
    second.train()
    np.testing.assert_allclose(second.loss_history, full.loss_history, rtol=1e-5)
    # every cached latent is one of 2 fixed augmentations of its sample
    keys = sorted(straight.latent_cache.store)
    assert all(0 <= k < 12 for k in keys)
