"""Render parity between machines: demos rendered on one machine (a GPU's EGL) train a policy that runs on
another (Mesa's EGL on a CPU); this saves one seeded frame per camera there and compares it here.

    python src/aloha_sim/benchmarks/render_parity.py save --out frames_gpu.npz     # on each machine
    python src/aloha_sim/benchmarks/render_parity.py compare frames_gpu.npz frames_cpu.npz

Prints figures (mean and max absolute difference per camera, in 0-255 levels) and the render time.
Measured between an H200's NVIDIA EGL and this 2-core CPU's Mesa EGL: mean 0.003-0.06, max 1 (docs/results.md).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

import aloha_sim  # noqa: F401  (MUJOCO_GL before mujoco)
from aloha_sim.env import AlohaSimEnv


def save(out: str, task: str, seed: int, height: int, width: int, repeats: int) -> None:
    with AlohaSimEnv(task, image_size=(height, width)) as env:  # closes the GL context before exit
        env.reset(seed=seed)
        frames = env.render()
        np.savez_compressed(out, **frames)
        start = time.perf_counter()
        for _ in range(repeats):
            env.render()
        per_render_ms = 1000 * (time.perf_counter() - start) / max(repeats, 1)
    print(f"{task} seed {seed}, {height}x{width}, MUJOCO_GL={os.environ.get('MUJOCO_GL')}: cameras "
          f"{sorted(frames)} saved to {out}; {per_render_ms:.1f} ms per render of all cameras")


def compare(a_path: str, b_path: str) -> None:
    a, b = np.load(a_path), np.load(b_path)
    if sorted(a.files) != sorted(b.files):
        raise SystemExit(f"the two files hold different cameras: {sorted(a.files)} vs {sorted(b.files)}")
    print(f"{'camera':18s} {'mean |diff|':>12s} {'max |diff|':>11s} {'pixels > 8':>11s}")
    for cam in sorted(a.files):
        if a[cam].shape != b[cam].shape:
            raise SystemExit(f"{cam}: shapes {a[cam].shape} vs {b[cam].shape}: save both at one --size")
        diff = np.abs(a[cam].astype(np.int16) - b[cam].astype(np.int16))
        print(f"{cam:18s} {diff.mean():12.3f} {int(diff.max()):11d} {float((diff.max(-1) > 8).mean()):11.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("save", help="render the first frame of a seeded episode, every camera, to .npz")
    s.add_argument("--out", required=True)
    s.add_argument("--task", default="transfer_cube")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--size", default="96x128", help="HEIGHTxWIDTH (the demos' size)")
    s.add_argument("--repeats", type=int, default=50, help="renders timed after the saved one")
    c = sub.add_parser("compare", help="per-camera differences of two saved renders")
    c.add_argument("a")
    c.add_argument("b")
    args = parser.parse_args()
    if args.command == "save":
        height, width = (int(v) for v in args.size.lower().split("x"))
        save(args.out, args.task, args.seed, height, width, args.repeats)
    else:
        compare(args.a, args.b)


if __name__ == "__main__":
    main()
