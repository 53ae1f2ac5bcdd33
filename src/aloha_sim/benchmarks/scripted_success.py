"""Success rate of the scripted demonstrations, executed through the joint-controlled scene.

Run: ``.venv/bin/python src/aloha_sim/benchmarks/scripted_success.py --seeds 100 --render-check 3``
Physics only for the rate; ``--render-check K`` re-runs the first K seeds with 3 cameras at 224x224
and reports whether the scores match. Prints figures only.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import numpy as np
from tqdm import tqdm

import aloha_sim  # noqa: F401  (MUJOCO_GL before mujoco)
from aloha_sim.env import AlohaSimEnv
from aloha_sim.rollout import run_scripted_episode


def success_rate(task: str, seeds: range) -> tuple[list[int], list[float], list[float]]:
    env = AlohaSimEnv(task, render=False)
    scores, plan_s, run_s = [], [], []
    for seed in tqdm(seeds, desc=f"{task} physics only", unit="ep"):
        r = run_scripted_episode(env, seed, record=False)
        scores.append(r.score.score)
        plan_s.append(r.plan_s)
        run_s.append(r.run_s)
    env.close()
    return scores, plan_s, run_s


def render_check(task: str, seeds: range, physics_scores: list[int]) -> list[tuple[int, int, int, float]]:
    env = AlohaSimEnv(task, image_size=(224, 224))
    rows = []
    for seed, expected in zip(seeds, physics_scores):
        t0 = time.perf_counter()
        r = run_scripted_episode(env, seed, record=True)
        rows.append((seed, r.score.score, expected, time.perf_counter() - t0))
    env.close()
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="*", default=["transfer_cube", "insertion"])
    p.add_argument("--seeds", type=int, default=100)
    p.add_argument("--seed-start", type=int, default=0)
    p.add_argument("--render-check", type=int, default=0)
    args = p.parse_args()
    seeds = range(args.seed_start, args.seed_start + args.seeds)
    lines = []
    for task in args.tasks:
        scores, plan_s, run_s = success_rate(task, seeds)
        counts = Counter(scores)
        failed = [s for s, sc in zip(seeds, scores) if sc != 100]
        lines.append(f"{task}: success {counts.get(100, 0)}/{len(scores)} = {counts.get(100, 0) / len(scores):.1%}; "
                     f"scores {dict(sorted(counts.items()))}; failed seeds {failed[:20]}")
        lines.append(f"  per episode, physics only: plan {np.mean(plan_s):.2f} s + run {np.mean(run_s):.2f} s")
        if args.render_check:
            for seed, got, expected, dt in render_check(task, seeds[:args.render_check], scores):
                lines.append(f"  rendered 3x224x224 seed {seed}: score {got} (physics only {expected}), "
                             f"{dt:.1f} s per episode")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
