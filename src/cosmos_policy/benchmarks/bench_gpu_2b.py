"""Full 2B config on one CUDA GPU (random weights, bf16): chunk latency, prefix encode, best-of-N.

Prints figures, never asserts.

Targets on one H100: 5-step chunk <= 0.15 s; best-of-8 with 3 x 5 world-model x value ensembles <= 1.5 s.
Run: .venv/bin/python src/cosmos_policy/benchmarks/bench_gpu_2b.py [--runs 10] [--compile] [--sdpa flash]
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch

from cosmos_policy.latency import benchmark_policy, format_table, random_policy, synthetic_observation
from cosmos_policy.networks import count_parameters

TARGETS = "targets (one H100): 5-step chunk <= 150 ms; best-of-8 + 3x5 <= 1500 ms"


def sdpa_context(choice: str):
    """Pin the attention kernel (the DiT passes no attention mask, so flash attention applies)."""
    if choice == "auto":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    backend = {"flash": SDPBackend.FLASH_ATTENTION, "cudnn": SDPBackend.CUDNN_ATTENTION,
               "efficient": SDPBackend.EFFICIENT_ATTENTION}[choice]
    return sdpa_kernel([backend])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--layout", default="aloha")
    parser.add_argument("--compile", action="store_true", help="torch.compile the DiT")
    parser.add_argument("--sdpa", default="auto", choices=["auto", "flash", "cudnn", "efficient"])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--preset", default="2b", help="network preset ('tiny' only to smoke-test this script)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit(f"bench_gpu_2b: CUDA is not available (torch {torch.__version__}); run it on a machine with an "
                 f"NVIDIA GPU and a CUDA build of torch")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device: {name}, torch {torch.__version__}, preset {args.preset}, layout {args.layout}, bf16 weights, "
          f"compile={args.compile}, sdpa={args.sdpa}")
    policy = random_policy(args.preset, args.layout, device, torch.bfloat16)
    if args.compile:
        policy.model.dit = torch.compile(policy.model.dit)
    net, layout = policy.model.network_config, policy.layout
    print(f"DiT {count_parameters(policy.model.dit) / 1e9:.3f} B parameters, VAE "
          f"{count_parameters(policy.model.vae) / 1e6:.1f} M, {layout.num_latent_frames} latent frames x "
          f"{(net.latent_size // 2) ** 2} tokens, median of {args.runs} runs after 1 warm-up")
    with sdpa_context(args.sdpa):
        rows = benchmark_policy(policy, synthetic_observation(policy), runs=args.runs)
    print(format_table(rows))
    if device.type == "cuda":
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    print(TARGETS)


if __name__ == "__main__":
    main()
