"""Bag write rate of `rollout_recorder record` for three 480x640 rgb8 cameras at 50 Hz, raw and JPEG-compressed.
Prints figures, never asserts.

Runs the record node's per-message path (``bags.BagRecording.add``, what its writer thread does with each
serialised message it received) on synthetic camera frames, without DDS: the figures say whether the bag
writer keeps up with the robot (``x real time`` >= 1 on one core), not what the middleware costs (see
src/aloha_sim/benchmarks/ros_camera_throughput.py for that). Optionally times bag-to-episode on the raw bag.

Run: .venv/bin/python src/rollout_recorder/benchmarks/bench_bags.py [--seconds 2] [--jpeg-quality 90] [--convert]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from aloha_contract import load_contract
from rollout_recorder.bags import BagEpisodeOptions, BagRecording, bag_size_bytes, bag_to_episodes, record_topics
from rollout_recorder.typestore import make_typestore

RATE_HZ = 50
HW = (480, 640)


def camera_frames(n: int, cam_index: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Frames with the structure JPEG sees in a scene: smooth shading, a few edges, sensor noise."""
    h, w = HW
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    frames = []
    for k in range(n):
        img = 90 + 60 * np.sin(x / 90 + k * 0.1 + cam_index) + 40 * np.cos(y / 70)
        x0 = 100 + 20 * k % (w - 200)
        img[150:300, x0:x0 + 120] = 220  # an object moving across the table
        rgb = np.stack([img, img * 0.8 + 20, img * 0.6 + 40], axis=-1) + rng.normal(0, 3, (h, w, 3))
        frames.append(np.clip(rgb, 0, 255).astype(np.uint8))
    return frames


def serialised_streams(contract, typestore, ticks: int):
    """Per tick: (topic name, serialised bytes) of one joint state, one command and three camera images."""
    t = typestore.types
    rng = np.random.default_rng(0)

    def header(stamp_ns, frame_id=""):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
            sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)

    frames = {cam: camera_frames(10, i, rng) for i, cam in enumerate(contract.cameras)}
    t0 = time.time_ns()
    for k in range(ticks):
        stamp = t0 + k * 10**9 // RATE_HZ
        q = np.full(14, 0.001 * k)
        js = t["sensor_msgs/msg/JointState"](header=header(stamp), name=contract.joint_names, position=q,
                                             velocity=np.zeros(14), effort=np.zeros(14))
        raw_js = bytes(typestore.serialize_cdr(js, "sensor_msgs/msg/JointState"))
        items = [(contract.topic("joint_states"), raw_js), (contract.topic("joint_commands"), raw_js)]
        for cam in contract.cameras:
            rgb = frames[cam][k % 10]
            img = t["sensor_msgs/msg/Image"](header=header(stamp, cam), height=HW[0], width=HW[1], encoding="rgb8",
                                             is_bigendian=0, step=HW[1] * 3, data=rgb.reshape(-1))
            items.append((contract.camera_topic(cam), bytes(typestore.serialize_cdr(img, "sensor_msgs/msg/Image"))))
        yield items


def bench_write(contract, folder: Path, ticks: int, compress: bool, quality: int) -> dict:
    typestore = make_typestore()
    topics = {t.name: t for t in record_topics(contract, compress_images=compress)}
    streams = list(serialised_streams(contract, typestore, ticks))  # what DDS hands the recorder: built up front
    bag = folder / ("compressed" if compress else "raw")
    rec = BagRecording(bag, list(topics.values()), typestore=typestore, jpeg_quality=quality)
    messages = payload = 0
    wall0, cpu0 = time.perf_counter(), time.process_time()
    for items in streams:
        for name, raw in items:
            rec.add(topics[name], time.time_ns(), raw)
            messages += 1
            payload += len(raw)
    rec.close()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"bag": bag, "messages": messages, "wall_s": wall, "cpu_s": cpu, "payload_mb": payload / 1e6,
            "disk_mb": bag_size_bytes(bag) / 1e6, "bag_seconds": ticks / RATE_HZ}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="seconds of robot data per run (default 2)")
    parser.add_argument("--jpeg-quality", type=int, default=90)
    parser.add_argument("--convert", action="store_true", help="also time bag-to-episode on the raw bag")
    parser.add_argument("--dir", type=Path, default=None, help="where to write the bags (default: a temp folder)")
    args = parser.parse_args()
    contract = load_contract()
    ticks = int(args.seconds * RATE_HZ)
    folder = Path(tempfile.mkdtemp(prefix="bench_bags_", dir=args.dir))
    print(f"{ticks} ticks at {RATE_HZ} Hz: joint state + command + {len(contract.cameras)} x {HW[0]}x{HW[1]} rgb8 "
          f"per tick; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; bags in {folder}")
    print(f"{'mode':<22}{'msgs/s':>9}{'MB/s in':>9}{'MB/s disk':>10}{'MB on disk':>11}{'x real time':>12}"
          f"{'cpu s/s':>9}")
    try:
        results = {}
        for compress in (False, True):
            r = bench_write(contract, folder, ticks, compress, args.jpeg_quality)
            results[compress] = r
            label = f"compressed (JPEG q{args.jpeg_quality})" if compress else "raw"
            print(f"{label:<22}{r['messages'] / r['wall_s']:>9.0f}{r['payload_mb'] / r['wall_s']:>9.0f}"
                  f"{r['disk_mb'] / r['wall_s']:>10.0f}{r['disk_mb']:>11.1f}{r['bag_seconds'] / r['wall_s']:>12.2f}"
                  f"{r['cpu_s'] / r['bag_seconds']:>9.2f}")
        needed = (2 + len(contract.cameras)) * RATE_HZ
        print(f"the robot needs {needed} msgs/s ({len(contract.cameras) * RATE_HZ} images/s, "
              f"{results[False]['payload_mb'] / results[False]['bag_seconds']:.0f} MB/s raw); 'x real time' >= 1 "
              f"keeps up; 'cpu s/s' is the writer's CPU per second of robot data")
        if args.convert:
            t0 = time.perf_counter()
            conv = bag_to_episodes(results[False]["bag"], folder / "episodes", contract,
                                   BagEpisodeOptions(reserve_bytes=0, min_steps=1))
            dt = time.perf_counter() - t0
            steps = sum(e.steps for e in conv.episodes)
            print(f"bag-to-episode (raw bag -> raw HDF5): {steps} steps in {dt:.1f} s = {steps / dt:.0f} steps/s "
                  f"({steps / dt / RATE_HZ:.2f} x real time)")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
