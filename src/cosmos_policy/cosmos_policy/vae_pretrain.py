"""Pretrain the Wan VAE of a CPU preset (`small`, `tiny`) as an autoencoder of the robot's own camera frames.

Why: Cosmos Policy freezes a *pretrained* VAE (Wan2.1's, from Cosmos-Predict2) and reads every camera through
its latents. The CPU presets have no pretrained VAE to take, and a randomly initialised AutoencoderKLWan is no
image code at all. Measured on the 8,000-step `small` checkpoint (`docs/results.md`): two held-out episodes
whose wrist frames differ by 28/255 per pixel gave latent frames that differ by 0.0008 (latent std 0.34), and
replacing all three cameras by black frames moved the policy's chunk by < 0.001 in normalised units. The
policy was blind: it could only replay the mean trajectory from the proprio, whatever the cube's position.

This job gives the preset the pretrained VAE the method assumes, on the frames it will see:
- frames drawn from the demonstrations, resized to the network's square input as training does, half of them
  through the training augmentation (crop, rotation, colour jitter) and half centre-cropped as at inference;
- the VAE's own objective, reconstruction (MSE) plus a small KL term, on single frames (each camera image is
  one latent frame of the sequence, encoded alone);
- then the per-channel latent mean and std measured on the frames, stored as the VAE's `latents_mean` /
  `latents_std`, so that the DiT sees unit-scale latents as it does with Wan2.1's statistics.
The result is a diffusers folder (`OUT/vae/`), the same format as the 2B's base folder; `cosmos-policy train
--vae-dir OUT` freezes it into the policy (the checkpoint then carries its weights and statistics).
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .config import NetworkConfig
from .data.augment import augment_images, camera_view, center_crop_resize, frames_to_tensor, to_model_range
from .data.datasets import read_episode_record
from .networks import build_vae, load_vae_from_diffusers

log = logging.getLogger(__name__)

VAE_FOLDER = "vae"
REPORT_FILE = "vae_pretrain.json"
DETAIL_PSNR_WEIGHT = 200.0  # the reported detail PSNR: dominated by small, sharp or coloured things


@dataclass(frozen=True)
class VaePretrainConfig:
    """Options of one pretraining run (defaults: the `small` preset's, ~15 min on 2 cores)."""

    steps: int = 3000
    batch_size: int = 32
    learning_rate: float = 1e-3
    kl_weight: float = 1e-6  # a small KL term, as latent-diffusion VAEs: a smooth code that still reconstructs
    # weight of a pixel's error grows with its local detail (|x - blur(x)|): the cube is ~2 px at 64 px, and a
    # plain MSE reaches 25.7 dB held-out PSNR with the cube erased from every reconstruction (measured)
    detail_weight: float = 50.0
    # ... and with its colour saturation (max - min over RGB): the objects of the tasks (a red cube, a red peg,
    # a blue socket) are the saturated pixels of a grey table, white arms and a black background
    colour_weight: float = 100.0
    augment_prob: float = 0.5  # share of training frames through the training augmentation
    frames_per_episode: int = 24  # per camera, spread over the episode, kept in memory (uint8, network size)
    heldout_fraction: float = 0.1  # episodes kept out of training to report reconstruction on unseen frames
    calibration_frames: int = 1024
    seed: int = 0
    log_every: int = 100


@dataclass
class FramePool:
    """Camera frames at the network's input size, uint8 (N, H, W, 3), with where each came from."""

    frames: np.ndarray
    cameras: list[str]
    episodes: list[str]

    def __len__(self) -> int:
        return self.frames.shape[0]


def load_frame_pool(episode_files: Sequence[str | Path], cameras: Sequence[str], image_px: int,
                    frames_per_episode: int, rng: np.random.Generator,
                    camera_crops: Mapping[str, tuple[float, float, float, float]] | None = None) -> FramePool:
    """Frames of every camera spread over each episode (random offsets), each camera's region of interest
    (`camera_crops`, as the policy will see it), resized to image_px x image_px."""
    frames, cams, sources = [], [], []
    for path in tqdm(list(episode_files), desc="reading frames", unit="ep", leave=False):
        record = read_episode_record(path, cameras)
        steps = record.actions.shape[0]
        count = min(frames_per_episode, steps)
        edges = np.linspace(0, steps, count + 1)
        picks = sorted({int(rng.integers(int(lo), max(int(lo) + 1, int(hi)))) for lo, hi in zip(edges[:-1], edges[1:])})
        read = record.frames.read(picks)
        for cam in cameras:
            frames.append(camera_view(read[cam], (camera_crops or {}).get(cam), (image_px, image_px)))
            cams += [cam] * len(picks)
            sources += [str(path)] * len(picks)
    if not frames:
        raise ValueError("no frames: pass episode files that hold the layout's cameras")
    return FramePool(np.concatenate(frames, axis=0), cams, sources)


def batch_from_pool(pool: FramePool, index: np.ndarray, augment: np.ndarray, generator: torch.Generator,
                    image_px: int) -> torch.Tensor:
    """(B, 3, 1, H, W) in [-1, 1]: each frame augmented (its own draw) or centre-cropped as at inference."""
    out = []
    for i, aug in zip(index.tolist(), augment.tolist()):
        image = frames_to_tensor(pool.frames[i])  # (3, H, W) in [0, 255]
        image = augment_images(image, (image_px, image_px), generator=generator) if aug else \
            center_crop_resize(image, (image_px, image_px))
        out.append(to_model_range(image).clamp(-1.0, 1.0))
    return torch.stack(out)[:, :, None]


def detail_weights(pixels: torch.Tensor, detail_weight: float, colour_weight: float = 0.0) -> torch.Tensor:
    """Per-pixel loss weights 1 + detail_weight x |x - blur(x)| + colour_weight x saturation, shaped like
    pixels[:, :1] (pixels in [-1, 1]; detail is the channel mean, saturation max - min over RGB, both in [0, 1]).

    Small objects and edges stand out from their 5x5 neighbourhood, coloured objects from a grey scene; flat
    table and background do neither. The weights make the few pixels of a cube count as much as the table."""
    frames = (pixels[:, :, 0] + 1.0) / 2.0  # (B, 3, H, W) in [0, 1]: single-frame videos
    blur = F.avg_pool2d(frames, 5, stride=1, padding=2, count_include_pad=False)
    detail = (frames - blur).abs().mean(dim=1, keepdim=True)
    saturation = frames.amax(dim=1, keepdim=True) - frames.amin(dim=1, keepdim=True)
    return (1.0 + detail_weight * detail + colour_weight * saturation)[:, :, None]


def vae_loss(vae: torch.nn.Module, pixels: torch.Tensor, kl_weight: float,
             generator: torch.Generator | None = None, detail_weight: float = 0.0,
             colour_weight: float = 0.0) -> tuple[torch.Tensor, dict[str, float]]:
    """Detail-weighted reconstruction MSE of a posterior sample + kl_weight x KL (per latent element)."""
    posterior = vae.encode(pixels).latent_dist
    # drawn on the CPU generator whatever the device, so a seed gives the same noise on CPU and GPU
    noise = torch.randn(posterior.mean.shape, generator=generator, dtype=posterior.mean.dtype).to(pixels.device)
    z = posterior.mean + posterior.std * noise
    recon = vae.decode(z).sample
    error = (recon - pixels).pow(2)
    weights = detail_weights(pixels, detail_weight, colour_weight)
    weighted = (error * weights).mean() / weights.mean()
    kl = 0.5 * (posterior.mean.pow(2) + posterior.var - 1.0 - posterior.logvar).mean()
    return weighted + kl_weight * kl, {"mse": float(error.mean().detach()), "weighted_mse": float(weighted.detach()),
                                       "kl": float(kl.detach())}


@torch.no_grad()
def reconstruction_psnr(vae: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 64,
                        detail_weight: float = 0.0, colour_weight: float = 0.0) -> float:
    """PSNR (dB, pixels in [-1, 1] mapped to [0, 1]) of encode (posterior mode) -> decode; with detail_weight,
    each pixel's error counts with its `detail_weights` (the PSNR of small objects and edges)."""
    errors, weights = [], []
    for start in range(0, pixels.shape[0], batch_size):
        x = pixels[start:start + batch_size]
        recon = vae.decode(vae.encode(x).latent_dist.mode()).sample.clamp(-1, 1)
        w = detail_weights(x, detail_weight, colour_weight).expand_as(x)
        errors.append((((recon - x) / 2).pow(2) * w).sum())
        weights.append(w.sum())
    mse = float(sum(errors) / sum(weights))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


def detail_psnr(vae: torch.nn.Module, pixels: torch.Tensor) -> float:
    """The reported PSNR of small, sharp or coloured things (DETAIL_PSNR_WEIGHT on detail and colour)."""
    return reconstruction_psnr(vae, pixels, detail_weight=DETAIL_PSNR_WEIGHT, colour_weight=DETAIL_PSNR_WEIGHT)


@torch.no_grad()
def latent_statistics(vae: torch.nn.Module, pixels: torch.Tensor, batch_size: int = 64) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of the posterior mode over `pixels` (the VAE's latents_mean / latents_std)."""
    mus = [vae.encode(pixels[s:s + batch_size]).latent_dist.mode() for s in range(0, pixels.shape[0], batch_size)]
    mu = torch.cat(mus).transpose(0, 1).flatten(1)  # (C, N * T * H * W)
    std = mu.std(dim=1).clamp_min(1e-4)
    return [float(v) for v in mu.mean(dim=1)], [float(v) for v in std]


@torch.no_grad()
def latent_sensitivity(vae: torch.nn.Module, pixels: torch.Tensor, mean: Sequence[float],
                       std: Sequence[float]) -> float:
    """Mean |difference| of the normalised latents of consecutive frames over their std: how much the code
    tells frames apart (a random VAE: ~0.01; an image code: order 1)."""
    m = torch.tensor(mean, device=pixels.device).view(1, -1, 1, 1, 1)
    s = torch.tensor(std, device=pixels.device).view(1, -1, 1, 1, 1)
    z = (vae.encode(pixels).latent_dist.mode() - m) / s
    return float((z[1:] - z[:-1]).abs().mean() / z.std().clamp_min(1e-8))


def pretrain_vae(network: NetworkConfig, cameras: Sequence[str], episode_files: Sequence[str | Path],
                 out_dir: str | Path, config: VaePretrainConfig = VaePretrainConfig(),
                 progress: bool = True, init_dir: str | Path | None = None,
                 device: str | torch.device = "cpu",
                 camera_crops: Mapping[str, tuple[float, float, float, float]] | None = None) -> dict:
    """Train `network`'s VAE on the episodes' frames; write OUT/vae/ (diffusers) and OUT/vae_pretrain.json.

    `init_dir`: continue from the VAE of an earlier run (a folder with vae/) instead of a random one.
    `camera_crops`: each camera's region of interest (the layout's), recorded in the report so that
    `train --vae-dir` can insist on the same.
    `device`: where the VAE trains; frames are read and augmented on the CPU either way."""
    device = torch.device(device)
    out_dir = Path(out_dir)
    files = [Path(p) for p in episode_files]
    if len(files) < 2:
        raise ValueError(f"{len(files)} episode file(s): pretraining needs at least 2 (one is held out)")
    rng = np.random.default_rng(config.seed)
    torch.manual_seed(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    order = rng.permutation(len(files))
    n_held = max(1, int(round(config.heldout_fraction * len(files))))
    held_files, train_files = [files[i] for i in order[:n_held]], [files[i] for i in order[n_held:]]
    px = network.image_size_px
    train_pool = load_frame_pool(train_files, cameras, px, config.frames_per_episode, rng, camera_crops)
    held_pool = load_frame_pool(held_files, cameras, px, config.frames_per_episode, rng, camera_crops)
    held = batch_from_pool(held_pool, np.arange(len(held_pool)), np.zeros(len(held_pool), bool), generator,
                           px).to(device)

    vae = (build_vae(network) if init_dir is None else load_vae_from_diffusers(init_dir, network)).to(device)
    before_psnr = reconstruction_psnr(vae.eval(), held)
    before_detail = detail_psnr(vae, held)
    optimiser = torch.optim.AdamW(vae.parameters(), lr=config.learning_rate, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=config.learning_rate, total_steps=config.steps,
                                                   pct_start=0.05, anneal_strategy="cos")
    vae.train()
    start, window = time.monotonic(), []
    bar = tqdm(range(config.steps), desc="pretrain vae", unit="step", disable=not progress, dynamic_ncols=True)
    for step in bar:
        index = rng.integers(0, len(train_pool), config.batch_size)
        augment = rng.random(config.batch_size) < config.augment_prob
        pixels = batch_from_pool(train_pool, index, augment, generator, px).to(device)
        loss, parts = vae_loss(vae, pixels, config.kl_weight, generator, config.detail_weight,
                               config.colour_weight)
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        schedule.step()
        window.append(parts["weighted_mse"])
        if (step + 1) % config.log_every == 0 or step + 1 == config.steps:
            bar.set_postfix(weighted_mse=f"{np.mean(window):.4f}", kl=f"{parts['kl']:.1f}")
            if not progress:
                log.info("pretrain vae step %d/%d: weighted mse %.4f kl %.2f", step + 1, config.steps,
                         np.mean(window), parts["kl"])
            window = []
    vae.eval()
    calibration = batch_from_pool(train_pool, rng.integers(0, len(train_pool), config.calibration_frames),
                                  rng.random(config.calibration_frames) < config.augment_prob, generator,
                                  px).to(device)
    mean, std = latent_statistics(vae, calibration)
    vae.register_to_config(latents_mean=mean, latents_std=std)
    heldout_psnr, heldout_detail = reconstruction_psnr(vae, held), detail_psnr(vae, held)
    sensitivity = latent_sensitivity(vae, held[:64], mean, std)
    target = out_dir / VAE_FOLDER
    target.mkdir(parents=True, exist_ok=True)
    vae.to("cpu").save_pretrained(str(target), safe_serialization=True)
    report = {
        "network_preset": network.preset,
        "image_size_px": px,
        "cameras": list(cameras),
        "camera_crops": {cam: list(box) for cam, box in sorted((camera_crops or {}).items())},
        "train_episodes": len(train_files),
        "heldout_episodes": [str(p) for p in held_files],
        "train_frames": len(train_pool),
        "heldout_frames": len(held_pool),
        "heldout_psnr_db_start": before_psnr,
        "heldout_psnr_db": heldout_psnr,
        "heldout_detail_psnr_db_start": before_detail,
        "heldout_detail_psnr_db": heldout_detail,
        "latent_sensitivity": sensitivity,
        "vae_frames": "per_frame",  # trained on one-frame videos: its temporal layers never learnt
        "latents_mean": mean,
        "latents_std": std,
        "wall_s": time.monotonic() - start,
        "device": str(device),
        "config": asdict(config),
        "init_dir": str(init_dir) if init_dir is not None else None,
    }
    (out_dir / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    return report


def read_vae_camera_crops(vae_dir: str | Path) -> dict[str, tuple[float, ...]] | None:
    """The regions of interest a pretrain-vae run trained on ({} for whole frames); None when the folder has no
    report (a VAE from elsewhere: nothing to check against)."""
    path = Path(vae_dir) / REPORT_FILE
    if not path.is_file():
        return None
    crops = json.loads(path.read_text()).get("camera_crops") or {}
    return {cam: tuple(float(v) for v in box) for cam, box in crops.items()}


def read_vae_frames(vae_dir: str | Path) -> str:
    """How a policy must feed frames to this VAE (config.VAE_FRAME_MODES): "per_frame" for a pretrain-vae
    folder, which trains on one-frame videos only (reports from before this key was written included);
    "video" for a VAE from elsewhere (no report), as the release feeds Wan2.1's."""
    path = Path(vae_dir) / REPORT_FILE
    if not path.is_file():
        return "video"
    return str(json.loads(path.read_text()).get("vae_frames", "per_frame"))


def read_vae_statistics(vae_dir: str | Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(latents_mean, latents_std) of a pretrained VAE folder (DIR/vae/config.json)."""
    path = Path(vae_dir) / VAE_FOLDER / "config.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (make it with `cosmos-policy pretrain-vae --out {vae_dir}`)")
    found = json.loads(path.read_text())
    try:
        return tuple(float(v) for v in found["latents_mean"]), tuple(float(v) for v in found["latents_std"])
    except KeyError as exc:
        raise ValueError(f"{path}: no {exc.args[0]} (not a VAE folder written by pretrain-vae or diffusers)") from None
