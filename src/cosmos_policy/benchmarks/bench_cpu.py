"""Latency per action chunk on this CPU: direct sampling, N candidates, best-of-N planning. Prints, never asserts.

Run: .venv/bin/python src/cosmos_policy/benchmarks/bench_cpu.py [--network tiny|small] [--checkpoint DIR]
         [--candidates 8] [--runs 5] [--threads 2]
Random weights of a preset (`--network`, default tiny), or a trained checkpoint (`--checkpoint`: the shipped
`small` policy is checkpoints/aloha_sim_default; it then scores its own proposals, which times planning
exactly, since the planning model has the base's network).
"""

from __future__ import annotations

import argparse
import os

import torch

from cosmos_policy.latency import benchmark_policy, format_table, random_policy, synthetic_observation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="tiny", help="preset with random weights (default tiny)")
    parser.add_argument("--checkpoint", default="", help="a trained checkpoint instead of random weights")
    parser.add_argument("--candidates", type=int, default=8, help="best-of-N proposals (default 8)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", default="aloha")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.checkpoint:
        from cosmos_policy.policy import CosmosPolicy

        policy, what = CosmosPolicy.from_checkpoint(args.checkpoint, device="cpu"), args.checkpoint
        obs = synthetic_observation(policy, task=next(iter(policy.text_cache.texts)))  # a task it was trained on
    else:
        policy, what = random_policy(args.network, args.layout, "cpu"), f"{args.network} config (random weights)"
        obs = synthetic_observation(policy)
    net, layout = policy.model.network_config, policy.layout
    print(f"{what} on CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), layout "
          f"{layout.name}: {layout.num_latent_frames} latent frames of {net.latent_channels}x{net.latent_size}x"
          f"{net.latent_size}, fp32, median of {args.runs} runs after 1 warm-up")
    rows = benchmark_policy(policy, obs, runs=args.runs, candidates=args.candidates)
    print(format_table(rows))


if __name__ == "__main__":
    main()
