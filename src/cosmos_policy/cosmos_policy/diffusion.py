"""Rectified-flow preconditioning in sigma space, hybrid training sigma, and the training loss."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .config import LayoutConfig, NetworkConfig
from .injection import extract, extract_value
from .latent_sequence import encode_sequence
from .networks import build_networks, run_dit
from .objectives import STATE_ACTION_NEXT_STATE, check_value_conditioning, clean_masks, loss_masks

LOSS_SCALE = 10.0
SIGMA_LOGNORMAL_MEAN = math.log(4.0)
SIGMA_LOGNORMAL_STD = 1.2
SIGMA_UNIFORM_RANGE = (1.0, 85.0)
SIGMA_LOGNORMAL_PROB = 0.7


def rf_precondition(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(c_skip, c_out, c_in, c_noise) for rectified flow with sigma_data = 1, t = sigma / (1 + sigma)."""
    t = sigma / (1.0 + sigma)
    return 1.0 - t, -t, 1.0 - t, t


def _draw(fn, shape, generator, device: torch.device) -> torch.Tensor:
    if generator is None:
        return fn(shape, device=device)
    if isinstance(generator, (list, tuple)):
        # One generator per row (shape[0] of them): row i depends on generator i only, so a batch split
        # into chunks draws exactly the numbers it draws whole.
        if len(generator) != shape[0]:
            raise ValueError(f"got {len(generator)} per-row generators for {shape[0]} rows")
        rows = [fn(tuple(shape[1:]), generator=g, device=g.device).to(device) for g in generator]
        return torch.stack(rows) if rows else torch.empty(tuple(shape), device=device)
    return fn(shape, generator=generator, device=generator.device).to(device)


def randn(shape, generator: torch.Generator | Sequence[torch.Generator] | None, device: torch.device) -> torch.Tensor:
    """Standard normal noise from `generator` (on its own device), moved to `device`.

    `generator` may be a list of one generator per row (see `_draw`)."""
    return _draw(torch.randn, tuple(shape), generator, device)


def rand(shape, generator: torch.Generator | Sequence[torch.Generator] | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers from `generator` (or one generator per row), moved to `device`."""
    return _draw(torch.rand, tuple(shape), generator, device)


def sample_training_sigma(
    batch_size: int, num_latent_frames: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """Hybrid sigma (B,): 70% lognormal(ln 4, 1.2), 30% uniform [1, 85], times sqrt(number of latent frames)."""
    normal = randn((batch_size,), generator, device)
    uniform = rand((batch_size,), generator, device)
    pick = rand((batch_size,), generator, device)
    lognormal = torch.exp(SIGMA_LOGNORMAL_MEAN + SIGMA_LOGNORMAL_STD * normal)
    lo, hi = SIGMA_UNIFORM_RANGE
    sigma = torch.where(pick < SIGMA_LOGNORMAL_PROB, lognormal, lo + (hi - lo) * uniform)
    return sigma * math.sqrt(num_latent_frames)


def loss_weight(sigma: torch.Tensor) -> torch.Tensor:
    """EDM-style x0 loss weight for rectified flow: (1 + sigma)^2 / sigma^2."""
    return (1.0 + sigma) ** 2 / sigma**2


def mask_text(text_embeddings: torch.Tensor, text_mask: torch.Tensor | None) -> torch.Tensor:
    """Zero the padded text tokens (the native network attends to all tokens of a zero-padded prompt)."""
    if text_mask is None:
        return text_embeddings
    return text_embeddings * text_mask[..., None].to(text_embeddings.dtype)


class CosmosPolicyModel(nn.Module):
    """DiT + frozen Wan VAE + layout: the one network that is policy, world model and value function.

    The VAE stays frozen: the DiT was pretrained on exactly this latent space, injected vectors live in
    it, and future images must still decode; training it would also cost memory for no gain.
    """

    def __init__(
        self,
        network_config: NetworkConfig,
        layout: LayoutConfig,
        *,
        base_dir: str | Path | None = None,
        transformer: nn.Module | None = None,
        vae: nn.Module | None = None,
        activation_checkpointing: bool = False,
        value_conditioning: str = STATE_ACTION_NEXT_STATE,
    ) -> None:
        super().__init__()
        # How `training_loss` conditions the value objective: "state_action_next_state" V(s, a, s') (base
        # run) or "next_state" V(s') (the release's planning model). A plain attribute, not saved weights.
        self.value_conditioning = check_value_conditioning(value_conditioning)
        # False: trained without proprio input (`TrainConfig.proprio_dropout` 1.0); inference hides it too
        self.proprio_input = True
        layout.check_fits(network_config.latent_frame_numel)
        self.network_config = network_config
        self.layout = layout
        if transformer is None or vae is None:
            built_dit, built_vae = build_networks(network_config, base_dir)
            transformer = transformer if transformer is not None else built_dit
            vae = vae if vae is not None else built_vae
        self.dit = transformer
        self.vae = vae
        self.vae.requires_grad_(False)
        self.vae.eval()
        if activation_checkpointing:
            self.dit.enable_gradient_checkpointing()

    def train(self, mode: bool = True) -> CosmosPolicyModel:
        super().train(mode)
        self.vae.eval()
        return self

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The DiT's parameters (the VAE is frozen): pass these to the optimiser."""
        return [p for p in self.dit.parameters() if p.requires_grad]

    @property
    def device(self) -> torch.device:
        return next(self.dit.parameters()).device

    def denoise(
        self,
        xt: torch.Tensor,
        sigma: torch.Tensor,
        x_clean: torch.Tensor,
        clean_mask: torch.Tensor,
        text_embeddings: torch.Tensor,
    ) -> torch.Tensor:
        """x0 prediction (float32) for noisy latents `xt` at sigma (B,) or (B, T) on the non-clean frames.

        Clean frames enter as ground truth with timestep 0 and condition mask 1, and leave overwritten
        with ground truth.
        """
        b, _, t, _, _ = xt.shape
        sigma_frames = sigma.reshape(b, -1).expand(b, t).float() * (~clean_mask).float()
        keep = clean_mask[:, None, :, None, None]
        x_in = torch.where(keep, x_clean.float(), xt.float())
        c_skip, c_out, c_in, c_noise = rf_precondition(sigma_frames)
        scale = c_in[:, None, :, None, None]
        dit_in = x_in * scale
        if not torch.is_autocast_enabled(dit_in.device.type):
            dit_in = dit_in.to(next(self.dit.parameters()).dtype)
        out = run_dit(self.dit, dit_in, c_noise, clean_mask, text_embeddings).float()
        x0 = c_skip[:, None, :, None, None] * x_in + c_out[:, None, :, None, None] * out
        return torch.where(keep, x_clean.float(), x0)

    def encode_batch(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clean latent sequence x0 (B, 16, T, h, w) of a training batch, injected vectors written in."""
        device = self.device
        return encode_sequence(
            self.vae,
            self.layout,
            batch["images"].to(device),
            batch["future_images"].to(device),
            proprio=batch["proprio"].to(device),
            actions=batch["actions"].to(device),
            future_proprio=batch["future_proprio"].to(device),
            value=batch["value"].to(device),
            vae_frames=self.network_config.vae_frames,
        )

    def training_loss(
        self,
        batch: dict[str, torch.Tensor],
        generator: torch.Generator | None = None,
        *,
        latents: torch.Tensor | None = None,
        reduction: str = "all_elements",
        value_conditioning: str | None = None,
        action_weight: float = 1.0,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """(loss, metrics): weighted x0 squared error averaged over all latent elements, times 10 (release).

        `latents`: precomputed clean latents x0 (B, 16, T, h, w) of this batch, as `encode_batch` returns
        them (e.g. cached: the VAE is frozen); the batch's images are then not encoded. Without it the
        batch is encoded here. Reduction as the release: the squared error of every target (non-clean)
        element, weighted by (1 + sigma)^2 / sigma^2 of its sample, averaged over ALL B x C x T x H x W
        elements, clean frames counting 0; so a policy sample (6 target frames of 11 on ALOHA) weighs
        more than a value sample (1 frame). `reduction="per_sample"` gives the older per-sample mean over
        its own target frames, then the batch mean.

        `value_conditioning` (default: `self.value_conditioning`): "next_state" trains V(s') as the release's
        planning model: in value samples the current-state and action frames are noised like targets (so
        they cannot condition the value) but stay out of the loss, which covers the value frame only.

        `action_weight` (not the release: 1) scales the action frame's squared error. The action is one frame
        of the six a policy sample predicts, and the part of a first chunk that depends on the scene is a tiny
        share of the loss. Measured at 10 on a policy fed through untrained VAE layers: no effect on how much
        its first chunk follows the scene (docs/results.md).
        """
        device = self.device
        x0 = self.encode_batch(batch) if latents is None else latents.to(device)
        b, _, t, _, _ = x0.shape
        expected = (self.network_config.latent_channels, self.layout.num_latent_frames)
        if (x0.shape[1], t) != expected or b != batch["objective"].shape[0]:
            raise ValueError(f"latents: got shape {tuple(x0.shape)}, expected ({batch['objective'].shape[0]}, "
                             f"{expected[0]}, {expected[1]}, h, w) (encode them with encode_batch)")
        conditioning = check_value_conditioning(value_conditioning or self.value_conditioning)
        objectives = batch["objective"].to(device)
        clean = clean_masks(self.layout, objectives, conditioning)
        target_mask = loss_masks(self.layout, objectives, conditioning)
        sigma = sample_training_sigma(b, t, generator, device)
        noise = randn(x0.shape, generator, device)
        xt = x0 + sigma[:, None, None, None, None] * noise
        text_mask = batch["text_mask"].to(device) if "text_mask" in batch else None
        text = mask_text(batch["text_embeddings"].to(device), text_mask)
        pred = self.denoise(xt, sigma, x0, clean, text)
        target = target_mask.float()
        if action_weight != 1.0:
            target[:, self.layout.index("action")] *= action_weight
        se_frame = ((pred - x0) ** 2).mean(dim=(1, 3, 4))  # (B, T): every frame has C x h x w elements
        if reduction == "all_elements":
            loss = LOSS_SCALE * (loss_weight(sigma)[:, None] * se_frame * target).mean()
        elif reduction == "per_sample":
            per_sample = (se_frame * target).sum(dim=1) / target_mask.float().sum(dim=1).clamp(min=1.0)
            loss = LOSS_SCALE * (loss_weight(sigma) * per_sample).mean()
        else:
            raise ValueError(f"reduction={reduction!r}: expected 'all_elements' or 'per_sample'")
        return loss, self._metrics(pred.detach(), x0, target_mask, batch)

    @torch.no_grad()
    def _metrics(
        self, pred: torch.Tensor, x0: torch.Tensor, target: torch.Tensor, batch: dict[str, torch.Tensor]
    ) -> dict[str, float]:
        layout = self.layout
        metrics: dict[str, float] = {}

        def record(name: str, frame: int, error: torch.Tensor) -> None:
            rows = target[:, frame]
            if bool(rows.any()):
                metrics[name] = float(error[rows].mean())

        for kind, key, name in (
            ("action", "actions", "l1/action"),
            ("future_proprio", "future_proprio", "l1/future_proprio"),
        ):
            idx = layout.index(kind)
            truth = batch[key].to(pred.device).reshape(pred.shape[0], -1).float()
            got = extract(pred, idx, truth.shape[1])
            record(name, idx, (got - truth).abs().mean(dim=1))
        idx = layout.index("value")
        record("l1/value", idx, (extract_value(pred, idx) - batch["value"].to(pred.device).float()).abs())
        for cam in layout.cameras:
            idx = layout.index("future_image", cam)
            record(f"l1/future_image/{cam}", idx, (pred[:, :, idx] - x0[:, :, idx]).abs().mean(dim=(1, 2, 3)))
        return metrics
