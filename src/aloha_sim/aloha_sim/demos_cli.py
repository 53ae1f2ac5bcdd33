"""``aloha_sim_demos``: record scripted simulated demonstrations as ALOHA/ACT HDF5 episodes.

Example: ``aloha_sim_demos --task transfer_cube --episodes 50 --out data/sim_transfer_cube --compress``

Episode i is ``episode_<i>.hdf5``, recorded with seed ``--seed-start + i``. An interrupted run (Ctrl-C, a
crash) is continued with ``--resume``: numbering and seeds go on after the last complete episode, so the
folder ends up as an uninterrupted run would have written it. Exit status: 0 done, 2 a mistake the
message explains, 130 Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from rollout_recorder.episode_file import (
    EPISODE_NAME,
    Episode,
    attr_value,
    episode_index,
    open_episode_file,
    write_act_episode,
)

from .env import AlohaSimEnv
from .perturb import JointNoise
from .rollout import Rollout, run_scripted_episode

PROG = "aloha_sim_demos"
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a SIGINT death
TMP_SUFFIX = ".tmp"  # write_act_episode writes episode_<i>.hdf5.tmp, then renames it
LARGE_EPISODE_BYTES = 250e6  # uncompressed episodes above this get a --compress hint (480x640: ~1.1 GB)


class UsageError(Exception):
    """A mistake in the command line that the user fixes by changing it; the message says how."""


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
    p.add_argument("--joint-noise", type=float, default=0.0, metavar="STD_RAD",
                   help="execute the plan plus smooth random arm-joint offsets of this std (rad) during the approach, "
                        "recording the plan as the action (DART-style; default 0: the clean plan). On clean scripted "
                        "demos the arm's pose gives the demo away and a policy copies it (perturb.py)")
    p.add_argument("--joint-noise-tau", type=float, default=JointNoise.tau_s, metavar="SECONDS",
                   help="correlation time of the --joint-noise offsets (default %(default)s s)")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="continue an interrupted run in --out: record the episodes after the last complete "
                               "one (same seeds as an uninterrupted run) and delete its leftover .tmp files")
    existing.add_argument("--overwrite", action="store_true", help="replace existing episode files in --out")
    return p


def episode_from_rollout(rollout: Rollout, env: AlohaSimEnv, compress: bool,
                         noise: JointNoise | None = None) -> Episode:
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
    if noise is not None:  # the executed commands differed from the recorded actions by these offsets
        attrs |= {"joint_noise_std_rad": noise.std_rad, "joint_noise_tau_s": noise.tau_s}
    return Episode(qpos=rollout.qpos, qvel=rollout.qvel, effort=rollout.effort, action=rollout.action,
                   images=rollout.images, attrs=attrs)


def finished_episodes(folder: Path) -> dict[int, Path]:
    """{i: episode_<i>.hdf5} of the finished episodes in ``folder`` (written whole, then renamed: complete)."""
    if not folder.is_dir():
        return {}
    found = {episode_index(p): p for p in folder.glob("episode_*.hdf5")}
    return dict(sorted((i, p) for i, p in found.items() if i is not None))


def remove_leftover_tmp(folder: Path) -> list[Path]:
    """Delete this writer's ``episode_<i>.hdf5.tmp`` files: episodes whose write was cut off, never readable.

    ``.partial`` files are not ours (the live recorder's, recoverable) and stay.
    """
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.glob(f"episode_*.hdf5{TMP_SUFFIX}") if EPISODE_NAME.match(p.name)]
    for path in leftovers:
        path.unlink()
    return leftovers


def check_resume_matches(path: Path, index: int, task: str, seed_start: int) -> None:
    """Refuse to continue a folder recorded for another task or with other seeds (it would mix two runs)."""
    with open_episode_file(path) as f:
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
    if attrs.get("task") not in (None, task):
        raise UsageError(f"--resume: {path} is a {attrs['task']} episode, not --task {task}; "
                         f"use another --out for {task}")
    seed = attrs.get("seed")
    if seed is not None and int(seed) != seed_start + index:
        raise UsageError(f"--resume: {path.name} was recorded with seed {seed}, but --seed-start {seed_start} "
                         f"gives {seed_start + index}; rerun with --seed-start {int(seed) - index}")


def first_episode_to_record(args: argparse.Namespace) -> int:
    """Where this run starts in --out, after refusing to mix with or silently replace what is there."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a folder for episode_<i>.hdf5 files")
    if args.overwrite or args.resume:
        removed = remove_leftover_tmp(out)
        if removed:
            print(f"removed {len(removed)} leftover temporary file(s) of an interrupted run: "
                  f"{', '.join(p.name for p in removed)}", file=sys.stderr)
    if args.overwrite:
        return 0
    if args.resume:
        finished = finished_episodes(out)
        if not finished:
            return 0
        last = max(finished)
        check_resume_matches(finished[last], last, args.task, args.seed_start)
        return last + 1
    contents = sorted(out.iterdir()) if out.is_dir() else []
    if contents:
        raise UsageError(f"--out {out} is not empty ({len(contents)} entries, e.g. {contents[0].name}); pass "
                         f"--resume to continue its episodes, --overwrite to replace them, or choose another --out")
    return 0


def episode_size_warning(image_size: tuple[int, int], cameras: int, steps: int, episodes: int) -> str | None:
    """A --compress hint when uncompressed frames make each episode large (raw RGB: H x W x 3 bytes a frame)."""
    height, width = image_size
    per_episode = height * width * 3 * cameras * steps
    if per_episode < LARGE_EPISODE_BYTES:
        return None
    return (f"uncompressed episodes of {cameras} camera(s) at {height}x{width} x {steps} steps take about "
            f"{per_episode / 1e9:.1f} GB each ({per_episode * episodes / 1e9:.1f} GB for {episodes}); "
            f"pass --compress to store JPEG frames, as ALOHA records them")


def _warn_size(args: argparse.Namespace, env: AlohaSimEnv, episodes: int) -> None:
    if args.compress or not env.render_enabled:
        return
    steps = min(args.max_steps, env.episode_steps) if args.max_steps else env.episode_steps
    warning = episode_size_warning(env.image_size, len(env.cameras), steps, episodes)
    if warning:
        print(f"{PROG}: warning: {warning}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.episodes <= 0:
        print(f"{PROG}: error: --episodes {args.episodes}: expected a positive number", file=sys.stderr)
        return EXIT_USAGE
    try:
        args.noise = JointNoise(args.joint_noise, args.joint_noise_tau) if args.joint_noise else None
    except ValueError as exc:
        print(f"{PROG}: error: --joint-noise: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        first = first_episode_to_record(args)
        if first >= args.episodes:
            print(f"all {args.episodes} episodes are already in {args.out}; nothing to do "
                  f"(raise --episodes to record more)")
            return 0
        if first > 0:
            print(f"resuming {args.out} at episode {first} (seed {args.seed_start + first})")
        env = AlohaSimEnv(args.task, cameras=args.cameras, image_size=args.image_size,
                          render=args.cameras is None or len(args.cameras) > 0)
    except (UsageError, ValueError, OSError) as exc:  # ValueError: an unknown task or camera, a bad episode file
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted before recording; nothing written", file=sys.stderr)
        return EXIT_INTERRUPTED
    _warn_size(args, env, args.episodes - first)
    return record(args, env, first)


def record(args: argparse.Namespace, env: AlohaSimEnv, first: int) -> int:
    """Record episodes first..episodes-1; on Ctrl-C say what is on disk and how to continue."""
    scores: list[int] = []
    durations: list[float] = []
    written = 0
    interrupted = False
    bar = tqdm(range(first, args.episodes), desc=f"{args.task} demos", unit="ep")
    try:
        for i in bar:
            t0 = time.perf_counter()
            rollout = run_scripted_episode(env, args.seed_start + i, max_steps=args.max_steps, noise=args.noise)
            scores.append(rollout.score.score)
            if rollout.score.success or not args.skip_failed:
                write_act_episode(args.out / f"episode_{i}.hdf5",
                                  episode_from_rollout(rollout, env, args.compress, args.noise), compress=args.compress)
                written += 1
            durations.append(time.perf_counter() - t0)
            bar.set_postfix(success=f"{np.mean(np.array(scores) == 100):.0%}", score=rollout.score.score)
    except KeyboardInterrupt:
        interrupted = True
        bar.close()
        remove_leftover_tmp(args.out)  # the episode being written when Ctrl-C came: rerun with --resume
    finally:
        env.close()
    if scores:
        print_summary(args, scores, durations, written, env, first)
    if interrupted:
        on_disk = sum(1 for i in finished_episodes(args.out) if i < args.episodes)
        print(f"{PROG}: interrupted: {on_disk} of {args.episodes} episodes written to {args.out}; "
              f"rerun with --resume (and without --overwrite) to continue", file=sys.stderr)
        return EXIT_INTERRUPTED
    return 0


def print_summary(args: argparse.Namespace, scores: list[int], durations: list[float], written: int,
                  env: AlohaSimEnv, first: int = 0) -> None:
    counts = Counter(scores)
    levels = [0] + [s.score for s in env.task.stages]
    cams = ", ".join(env.cameras) if env.render_enabled else "none"
    seeds = f"{args.seed_start + first}..{args.seed_start + first + len(scores) - 1}"
    print(f"\n{args.task}: {len(scores)} episodes (seeds {seeds}), "
          f"cameras {cams} at {env.image_size[0]}x{env.image_size[1]}, compress={args.compress}")
    n_ok = counts.get(100, 0)
    print(f"  success (score 100 at the end): {n_ok}/{len(scores)} = {n_ok / len(scores):.1%}")
    print("  stage score distribution: " + ", ".join(f"{lvl}: {counts.get(lvl, 0)}" for lvl in levels))
    print(f"  time per episode: mean {np.mean(durations):.2f} s, max {np.max(durations):.2f} s")
    print(f"  written: {written} files to {args.out}")


if __name__ == "__main__":
    raise SystemExit(main())
