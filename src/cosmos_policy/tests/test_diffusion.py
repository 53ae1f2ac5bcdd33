"""Preconditioning, training sigma, the masked x0 loss, conditioning inputs, frozen VAE."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_model import random_batch, random_latents, tiny_model

from cosmos_policy.diffusion import CosmosPolicyModel, loss_weight, rf_precondition, sample_training_sigma
from cosmos_policy.objectives import clean_masks


def test_rectified_flow_preconditioning_recovers_x0_from_the_ideal_velocity():
    sigma = torch.tensor([0.0, 0.5, 4.0, 80.0])
    c_skip, c_out, c_in, c_noise = rf_precondition(sigma)
    t = sigma / (1 + sigma)
    assert torch.allclose(c_noise, t) and torch.allclose(c_in, 1 - t) and torch.allclose(c_out, -t)
    assert torch.allclose(c_skip, 1 - t)
    x0, eps = torch.randn(4, 5), torch.randn(4, 5)
    x = x0 + sigma[:, None] * eps
    velocity = eps - x0
    assert torch.allclose(c_skip[:, None] * x + c_out[:, None] * velocity, x0, atol=1e-5)
    assert torch.allclose(loss_weight(torch.tensor([1.0, 3.0])), torch.tensor([4.0, 16.0 / 9.0]))


def _lognormal_cdf(x: float) -> float:
    z = (math.log(x) - math.log(4.0)) / 1.2
    return 0.5 * (1 + math.erf(z / math.sqrt(2)))


def test_training_sigma_is_hybrid_and_scaled_by_sqrt_frames():
    sigma = sample_training_sigma(200_000, 11, torch.Generator().manual_seed(0), torch.device("cpu"))
    base = sigma / math.sqrt(11)
    below, above = _lognormal_cdf(1.0), 1 - _lognormal_cdf(85.0)
    # Below 1 and above 85 only the lognormal part (70%) contributes; the uniform 30% lies inside.
    assert abs((base < 1).float().mean().item() - 0.7 * below) < 0.005
    assert abs((base > 85).float().mean().item() - 0.7 * above) < 0.001
    in_20_40 = ((base > 20) & (base < 40)).float().mean().item()
    want = 0.7 * (_lognormal_cdf(40.0) - _lognormal_cdf(20.0)) + 0.3 * 20 / 84
    assert abs(in_20_40 - want) < 0.005


def _perturbing_hook(frame, scale):
    def hook(module, args, kwargs, output):
        out = output[0].clone()
        out[:, :, frame] += scale
        return (out,)

    return hook


def test_loss_ignores_clean_frames_and_sees_target_frames():
    model = tiny_model()
    batch = random_batch(model, [0, 1])
    x0 = random_latents(model, 2)

    def loss_with(frame=None):
        handle = None
        if frame is not None:
            handle = model.dit.register_forward_hook(_perturbing_hook(frame, 5.0), with_kwargs=True)
        try:
            return model.training_loss(batch, torch.Generator().manual_seed(7), latents=x0)[0]
        finally:
            if handle is not None:
                handle.remove()

    base = loss_with()
    for clean_frame in (0, 2, 4):
        assert torch.equal(loss_with(clean_frame), base)
    assert not torch.allclose(loss_with(7), base)
    # The action frame is a target for the policy sample only.
    assert not torch.allclose(loss_with(5), base)


def test_loss_matches_the_formula():
    model = tiny_model()
    batch = random_batch(model, [0, 2])
    x0 = random_latents(model, 2)
    captured = {}

    def keep_pred(module, args, kwargs, output):
        captured.setdefault("out", output[0])

    handle = model.dit.register_forward_hook(keep_pred, with_kwargs=True)
    loss, _ = model.training_loss(batch, torch.Generator().manual_seed(3), latents=x0)
    handle.remove()
    g = torch.Generator().manual_seed(3)
    sigma = sample_training_sigma(2, 11, g, torch.device("cpu"))
    noise = torch.randn(x0.shape, generator=g)
    clean = clean_masks(model.layout, batch["objective"])
    xt = x0 + sigma[:, None, None, None, None] * noise
    t = sigma / (1 + sigma)
    pred = (1 - t)[:, None, None, None, None] * xt - t[:, None, None, None, None] * captured["out"]
    se = ((pred - x0) ** 2).mean(dim=(1, 3, 4))
    target = ~clean
    # the release's reduction: weighted squared error averaged over all B x C x T x H x W elements
    want = 10 * ((1 + sigma)[:, None] ** 2 / sigma[:, None] ** 2 * se * target).mean()
    assert torch.allclose(loss, want, rtol=1e-5)
    per_sample = (se * target).sum(1) / target.sum(1)
    older = 10 * ((1 + sigma) ** 2 / sigma**2 * per_sample).mean()
    got, _ = model.training_loss(batch, torch.Generator().manual_seed(3), latents=x0, reduction="per_sample")
    assert torch.allclose(got, older, rtol=1e-5)


def test_clean_frames_enter_with_timestep_zero_and_condition_mask():
    model = tiny_model()
    batch = random_batch(model, [0, 2])
    seen = {}

    def grab(module, args, kwargs):
        seen.update(kwargs)

    handle = model.dit.register_forward_pre_hook(grab, with_kwargs=True)
    model.training_loss(batch, torch.Generator().manual_seed(0), latents=random_latents(model, 2))
    handle.remove()
    timestep = seen["timestep"][:, 0, :, 0, 0]
    cond = seen["condition_mask"][:, 0, :, 0, 0]
    pad = seen["condition_mask"][:, 1]
    clean = clean_masks(model.layout, batch["objective"])
    assert torch.all(timestep[clean] == 0) and torch.all(timestep[~clean] > 0)
    assert torch.equal(cond.bool(), clean)
    assert torch.all(pad == 0)
    assert seen["fps"] is None


def test_training_loss_end_to_end_metrics_and_frozen_vae():
    model = tiny_model()
    batch = random_batch(model, [0])
    loss, metrics = model.training_loss(batch, torch.Generator().manual_seed(0))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert set(metrics) == {"l1/action", "l1/future_proprio", "l1/value", "l1/future_image/cam_left_wrist",
                            "l1/future_image/cam_right_wrist", "l1/future_image/cam_high"}
    loss.backward()
    assert all(p.grad is None for p in model.vae.parameters())
    assert all(p.grad is not None for p in model.trainable_parameters())
    model.train()
    assert not model.vae.training and model.dit.training


def test_precomputed_latents_give_the_same_loss_as_encoding_the_images():
    model = tiny_model()
    batch = random_batch(model, [0, 1, 2])
    from_images, metrics_images = model.training_loss(batch, torch.Generator().manual_seed(5))
    with torch.no_grad():
        latents = model.encode_batch(batch)
    images_gone = {**batch, "images": torch.zeros_like(batch["images"]),
                   "future_images": torch.zeros_like(batch["future_images"])}
    from_latents, metrics_latents = model.training_loss(images_gone, torch.Generator().manual_seed(5),
                                                        latents=latents)
    assert torch.equal(from_latents, from_images) and metrics_latents == metrics_images
    # and the latents really are used: other latents give another loss
    other, _ = model.training_loss(batch, torch.Generator().manual_seed(5), latents=latents.flip(0))
    assert not torch.equal(other, from_images)
    with pytest.raises(ValueError, match="latents: got shape"):
        model.training_loss(batch, latents=latents[:, :, :5])


def test_activation_checkpointing_gives_the_same_loss_and_gradients():
    plain = tiny_model(seed=1)
    torch.manual_seed(1)
    ckpt = CosmosPolicyModel(plain.network_config, plain.layout, activation_checkpointing=True)
    assert ckpt.dit.gradient_checkpointing and not plain.dit.gradient_checkpointing
    batch = random_batch(plain, [0, 2])
    x0 = random_latents(plain, 2)
    results = []
    for model in (plain, ckpt):
        model.train()
        loss, _ = model.training_loss(batch, torch.Generator().manual_seed(1), latents=x0)
        loss.backward()
        results.append((loss.detach(), model.dit.proj_out.weight.grad.clone()))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], atol=1e-6)


def test_bf16_autocast_loss_is_finite_and_float32():
    model = tiny_model()
    batch = random_batch(model, [0])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss, _ = model.training_loss(batch, torch.Generator().manual_seed(0), latents=random_latents(model, 1))
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


@pytest.mark.parametrize("layout", ["libero", "robocasa"])
def test_other_layouts_train_on_latents(layout):
    model = tiny_model(layout)
    batch = random_batch(model, [0, 1, 2])
    loss, metrics = model.training_loss(batch, torch.Generator().manual_seed(0), latents=random_latents(model, 3))
    assert torch.isfinite(loss)
    assert {f"l1/future_image/{cam}" for cam in model.layout.cameras} <= set(metrics)
