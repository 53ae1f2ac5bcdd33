"""Karras schedule and the 2nd-order multistep exponential integrator on a toy problem with a known answer."""

from __future__ import annotations

import pytest
import torch

from cosmos_policy.config import SamplerConfig
from cosmos_policy.sampler import generate, karras_sigmas, sample_multistep, schedule

MU, S = 0.7, 0.5
SIGMA_MAX, SIGMA_MIN = 80.0, 4.0


def gaussian_denoiser(calls: list | None = None):
    """Ideal x0 denoiser for data ~ N(MU, S^2): E[x0 | x] = MU + S^2 / (S^2 + sigma^2) (x - MU)."""

    def denoise(x, sigma):
        if calls is not None:
            calls.append(sigma.clone())
        s2 = sigma.reshape(-1, *([1] * (x.ndim - 1))) ** 2
        return MU + S**2 / (S**2 + s2) * (x - MU)

    return denoise


def exact_sample(x_init):
    """The probability-flow ODE from sigma_max to sigma_min, then the x0 call at sigma_min, in closed form."""
    scale = S**2 / ((S**2 + SIGMA_MIN**2) ** 0.5 * (S**2 + SIGMA_MAX**2) ** 0.5)
    return MU + (x_init - MU) * scale


def _x_init():
    return SIGMA_MAX * torch.linspace(-2.5, 2.5, 11, dtype=torch.float64)[:, None]


def test_karras_schedule():
    sigmas = karras_sigmas(5, SIGMA_MAX, SIGMA_MIN, 7.0)
    assert sigmas.shape == (5,)
    assert sigmas[0].item() == pytest.approx(80.0) and sigmas[-1].item() == pytest.approx(4.0)
    assert torch.all(sigmas[1:] < sigmas[:-1])
    mid = (80.0 ** (1 / 7) + 0.5 * (4.0 ** (1 / 7) - 80.0 ** (1 / 7))) ** 7
    assert sigmas[2].item() == pytest.approx(mid, rel=1e-6)
    assert karras_sigmas(1).tolist() == [80.0]
    per_sample = karras_sigmas(3, torch.tensor([80.0, 160.0]), torch.tensor([4.0, 2.0]))
    assert per_sample.shape == (2, 3) and per_sample[1, 0].item() == pytest.approx(160.0)


def test_sampler_lands_on_the_analytic_sample():
    x = _x_init()
    out = sample_multistep(gaussian_denoiser(), x, karras_sigmas(40).double())
    assert torch.allclose(out, exact_sample(x), atol=5e-6, rtol=0)


def test_sampler_is_second_order():
    x = _x_init()
    errors = [
        (sample_multistep(gaussian_denoiser(), x, karras_sigmas(n).double()) - exact_sample(x)).abs().max().item()
        for n in (10, 20, 40)
    ]
    assert errors[0] / errors[1] > 3.0 and errors[1] / errors[2] > 3.0


def test_n_steps_is_n_denoiser_calls_and_one_step_is_a_single_x0_call():
    x = _x_init()
    calls: list = []
    sample_multistep(gaussian_denoiser(calls), x, karras_sigmas(5).double())
    assert len(calls) == 5
    assert calls[-1][0].item() == pytest.approx(SIGMA_MIN)
    calls.clear()
    one = sample_multistep(gaussian_denoiser(calls), x, karras_sigmas(1).double())
    assert len(calls) == 1 and calls[0][0].item() == pytest.approx(SIGMA_MAX)
    assert torch.equal(one, gaussian_denoiser()(x, torch.full((x.shape[0],), SIGMA_MAX, dtype=torch.float64)))


def test_variance_scale_draws_per_sample_bounds():
    config = SamplerConfig(variance_scale=True)
    sigmas = schedule(config, 5, 4000, torch.Generator().manual_seed(0), torch.device("cpu"))
    hi, lo = sigmas[:, 0], sigmas[:, -1]
    assert hi.min() >= 80.0 and hi.max() <= 240.0 and hi.max() > 200.0
    assert lo.min() >= 0.4 and lo.max() <= 4.0 and lo.min() < 0.6
    fixed = schedule(SamplerConfig(), 5, 3, None, torch.device("cpu"))
    assert torch.allclose(fixed, karras_sigmas(5).expand(3, -1))


class _ToyModel:
    """`denoise` with the CosmosPolicyModel signature over the Gaussian toy data."""

    def denoise(self, xt, sigma, x_clean, clean_mask, text):
        x0 = gaussian_denoiser()(xt, sigma)
        return torch.where(clean_mask[:, None, :, None, None], x_clean, x0)


def test_generate_keeps_clean_frames_and_is_seeded():
    x_clean = torch.randn(2, 16, 4, 2, 2)
    clean = torch.tensor([[True, True, False, False]] * 2)
    config = SamplerConfig()
    a = generate(_ToyModel(), x_clean, clean, None, 5, config, torch.Generator().manual_seed(1))
    b = generate(_ToyModel(), x_clean, clean, None, 5, config, torch.Generator().manual_seed(1))
    c = generate(_ToyModel(), x_clean, clean, None, 5, config, torch.Generator().manual_seed(2))
    assert torch.equal(a[:, :, :2], x_clean[:, :, :2])
    assert torch.equal(a, b) and not torch.equal(a, c)
