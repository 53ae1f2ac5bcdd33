"""Does the frozen VAE keep what the cameras show when frames go in as the policy feeds them?

    python src/cosmos_policy/benchmarks/vae_frames.py --checkpoint runs/crop_export \
        --demos data/heldout_96x128/transfer_cube --json docs/results/vae_frames_crop.json

For the first observation of consecutive held-out episodes (the arms at one start pose, only the objects
elsewhere), each camera's latent is encoded both ways of `NetworkConfig.vae_frames`: "video" (the release:
the whole sequence in one causal pass, each slot 4 repeated frames) and "per_frame" (each slot its own
one-frame video). Printed per mode: how far two episodes' latents of a camera lie apart (mean |difference|,
in units of the normalised latents) and the reconstruction error of that camera's frame (mean |error| in
[-1, 1] pixels). A VAE pretrained on single frames (`pretrain-vae`) only works per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from cosmos_policy.config import VAE_FRAME_MODES
from cosmos_policy.data.datasets import read_episode_record, task_from_path
from cosmos_policy.latent_sequence import decode_slots, encode_sequence
from cosmos_policy.policy import CosmosPolicy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True, help="its VAE, layout and regions of interest are used")
    p.add_argument("--demos", type=Path, required=True, help="folder of held-out episodes")
    p.add_argument("--episodes", type=int, default=6)
    p.add_argument("--json", type=Path, help="also write the figures here")
    args = p.parse_args(argv)

    policy = CosmosPolicy.from_checkpoint(args.checkpoint)
    layout, vae = policy.layout, policy.model.vae
    files = sorted(args.demos.glob("episode_*.hdf5"), key=lambda f: int(f.stem.split("_")[1]))[:args.episodes]
    if len(files) < 2:
        print(f"--demos {args.demos}: need at least 2 episode_*.hdf5 files", file=sys.stderr)
        return 2
    images = []
    for path in files:
        record = read_episode_record(path, layout.cameras)
        frames = record.frames.read([0])
        task = str(record.attrs.get("task_description") or task_from_path(path))
        obs = {"images": {cam: frames[cam][0] for cam in layout.cameras}, "proprio": record.proprio[0], "task": task}
        images.append(policy.prepare(obs).images)
    images = torch.cat(images)  # (N, n_cams, 3, S, S)
    figures: dict = {"checkpoint": str(args.checkpoint), "checkpoint_vae_frames": policy.model.network_config.vae_frames,
                     "episodes": [str(f) for f in files], "modes": {}}
    with torch.no_grad():
        for mode in VAE_FRAME_MODES:
            latents = encode_sequence(vae, layout, images, vae_frames=mode)
            pixels = decode_slots(vae, latents, mode)
            per_cam = {}
            for i, cam in enumerate(layout.cameras):
                k = layout.index("image", cam)
                z = latents[:, :, k]
                apart = float((z[1:] - z[:-1]).abs().mean())
                error = float((pixels[:, :, k] - images[:, i]).abs().mean())
                per_cam[cam] = {"latent_difference_between_episodes": apart, "latent_std": float(z.std()),
                                "reconstruction_error": error}
                print(f"{mode:>9}  {cam:<16} episodes apart {apart:.4f}  reconstruction |error| {error:.3f}")
            figures["modes"][mode] = per_cam
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2) + "\n")
    ratio = {cam: figures["modes"]["per_frame"][cam]["latent_difference_between_episodes"]
             / max(figures["modes"]["video"][cam]["latent_difference_between_episodes"], 1e-12)
             for cam in layout.cameras}
    print("per_frame / video, episodes apart: " + ", ".join(f"{cam} {r:.1f}x" for cam, r in ratio.items()))
    return 0 if np.isfinite(list(ratio.values())).all() else 1


if __name__ == "__main__":
    sys.exit(main())
