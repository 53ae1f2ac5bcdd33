"""Does a frozen VAE see the task's objects? Camera frames of held-out episodes next to their reconstructions,
and how far apart the latents of two episodes' first frames are (the cube elsewhere, everything else alike).

    python src/cosmos_policy/benchmarks/vae_reconstructions.py --vae-dir runs/vae_crop \
        --demos data/heldout_96x128/transfer_cube --camera cam_high --camera-crop cam_high=0.3,0.15,0.5,0.7 \
        --out docs/results/vae_crop_reconstructions.png

Rows of the PNG: for each episode, the model's input (region of interest, 90 % centre crop, network size)
then the VAE's reconstruction, at steps spread over the episode. A VAE whose reconstructions lack the cube
gives the policy no way to find it: the shipped random one's latents of two start frames differ by 0.1 %
of their spread (docs/results.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from cosmos_policy.config import NetworkConfig, parse_camera_crops
from cosmos_policy.data.augment import prepare_observation_image
from cosmos_policy.data.datasets import read_episode_record
from cosmos_policy.networks import decode_normalised, encode_normalised, load_vae_from_diffusers


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--vae-dir", type=Path, required=True, help="a pretrain-vae --out folder (vae/ inside)")
    p.add_argument("--network", default="small", help="the preset the VAE was trained for")
    p.add_argument("--demos", type=Path, required=True, help="folder of episodes not used to train the VAE")
    p.add_argument("--camera", default="cam_high")
    p.add_argument("--camera-crop", action="append", default=[], metavar="CAMERA=TOP,LEFT,HEIGHT,WIDTH",
                   help="the region of interest the VAE was pretrained with (see pretrain-vae)")
    p.add_argument("--episodes", type=int, default=4)
    p.add_argument("--steps-per-episode", type=int, default=5)
    p.add_argument("--scale", type=int, default=3, help="pixel zoom of the PNG")
    p.add_argument("--out", type=Path, required=True, help="PNG to write (a .json with the figures beside it)")
    args = p.parse_args(argv)

    network = NetworkConfig.preset_config(args.network)
    vae = load_vae_from_diffusers(args.vae_dir, network).eval()
    region = dict(parse_camera_crops(args.camera_crop)).get(args.camera)
    size = (network.image_size_px, network.image_size_px)
    files = sorted(args.demos.glob("episode_*.hdf5"), key=lambda f: int(f.stem.split("_")[1]))[:args.episodes]
    if not files:
        print(f"--demos {args.demos}: no episode_*.hdf5 files", file=sys.stderr)
        return 2
    rows, firsts = [], []
    for path in files:
        record = read_episode_record(path, [args.camera])
        steps = np.linspace(0, record.actions.shape[0] - 1, args.steps_per_episode).astype(int).tolist()
        frames = record.frames.read(steps)[args.camera]
        pixels = torch.stack([prepare_observation_image(f, size, region=region) for f in frames])[:, :, None]
        with torch.no_grad():
            latents = encode_normalised(vae, pixels)
            recon = decode_normalised(vae, latents).clamp(-1, 1)
        firsts.append(latents[0])
        to_rgb = lambda x: ((x[:, :, 0].permute(0, 2, 3, 1).numpy() + 1) * 127.5).round().astype(np.uint8)  # noqa: E731
        rows += [np.concatenate(list(to_rgb(pixels)), axis=1), np.concatenate(list(to_rgb(recon)), axis=1)]
    image = np.concatenate(rows, axis=0)
    image = cv2.resize(image, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_NEAREST)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    stacked = torch.stack(firsts)
    pairs = [float((stacked[i] - stacked[j]).abs().mean()) for i in range(len(firsts)) for j in range(i)]
    figures = {"vae_dir": str(args.vae_dir), "camera": args.camera, "region": list(region) if region else None,
               "episodes": [str(f) for f in files], "latent_std": float(stacked.std()),
               "first_frame_latent_l1_between_episodes": pairs,
               "relative_difference": float(np.mean(pairs) / max(float(stacked.std()), 1e-8)) if pairs else None}
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps({k: figures[k] for k in ("latent_std", "relative_difference")}, indent=2))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
