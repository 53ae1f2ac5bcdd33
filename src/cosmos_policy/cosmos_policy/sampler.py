"""Karras sigmas and the 2nd-order multistep exponential integrator ("2ab", RES-style) in -log(sigma).

With x0-denoiser D, the probability-flow ODE in lambda = -log(sigma) is dx/dlambda = D(x) - x, so over a
step h = lambda_next - lambda:  x_next = e^-h x + h phi_1(-h) D + h^2 phi_2(-h) dD/dlambda, where
h phi_1(-h) = 1 - e^-h and h^2 phi_2(-h) = e^-h - 1 + h (exact for D linear in lambda). The slope comes
from the previous step's D (multistep), so the first step is first order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from .config import SamplerConfig
from .diffusion import rand, randn

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def karras_sigmas(
    num_steps: int,
    sigma_max: float | torch.Tensor = 80.0,
    sigma_min: float | torch.Tensor = 4.0,
    rho: float = 7.0,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """num_steps sigmas from sigma_max down to sigma_min (rho spacing); (N,), or (B, N) for (B,) bounds.

    One step gives [sigma_max] alone: a single x0 evaluation at sigma_max.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps={num_steps}: expected >= 1")
    hi = torch.as_tensor(sigma_max, dtype=torch.float64, device=device)
    lo = torch.as_tensor(sigma_min, dtype=torch.float64, device=device)
    if num_steps == 1:
        return hi[..., None].float()
    ramp = torch.linspace(0.0, 1.0, num_steps, dtype=torch.float64, device=device)
    a, b = hi[..., None] ** (1.0 / rho), lo[..., None] ** (1.0 / rho)
    return ((a + ramp * (b - a)) ** rho).float()


def _per_sample(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (x.ndim - 1))) if v.ndim else v


def sample_multistep(denoise: Denoiser, x: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Integrate from `x` at sigmas[..., 0] through the schedule, then return D(x, sigmas[..., -1]).

    denoise(x, sigma (B,)) -> x0. sigmas: (N,) shared or (B, N) per sample. N - 1 solver intervals
    (first one first order, then second order) plus the final clean x0 call: N denoiser calls in all.
    """
    b = x.shape[0]
    sig = sigmas if sigmas.ndim == 2 else sigmas[None].expand(b, -1)
    sig = sig.to(x.device, torch.promote_types(x.dtype, torch.float32))
    d_prev = None
    h_prev = None
    for i in range(sig.shape[1] - 1):
        s, s_next = sig[:, i], sig[:, i + 1]
        d = denoise(x, s)
        h = torch.log(s) - torch.log(s_next)
        em1 = torch.expm1(-h)
        x_next = _per_sample(em1 + 1.0, x) * x - _per_sample(em1, x) * d
        if d_prev is not None:
            x_next = x_next + _per_sample((em1 + h) / h_prev, x) * (d - d_prev)
        x, d_prev, h_prev = x_next, d, h
    return denoise(x, sig[:, -1])


def schedule(
    config: SamplerConfig,
    num_steps: int,
    batch_size: int,
    generator: torch.Generator | Sequence[torch.Generator] | None,
    device: torch.device,
) -> torch.Tensor:
    """Sigmas (B, N); with `config.variance_scale` each sample draws sigma_max * U[1, 3], sigma_min * U[0.1, 1].

    `generator`: one generator, or one per sample (then each sample's draw depends on its own only)."""
    hi = torch.full((batch_size,), config.sigma_max, device=device)
    lo = torch.full((batch_size,), config.sigma_min, device=device)
    if config.variance_scale:
        a, b = config.sigma_max_scale_range
        hi = hi * (a + (b - a) * rand((batch_size,), generator, device))
        a, b = config.sigma_min_scale_range
        lo = lo * (a + (b - a) * rand((batch_size,), generator, device))
    return karras_sigmas(num_steps, hi, lo, config.rho, device)


def generate(
    model,
    x_clean: torch.Tensor,
    clean_mask: torch.Tensor,
    text_embeddings: torch.Tensor,
    num_steps: int,
    config: SamplerConfig,
    generator: torch.Generator | Sequence[torch.Generator] | None = None,
    *,
    max_batch: int | None = None,
    interrupt: Callable[[], None] | None = None,
) -> torch.Tensor:
    """Denoise the non-clean frames of `x_clean` (B, C, T, h, w) with `model.denoise`; clean frames kept.

    generator: one generator for the batch, or a list of one per sample ("seed switching": each sample's
    noise and schedule come from its own generator, so the result of a sample does not depend on which
    batch or chunk it runs in). max_batch: run at most that many samples per network call (memory cap);
    with per-sample generators the result equals the unchunked one. interrupt: called before every network
    evaluation; it may raise to abandon the sampling (a planner out of time).
    """
    b = x_clean.shape[0]
    if max_batch is not None and max_batch < 1:
        raise ValueError(f"max_batch={max_batch}: expected >= 1 or None")
    if max_batch is not None and b > max_batch:
        per_row = isinstance(generator, (list, tuple))
        if per_row and len(generator) != b:
            raise ValueError(f"got {len(generator)} per-sample generators for {b} samples")
        if clean_mask.shape[0] != b or text_embeddings.shape[0] != b:
            raise ValueError(f"clean_mask {tuple(clean_mask.shape)} / text {tuple(text_embeddings.shape)}: "
                             f"expected {b} rows")
        out = []
        for lo in range(0, b, max_batch):
            hi = min(b, lo + max_batch)
            gen = list(generator[lo:hi]) if per_row else generator
            out.append(generate(model, x_clean[lo:hi], clean_mask[lo:hi], text_embeddings[lo:hi], num_steps,
                                config, gen, interrupt=interrupt))
        return torch.cat(out)
    sigmas = schedule(config, num_steps, b, generator, x_clean.device)
    noise = randn(x_clean.shape, generator, x_clean.device)
    keep = clean_mask[:, None, :, None, None]
    x = torch.where(keep, x_clean, _per_sample(sigmas[:, 0], noise) * noise)

    def denoise(xt: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        if interrupt is not None:
            interrupt()
        return model.denoise(xt, sigma, x_clean, clean_mask, text_embeddings)

    return sample_multistep(denoise, x, sigmas)
