"""Latency per action chunk of the tiny config on this CPU (random weights). Prints figures, never asserts.

Run: .venv/bin/python src/cosmos_policy/benchmarks/bench_cpu_tiny.py [--runs 5] [--layout aloha] [--threads 2]
"""

from __future__ import annotations

import argparse
import os

import torch

from cosmos_policy.latency import benchmark_policy, format_table, random_policy, synthetic_observation


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layout", default="aloha")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    policy = random_policy("tiny", args.layout, "cpu")
    net, layout = policy.model.network_config, policy.layout
    print(f"tiny config on CPU ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads), layout "
          f"{layout.name}: {layout.num_latent_frames} latent frames of {net.latent_channels}x{net.latent_size}x"
          f"{net.latent_size}, fp32, median of {args.runs} runs after 1 warm-up")
    rows = benchmark_policy(policy, synthetic_observation(policy), runs=args.runs)
    print(format_table(rows))


if __name__ == "__main__":
    main()
