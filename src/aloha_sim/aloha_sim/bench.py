"""``aloha_sim_bench``: simulator steps per second, physics only and with cameras, as a table.

Each configuration resets once, warms up, then times ``--steps`` env.step calls that follow the
scripted plan (moving arms, contacts). Prints figures only; it never asserts.
"""

from __future__ import annotations

import argparse
import time

from .demos_cli import parse_image_size
from .env import AlohaSimEnv
from .scripted import plan_episode


def measure(task: str, cameras: list[str] | None, image_size: tuple[int, int] | None, steps: int,
            warmup: int, seed: int) -> float:
    """Steps per second of ``AlohaSimEnv.step`` (rendering included when cameras are given)."""
    env = AlohaSimEnv(task, cameras=cameras, image_size=image_size, render=cameras is None or bool(cameras))
    try:
        env.reset(seed)
        plan = plan_episode(env.task, env.object_poses(), env.contract)
        for t in range(warmup):
            env.step(plan[t % len(plan)])
        t0 = time.perf_counter()
        for t in range(warmup, warmup + steps):
            env.step(plan[t % len(plan)])
        return steps / (time.perf_counter() - t0)
    finally:
        env.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="aloha_sim_bench", description=__doc__.splitlines()[0])
    p.add_argument("--task", default="transfer_cube")
    p.add_argument("--steps", type=int, default=200, help="timed steps per configuration")
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", type=parse_image_size, nargs="*", default=[(224, 224), (480, 640)],
                   help="image sizes HEIGHTxWIDTH to time with all contract cameras")
    args = p.parse_args(argv)

    rows = [("physics only", "-", measure(args.task, [], None, args.steps, args.warmup, args.seed))]
    for size in args.sizes:
        # None = the contract's cameras (cam_high, cam_left_wrist, cam_right_wrist)
        sps = measure(args.task, None, size, args.steps, args.warmup, args.seed)
        rows.append(("3 cameras", f"{size[0]}x{size[1]}", sps))

    print(f"\naloha_sim_bench: task {args.task}, {args.steps} timed steps after {args.warmup} warm-up, "
          f"one control period (0.02 s sim) per step")
    print(f"{'configuration':<16}{'image':>10}{'steps/s':>10}{'x real time':>13}")
    for name, size, sps in rows:
        print(f"{name:<16}{size:>10}{sps:>10.1f}{sps * 0.02:>13.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
