"""Training throughput of the tiny (or 2B) model on random batches: fp32 vs bf16 autocast. Prints figures.

    python src/cosmos_policy/benchmarks/train_throughput.py [--network tiny] [--device cpu] [--steps 5]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="tiny", choices=["tiny", "2b"])
    parser.add_argument("--layout", default="aloha")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    network, layout = NetworkConfig.preset_config(args.network), load_layout(args.layout)
    torch.manual_seed(0)
    model = CosmosPolicyModel(network, layout).to(device)
    optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=1e-4)
    batch = random_batch(layout, network, args.batch_size, device)
    print(f"{args.network} on {device}, batch {args.batch_size}, layout {layout.name}")
    for precision in ("fp32", "bf16"):
        autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else nullcontext()
        times = []
        for step in range(args.steps + 1):
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            with autocast:
                loss, _ = model.training_loss(batch, generator=torch.Generator().manual_seed(step))
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - start)
        per_step = sorted(times[1:])[len(times[1:]) // 2]
        print(f"  {precision}: {per_step * 1000:8.1f} ms/step (median of {args.steps}), "
              f"{args.batch_size / per_step:6.1f} samples/s, loss {float(loss.detach()):.3f}")


if __name__ == "__main__":
    main()
