"""End-to-end camera and joint-state throughput of the simulator node over ROS 2 (prints, never asserts).

Starts the sim node in its own process (realtime mode, 3 cameras) and subscribes from this one with the
contract's QoS, for each image size: per-topic message rate, one-way latency (receive time minus the
header stamp; both processes share this machine's clock), and how many camera frames were skipped.

    source env.sh && python src/aloha_sim/benchmarks/ros_camera_throughput.py --seconds 10
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import threading
import time

import numpy as np
import rclpy
from ament_index_python.packages import get_package_prefix
from rclpy.executors import SingleThreadedExecutor
from sensor_msgs.msg import Image, JointState

from aloha_contract import load_contract
from aloha_contract.ros import qos_profile


def measure(size: tuple[int, int], seconds: float, warmup_s: float, domain: int) -> dict[str, dict[str, float]]:
    contract = load_contract()
    exe = os.path.join(get_package_prefix("aloha_sim"), "lib", "aloha_sim", "sim_node")
    env = {**os.environ, "ROS_DOMAIN_ID": str(domain), "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    sim = subprocess.Popen([exe, "--ros-args", "-p", f"image_height:={size[0]}", "-p", f"image_width:={size[1]}"],
                           env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain)
    node = rclpy.create_node("camera_throughput_bench", context=context)
    samples: dict[str, list[tuple[float, float]]] = {}
    recording = threading.Event()

    def on_message(topic):
        def callback(msg):
            if recording.is_set():
                now = time.time()
                stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
                samples.setdefault(topic, []).append((now, now - stamp))
        return callback

    topics = {contract.camera_topic(c): (Image, "images") for c in contract.cameras}
    topics[contract.topic("joint_states")] = (JointState, "joint_states")
    for topic, (msg_type, qos) in topics.items():
        node.create_subscription(msg_type, topic, on_message(topic), qos_profile(contract, qos))
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    spinner = threading.Thread(target=executor.spin, daemon=True)
    spinner.start()
    try:
        time.sleep(warmup_s)
        recording.set()
        time.sleep(seconds)
        recording.clear()
    finally:
        os.killpg(sim.pid, signal.SIGINT)
        sim.wait(timeout=20)
        executor.shutdown(timeout_sec=2)
        node.destroy_node()
        rclpy.shutdown(context=context)
    results = {}
    for topic in topics:
        got = samples.get(topic, [])
        if len(got) < 2:
            results[topic] = {"rate_hz": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"), "n": len(got)}
            continue
        times, latency = np.array(got).T
        results[topic] = {"rate_hz": (len(got) - 1) / (times[-1] - times[0]), "n": len(got),
                          "p50_ms": float(np.percentile(latency, 50) * 1e3),
                          "p99_ms": float(np.percentile(latency, 99) * 1e3)}
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup-s", type=float, default=5.0)
    parser.add_argument("--sizes", default="224x224,480x640", help="comma-separated HxW")
    parser.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0")) or 42)
    args = parser.parse_args()
    print(f"{'size':>9} {'topic':<45} {'rate Hz':>8} {'p50 ms':>8} {'p99 ms':>8} {'msgs':>6}")
    for size_text in args.sizes.split(","):
        size = tuple(int(v) for v in size_text.split("x"))
        for topic, r in measure(size, args.seconds, args.warmup_s, args.domain).items():
            print(f"{size_text:>9} {topic:<45} {r['rate_hz']:8.1f} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} {r['n']:6d}")


if __name__ == "__main__":
    main()
