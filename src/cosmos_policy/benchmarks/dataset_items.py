"""Lazy dataset cost: construction time and memory, and ms per item, on ALOHA-sized (480 x 640) episodes.

    python src/cosmos_policy/benchmarks/dataset_items.py [--episodes 2] [--steps 40] [--jpeg]

Prints figures; also the RAM the old eager loading would have held (every frame at the network size).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.act_episode import Episode, write_act_episode
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache


def rss_mb() -> float:
    """Resident memory of this process in MiB (Linux)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * 4096 / 2 ** 20


def write_episodes(folder: Path, count: int, steps: int, cameras, compress: bool) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        base = np.linspace(0, 255, 640, dtype=np.float32)[None, None, :, None]
        images = {cam: np.broadcast_to(base + 20 * c + np.arange(steps)[:, None, None, None], (steps, 480, 640, 3))
                  .clip(0, 255).astype(np.uint8) for c, cam in enumerate(cameras)}
        arrays = {k: rng.normal(size=(steps, 14)).astype(np.float32) for k in ("qpos", "qvel", "effort", "action")}
        paths.append(write_act_episode(folder / f"episode_{i}.hdf5", Episode(**arrays, images=images),
                                       compress=compress))
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--jpeg", action="store_true", help="JPEG-compressed images (as ALOHA records them)")
    parser.add_argument("--items", type=int, default=50)
    args = parser.parse_args()
    layout, network = load_layout("aloha"), NetworkConfig.preset_config("2b")
    spec = SampleSpec.from_configs(layout, network)
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_episodes(Path(tmp) / "task", args.episodes, args.steps, layout.cameras, args.jpeg)
        before = rss_mb()
        start = time.perf_counter()
        stats = statistics_from_dict(compute_dataset_statistics(paths))
        demos = load_episodes(paths, spec, is_demo=True)
        cache = build_text_cache({e.task for e in demos}, spec.text_dim, max_length=16)
        dataset = EpisodeDataset(demos, spec, stats, cache)
        built_s, grown_mb = time.perf_counter() - start, rss_mb() - before
        indices = np.random.default_rng(0).integers(0, len(dataset), args.items)
        dataset[int(indices[0])]
        start = time.perf_counter()
        for index in indices:
            dataset[int(index)]
        per_item_ms = (time.perf_counter() - start) / len(indices) * 1000
    frames = args.episodes * args.steps * len(layout.cameras)
    eager_mb = frames * spec.image_hw[0] * spec.image_hw[1] * 3 / 2 ** 20
    print(f"{args.episodes} episodes x {args.steps} steps x {len(layout.cameras)} cameras, 480x640 "
          f"{'JPEG' if args.jpeg else 'raw'} -> {spec.image_hw[0]}x{spec.image_hw[1]}")
    print(f"  construction: {built_s:.2f} s, RSS +{grown_mb:.1f} MiB (eager frames would hold {eager_mb:.0f} MiB)")
    print(f"  item fetch:   {per_item_ms:.1f} ms/item (mean of {len(indices)} random items, one process)")


if __name__ == "__main__":
    main()
