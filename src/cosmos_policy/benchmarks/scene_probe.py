"""Is the scene's layout in the policy's input, and does the policy use it?

At the first step of every demonstration the arms stand at the same start pose, so the expert's later joint
targets are a function of where the objects lie, which only the cameras show. For each episode's first
observation this fits a ridge regression from the checkpoint's clean image latents (the frozen VAE's output,
what the DiT is conditioned on) to the expert's action at a few later steps, and reports its cross-validated
error per joint next to:
- "mean": always predicting the mean expert action (an input that carries no layout);
- "policy": the policy's own first chunk, at the rows the chunk covers (steps < chunk length).

A latent probe far below "mean" says the layout is in the latents; a policy near "mean" then says the
network does not read it (underfitting), not that the VAE hides it.

    python src/cosmos_policy/benchmarks/scene_probe.py --checkpoint runs/pf_all_w3_export \
        --demos data/demos_96x128/insertion --demos data/demos_more_96x128/insertion --json eval/probe.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def ridge_cv_error(x: np.ndarray, y: np.ndarray, folds: int = 5, alphas=(1e-2, 1e-1, 1.0, 10.0, 100.0),
                   seed: int = 0) -> tuple[np.ndarray, float]:
    """Mean absolute error per target column of a ridge fit, cross-validated (k folds), at the best alpha."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    parts = np.array_split(order, folds)
    best: tuple[float, np.ndarray, float] | None = None
    for alpha in alphas:
        errors = np.zeros_like(y)
        for k in range(folds):
            test = parts[k]
            train = np.concatenate([parts[j] for j in range(folds) if j != k])
            mx, my = x[train].mean(0), y[train].mean(0)
            sx = x[train].std(0) + 1e-6
            a = (x[train] - mx) / sx
            w = np.linalg.solve(a.T @ a + alpha * len(train) * np.eye(a.shape[1]), a.T @ (y[train] - my))
            errors[test] = np.abs(((x[test] - mx) / sx) @ w + my - y[test])
        per_col = errors.mean(0)
        if best is None or per_col.mean() < best[0]:
            best = (float(per_col.mean()), per_col, alpha)
    return best[1], best[2]


def mean_cv_error(y: np.ndarray, folds: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    parts = np.array_split(rng.permutation(len(y)), folds)
    errors = np.zeros_like(y)
    for k in range(folds):
        train = np.concatenate([parts[j] for j in range(folds) if j != k])
        errors[parts[k]] = np.abs(y[parts[k]] - y[train].mean(0))
    return errors.mean(0)


def augmented(policy, frames: dict, variant: str, generator: torch.Generator) -> torch.Tensor:
    """(cameras, 3, h, w) in [-1, 1]: each camera's view as a training sample of it would look."""
    from cosmos_policy.data.augment import augment_images, camera_view, frames_to_tensor, to_model_range

    size = (policy.model.network_config.image_size_px,) * 2
    views = [augment_images(frames_to_tensor(camera_view(frames[cam], policy.layout.crop_box(cam), size)), size,
                            generator, variant) for cam in policy.layout.cameras]
    return to_model_range(torch.stack(views))


@torch.no_grad()
def main(argv: list[str] | None = None) -> int:
    from cosmos_policy.data.augment import AUGMENT_VARIANTS
    from cosmos_policy.data.datasets import read_episode_record, task_from_path
    from cosmos_policy.policy import CosmosPolicy

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--demos", action="append", required=True, type=Path, help="folder of episodes (repeatable)")
    p.add_argument("--steps", default="49,99,149,199", help="expert action steps to predict (comma-separated)")
    p.add_argument("--policy-action-steps", type=int, default=10, help="denoising steps of the policy's chunk")
    p.add_argument("--max-episodes", type=int, default=0, help="at most this many episodes (0: all)")
    p.add_argument("--augment", choices=["none", *sorted(AUGMENT_VARIANTS)], default="none",
                   help="probe latents of training-augmented frames (one draw per camera and episode) instead of "
                        "the centre crop inference uses: how much of the layout survives the augmentation")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)

    steps = [int(s) for s in args.steps.split(",")]
    policy = CosmosPolicy.from_checkpoint(args.checkpoint)
    layout = policy.layout
    files = [f for d in args.demos for f in sorted(d.glob("episode_*.hdf5"))]
    if args.max_episodes:
        files = files[: args.max_episodes]
    if len(files) < 10:
        print(f"need at least 10 episodes, got {len(files)}", file=sys.stderr)
        return 2
    slots = [layout.index("image", cam) for cam in layout.cameras]
    generator = torch.Generator().manual_seed(0)
    features, targets, own = [], [], []
    for i, path in enumerate(files):
        record = read_episode_record(path, layout.cameras)
        frames = record.frames.read([0])
        obs = {"images": {cam: frames[cam][0] for cam in layout.cameras}, "proprio": record.proprio[0],
               "task": str(record.attrs.get("task_description") or task_from_path(path))}
        prepared = policy.prepare(obs)
        images, proprio, _ = policy._to_device(prepared)
        if args.augment != "none":
            images = augmented(policy, obs["images"], args.augment, generator)[None].to(images.device)
        latents = policy.encode_observation(images, proprio)[0]
        features.append(torch.stack([latents[:, s] for s in slots]).flatten().cpu().numpy())
        targets.append(np.stack([record.actions[min(s, len(record.actions) - 1)] for s in steps]))
        chunk = policy.infer(prepared, num_steps=args.policy_action_steps, seed=i).actions
        own.append(np.stack([chunk[s] if s < len(chunk) else np.full(chunk.shape[1], np.nan) for s in steps]))
        print(f"\r{i + 1}/{len(files)} episodes", end="", file=sys.stderr)
    print(file=sys.stderr)
    x = np.asarray(features, dtype=np.float64)
    y = np.asarray(targets, dtype=np.float64).reshape(len(files), -1)
    own_err = np.abs(np.asarray(own, dtype=np.float64).reshape(len(files), -1) - y).mean(0)
    probe, alpha = ridge_cv_error(x, y)
    mean = mean_cv_error(y)
    joints = y.shape[1] // len(steps)
    result = {"checkpoint": args.checkpoint, "episodes": len(files), "alpha": alpha, "augment": args.augment,
              "steps": {}}
    print(f"{len(files)} episodes, latent features {x.shape[1]}, ridge alpha {alpha}; mean |error| rad per joint")
    for k, s in enumerate(steps):
        cols = slice(k * joints, (k + 1) * joints)
        entry = {"mean": mean[cols].round(4).tolist(), "latent_probe": probe[cols].round(4).tolist(),
                 "policy": None if np.isnan(own_err[cols]).all() else own_err[cols].round(4).tolist()}
        result["steps"][s] = entry
        for name, row in entry.items():
            if row is not None:
                print(f"step {s:4d} {name:>12s} avg {np.mean(row):.3f} | " + " ".join(f"{v:.3f}" for v in row))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
