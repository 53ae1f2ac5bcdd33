"""``aloha_sim_demos``: record scripted simulated demonstrations as ALOHA/ACT HDF5 episodes.

Example: ``aloha_sim_demos --task transfer_cube --episodes 50 --out data/sim_transfer_cube --compress``
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from rollout_recorder.episode_file import Episode, write_act_episode
from tqdm import tqdm

from .env import AlohaSimEnv
from .rollout import Rollout, run_scripted_episode


def parse_image_size(text: str) -> tuple[int, int]:
    """``480x640`` -> (480, 640) as (height, width)."""
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"image size '{text}': expected HEIGHTxWIDTH, e.g. 480x640 or 224x224") from None
    if height <= 0 or width <= 0:
        raise argparse.ArgumentTypeError(f"image size '{text}': height and width must be positive")
    return height, width


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="aloha_sim_demos", description=__doc__.splitlines()[0])
    p.add_argument("--task", required=True, help="task name in tasks.yaml (transfer_cube, insertion)")
    p.add_argument("--episodes", type=int, required=True, help="number of episodes to record")
    p.add_argument("--out", type=Path, required=True, help="output folder for episode_<i>.hdf5")
    p.add_argument("--seed-start", type=int, default=0,
                   help="seed of the first episode (episode i uses seed-start + i)")
    p.add_argument("--image-size", type=parse_image_size, default=None,
                   help="HEIGHTxWIDTH of every camera (default: the contract's, 480x640)")
    p.add_argument("--cameras", nargs="*", default=None,
                   help="contract camera names (default: all contract cameras); give none for no images")
    p.add_argument("--compress", action="store_true", help="store JPEG frames (quality 50) as ALOHA does")
    p.add_argument("--max-steps", type=int, default=None,
                   help="truncate every episode to this many steps (smoke tests; default: the task's length)")
    p.add_argument("--skip-failed", action="store_true", help="do not write episodes that end below score 100")
    p.add_argument("--overwrite", action="store_true", help="replace existing episode files in --out")
    return p


def episode_from_rollout(rollout: Rollout, env: AlohaSimEnv, compress: bool) -> Episode:
    score = rollout.score
    attrs = {
        "sim": True,
        "compress": compress,
        "task": env.task.name,
        "task_description": env.task.description,
        "seed": rollout.seed,
        "success": bool(score.success),
        "success_score": score.score / 100.0,
        "stage_score": score.score,
        "stages_reached": list(score.reached),
        "stage_names": env.task.stage_names,
        "control_period_s": env.contract.control_period_s,
    }
    return Episode(qpos=rollout.qpos, qvel=rollout.qvel, effort=rollout.effort, action=rollout.action,
                   images=rollout.images, attrs=attrs)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes <= 0:
        print(f"--episodes {args.episodes}: expected a positive number", file=sys.stderr)
        return 2
    targets = [args.out / f"episode_{i}.hdf5" for i in range(args.episodes)]
    existing = [p for p in targets if p.exists()]
    if existing and not args.overwrite:
        print(f"{len(existing)} episode files already exist in {args.out} (e.g. {existing[0].name}); "
              f"use another --out or pass --overwrite", file=sys.stderr)
        return 2
    env = AlohaSimEnv(args.task, cameras=args.cameras, image_size=args.image_size,
                      render=args.cameras is None or len(args.cameras) > 0)
    scores: list[int] = []
    durations: list[float] = []
    written = 0
    try:
        bar = tqdm(range(args.episodes), desc=f"{args.task} demos", unit="ep")
        for i in bar:
            t0 = time.perf_counter()
            rollout = run_scripted_episode(env, args.seed_start + i, max_steps=args.max_steps)
            scores.append(rollout.score.score)
            if rollout.score.success or not args.skip_failed:
                write_act_episode(targets[i], episode_from_rollout(rollout, env, args.compress),
                                  compress=args.compress)
                written += 1
            durations.append(time.perf_counter() - t0)
            bar.set_postfix(success=f"{np.mean(np.array(scores) == 100):.0%}", score=rollout.score.score)
    finally:
        env.close()
    print_summary(args, scores, durations, written, env)
    return 0


def print_summary(args: argparse.Namespace, scores: list[int], durations: list[float], written: int,
                  env: AlohaSimEnv) -> None:
    counts = Counter(scores)
    levels = [0] + [s.score for s in env.task.stages]
    cams = ", ".join(env.cameras) if env.render_enabled else "none"
    print(f"\n{args.task}: {len(scores)} episodes (seeds {args.seed_start}..{args.seed_start + len(scores) - 1}), "
          f"cameras {cams} at {env.image_size[0]}x{env.image_size[1]}, compress={args.compress}")
    n_ok = counts.get(100, 0)
    print(f"  success (score 100 at the end): {n_ok}/{len(scores)} = {n_ok / len(scores):.1%}")
    print("  stage score distribution: " + ", ".join(f"{lvl}: {counts.get(lvl, 0)}" for lvl in levels))
    print(f"  time per episode: mean {np.mean(durations):.2f} s, max {np.max(durations):.2f} s")
    print(f"  written: {written} files to {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
