"""Training throughput and where the time goes: data item, frozen-VAE encode, DiT train step. Prints figures.

    python src/cosmos_policy/benchmarks/train_throughput.py [--network small] [--batch-size 16] [--steps 3]
        [--threads 1] [--precision fp32|bf16] [--compile] [--data data/demos_96x128/transfer_cube]

Per sample: the data item (read + resize + augment; with --data, else not counted), the VAE encode of the
whole latent sequence (batched), and one DiT training step (forward, backward, AdamW) on given latents.
Then samples/s without latent caching (every sample encoded: the release's pipeline) and with cached
latents in steady state (trainer `--cache-latents`: the VAE runs once per sample and version).
On a shared 2-core CPU use --threads 1: oversubscribed OpenMP threads spin and run many times slower.
"""

from __future__ import annotations

import argparse
import time
from contextlib import nullcontext

import torch

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.diffusion import CosmosPolicyModel


def random_batch(layout, network, batch_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    size, cams = network.image_size_px, len(layout.cameras)
    return {
        "images": torch.rand(batch_size, cams, 3, size, size, device=device) * 2 - 1,
        "future_images": torch.rand(batch_size, cams, 3, size, size, device=device) * 2 - 1,
        "proprio": torch.rand(batch_size, layout.proprio_dim, device=device) * 2 - 1,
        "future_proprio": torch.rand(batch_size, layout.proprio_dim, device=device) * 2 - 1,
        "actions": torch.rand(batch_size, layout.action_chunk, layout.action_dim, device=device) * 2 - 1,
        "value": torch.rand(batch_size, device=device) * 2 - 1,
        "text_embeddings": torch.randn(batch_size, network.text_max_tokens, network.text_embed_dim, device=device),
        "text_mask": torch.ones(batch_size, network.text_max_tokens, dtype=torch.bool, device=device),
        "objective": torch.arange(batch_size, device=device) % 3,
    }


def _median_time(fn, runs: int, device: torch.device) -> float:
    times = []
    for i in range(runs + 1):  # the first call pays one-off costs
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def item_seconds(folder: str, layout, network, items: int) -> float:
    """Seconds per augmented training item read from an episode folder (JPEG / raw ACT files)."""
    from cosmos_policy.data.datasets import (
        EpisodeDataset,
        SampleSpec,
        compute_dataset_statistics,
        find_episode_files,
        load_episodes,
    )
    from cosmos_policy.data.statistics import statistics_from_dict
    from cosmos_policy.data.text import build_text_cache

    files = find_episode_files(folder)[:4]
    spec = SampleSpec.from_configs(layout, network)
    episodes = load_episodes(files, spec, is_demo=True)
    stats = statistics_from_dict(compute_dataset_statistics(files))
    cache = build_text_cache({e.task for e in episodes}, network.text_embed_dim, max_length=network.text_max_tokens)
    dataset = EpisodeDataset(episodes, spec, stats, cache)
    dataset[0]
    step = max(1, len(dataset) // items)
    start = time.perf_counter()
    for i in range(items):
        dataset[(i * step) % len(dataset)]
    return (time.perf_counter() - start) / items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="small", choices=["tiny", "small", "medium", "2b"])
    parser.add_argument("--layout", default="aloha")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=3, help="timed repetitions (median)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the DiT (inductor; on a CPU it needs a C++ compiler); compile time not timed")
    parser.add_argument("--data", help="an episode folder: also time the data items (read + augment)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    network, layout = NetworkConfig.preset_config(args.network), load_layout(args.layout)
    torch.manual_seed(0)
    model = CosmosPolicyModel(network, layout).to(device)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    if args.compile:
        model.dit.compile()  # in place, as the trainer's --compile
    batch = random_batch(layout, network, args.batch_size, device)
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16) if args.precision == "bf16" else nullcontext())
    b = args.batch_size
    params = sum(p.numel() for p in model.trainable_parameters())
    print(f"{args.network} ({params / 1e6:.2f} M DiT parameters) on {device}, {torch.get_num_threads()} thread(s), "
          f"batch {b}, {args.precision}{', compiled' if args.compile else ''}, layout {layout.name}, "
          f"{network.image_size_px} px")

    with torch.no_grad():
        latents = model.encode_batch(batch)

    def encode():
        with torch.no_grad(), autocast:
            model.encode_batch(batch)

    def train_step():
        with autocast:
            loss, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(0), latents=latents)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    vae = _median_time(encode, args.steps, device) / b
    dit = _median_time(train_step, args.steps, device) / b
    item = item_seconds(args.data, layout, network, 4 * b) if args.data else 0.0
    uncached = item + vae + dit
    print(f"  data item (read + augment): {item * 1000:7.1f} ms/sample" + ("" if args.data else "  (no --data)"))
    print(f"  VAE encode (frozen):        {vae * 1000:7.1f} ms/sample")
    print(f"  DiT train step:             {dit * 1000:7.1f} ms/sample")
    print(f"  without latent cache: {1 / uncached:6.1f} samples/s  (VAE {100 * vae / uncached:.0f} %, "
          f"DiT {100 * dit / uncached:.0f} %, data {100 * item / uncached:.0f} %)")
    print(f"  cached latents, steady state: {1 / dit:6.1f} samples/s  (DiT only; data and VAE of new samples "
          f"run in DataLoader workers)")


if __name__ == "__main__":
    main()
