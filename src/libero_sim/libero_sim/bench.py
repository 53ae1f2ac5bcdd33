"""``libero_bench``: LIBERO env steps/s (physics only, cameras every step, cameras every 16 steps) and the policy
loop rate of a libero-layout checkpoint (chunk latency -> chunks/s and control steps/s at 16 steps per chunk).

    libero_bench                                        # a tiny random checkpoint, built on the fly
    libero_bench --checkpoint runs/libero_tiny --steps 64 --report eval/libero_libero_tiny.json

`--report` adds the rates measured through ROS by libero_eval (lockstep: every step a command, a state, a score).
Prints figures only; it never asserts. Needs .venv-libero (the env runs in its worker) and the main venv (torch).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

from . import protocol
from .worker_client import LiberoWorker

CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}


def env_rates(worker: LiberoWorker, steps: int, render_steps: int, suite: str, task_id: int) -> dict[str, float]:
    """Steps/s of the worker (pipe included) without cameras, with cameras every step, and every 16 steps."""
    noop = np.array([0, 0, 0, 0, 0, 0, -1.0])
    t0 = time.perf_counter()
    obs = worker.reset(suite, task_id, 0, settle_steps=protocol.SETTLE_STEPS, settle_command=noop)
    rates = {"reset_s (scene build + 10 settle steps)": time.perf_counter() - t0}
    t0 = time.perf_counter()
    for _ in range(steps):
        worker.step(noop, render=False)
    rates["steps/s, cameras off"] = steps / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(render_steps):
        worker.step(noop, render=True)
    rates["steps/s, 2 cameras every step"] = render_steps / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    n = 2 * protocol.CHUNK_EXECUTE_STEPS
    for i in range(n):
        worker.step(noop, render=(i + 1) % protocol.CHUNK_EXECUTE_STEPS == 0)
    rates["steps/s, 2 cameras every 16 steps (evaluation)"] = n / (time.perf_counter() - t0)
    rates["_proprio"], rates["_images"] = obs.proprio, obs.images
    return rates


def policy_rates(checkpoint: str, observation: dict, task: str, chunks: int, device: str) -> dict[str, float]:
    """Chunk latency of the checkpoint on a real LIBERO observation, and the loop rate it allows."""
    from cosmos_policy.policy import CosmosPolicy

    policy = CosmosPolicy.from_checkpoint(checkpoint, device=device, camera_hw=None)
    policy.warmup(task)
    prepare_s, infer_s = [], []
    for i in range(chunks):
        t0 = time.perf_counter()
        prepared = policy.prepare({**observation, "task": task})
        t1 = time.perf_counter()
        chunk = policy.infer(prepared, seed=195 + i)
        prepare_s.append(t1 - t0)
        infer_s.append(time.perf_counter() - t1)
    latency = float(np.median(np.add(prepare_s, infer_s)))
    return {"chunk shape": tuple(np.asarray(chunk.actions).shape), "prepare s (median)": float(np.median(prepare_s)),
            "infer s (median)": float(np.median(infer_s)), "chunk latency s (median)": latency,
            "chunks/s": 1.0 / latency,
            "policy-bound control steps/s (16 per chunk)": protocol.CHUNK_EXECUTE_STEPS / latency}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="", help="libero-layout checkpoint (default: a tiny random one)")
    parser.add_argument("--suite", default="libero_spatial")
    parser.add_argument("--task-id", type=int, default=0)
    parser.add_argument("--steps", type=int, default=64, help="physics-only steps timed")
    parser.add_argument("--render-steps", type=int, default=8, help="steps timed with cameras every step")
    parser.add_argument("--chunks", type=int, default=5, help="policy chunks timed")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report", default="", help="a libero_eval report: print its rates through ROS too")
    args = parser.parse_args(argv)

    worker = LiberoWorker(CAMERAS, protocol.IMAGE_HW)
    try:
        task = next(t["language"] for t in worker.tasks([args.suite]) if t["task_id"] == args.task_id)
        env = env_rates(worker, args.steps, args.render_steps, args.suite, args.task_id)
    finally:
        worker.close()
    observation = {"images": env.pop("_images"), "proprio": env.pop("_proprio")}
    print(f"LIBERO env ({args.suite}/{args.task_id}, 256x256 agentview + wrist, worker in .venv-libero):")
    for key, value in env.items():
        print(f"  {key:50s} {value:8.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = args.checkpoint
        if not checkpoint:
            from .tiny_checkpoint import build_tiny_checkpoint

            checkpoint = str(build_tiny_checkpoint(Path(tmp) / "tiny", [task]))
        policy = policy_rates(checkpoint, observation, task, args.chunks, args.device)
    print(f"policy loop ({args.checkpoint or 'tiny random libero checkpoint'}, {args.device}, 5 action steps):")
    for key, value in policy.items():
        print(f"  {key:50s} {value:8.2f}" if isinstance(value, float) else f"  {key:50s} {value}")
    if args.report:
        timing = json.loads(Path(args.report).read_text())["timing"]
        print(f"through ROS ({args.report}): {timing['steps']} steps in {timing['wall_s']:.1f} s = "
              f"{timing['steps_per_s']:.2f} control steps/s; median chunk latency {timing['chunk_latency_ms_median']:.0f}"
              f" ms; median tick period {timing['tick_period_ms_median']:.0f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
