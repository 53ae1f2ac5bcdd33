"""A tiny libero-layout checkpoint with random weights, for running the LIBERO graph on a CPU (tests, benchmark).

    libero_tiny_checkpoint --out runs/libero_tiny                 # the 40 task texts of the 4 release suites
    libero_tiny_checkpoint --out runs/libero_tiny --task "pick up the black bowl ..."

It is NOT a trained policy: there are no LIBERO demonstrations on this machine to learn from, so its success rate
is ~0 and says nothing about the method (the paper's 98.5% needs the released checkpoint, imported with
`cosmos-policy import-release`, and a GPU). Its statistics are LIBERO's orders of magnitude (actions in [-1, 1],
end-effector position in metres) and its text embeddings the deterministic test fallback, not T5. What it proves:
the whole path - contract, sim node, policy node, chunking, evaluation - runs with the libero layout.
Needs the main venv (torch, cosmos_policy); task texts come from the LIBERO worker unless given.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from . import protocol

# LIBERO-like ranges for the 9-D proprio: gripper fingers (m), end-effector position (m, world), quaternion
PROPRIO_MIN = [-0.045, -0.045, -0.5, -0.5, 0.6, -1.0, -1.0, -1.0, -1.0]
PROPRIO_MAX = [0.045, 0.045, 0.5, 0.5, 1.6, 1.0, 1.0, 1.0, 1.0]


def build_tiny_checkpoint(out: str | Path, task_texts: list[str], seed: int = 0) -> Path:
    """Write a tiny random libero-layout checkpoint knowing `task_texts` (fallback text embeddings)."""
    import torch

    from cosmos_policy.checkpoint import save_checkpoint
    from cosmos_policy.data.text import build_text_cache
    from cosmos_policy.latency import random_policy

    if not task_texts:
        raise ValueError("task_texts: empty; the policy needs the text of every task it will be asked to run")
    torch.manual_seed(seed)
    policy = random_policy("tiny", "libero", "cpu", seed=seed)
    layout = policy.layout
    statistics = {
        "actions_min": np.full(layout.action_dim, -1.0, np.float32),
        "actions_max": np.full(layout.action_dim, 1.0, np.float32),
        "proprio_min": np.asarray(PROPRIO_MIN, np.float32),
        "proprio_max": np.asarray(PROPRIO_MAX, np.float32),
    }
    cache = build_text_cache(task_texts, policy.model.network_config.text_embed_dim,
                             max_length=policy.model.network_config.text_max_tokens)
    return save_checkpoint(out, policy.model, sampler=policy.sampler, statistics=statistics, text_cache=cache,
                           extra_config={"note": "libero_tiny_checkpoint: random weights, NOT trained (tests only)"})


def release_task_texts(suites: list[str], python: str = "") -> list[str]:
    """The language of every task of `suites`, asked of the LIBERO worker."""
    from .worker_client import LiberoWorker

    worker = LiberoWorker({"agentview": "agentview"}, (64, 64), python=python)
    try:
        return [t["language"] for t in worker.tasks(suites)]
    finally:
        worker.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--task", action="append", default=[], help="a task text (repeatable; default: every task "
                        "of --suites, from the LIBERO worker)")
    parser.add_argument("--suites", default=",".join(protocol.SUITES), help="suites whose tasks to embed")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        texts = args.task or release_task_texts(args.suites.split(","))
        path = build_tiny_checkpoint(args.out, texts, seed=args.seed)
    except Exception as exc:  # one line: the set-up hint of a missing venv, a bad folder
        print(f"[libero_tiny_checkpoint] error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"[libero_tiny_checkpoint] wrote {path} ({len(texts)} task texts; random weights, not a trained policy)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
