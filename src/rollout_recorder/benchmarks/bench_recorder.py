"""Recording throughput of the recorder node: three cameras + joint states + commands at the control rate.

Prints figures, never asserts. A publisher in this process plays a robot (3 x rgb8 cameras, 480x640 by
default, joint states and commands, all stamped with the tick's time, at the contract's 50 Hz); the recorder
node runs as its own process, as on the robot, and records one episode through its RecordEpisode service.

Figures:
- published ticks/s: what this process managed to send (the baseline, measured in the same run);
- recorded rows/s and rows / published ticks: what the episode holds, against that baseline;
- dropped frames per camera: rows whose frame is marked not fresh (``frame_valid`` false);
- the recorder process's CPU (user + system time over the recording, in cores);
- finalisation: the STOP call's answer time, which comes once the file is complete and renamed.

Run: .venv/bin/python src/rollout_recorder/benchmarks/bench_recorder.py [--seconds 10] [--size 480x640]
     [--compress] [--domain 210]
On a shared 2-core machine the publisher and the recorder compete for the same cores: read the ratio
against the published baseline, not the absolute rate.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (and its finished children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def recorder_command(out_dir: Path, height: int, width: int, compress: bool) -> list[str]:
    from ament_index_python.packages import get_package_prefix
    exe = Path(get_package_prefix("rollout_recorder")) / "lib" / "rollout_recorder" / "recorder_node"
    params = {"out_dir": str(out_dir), "image_height": height, "image_width": width,
              "compress": str(compress).lower(), "auto_record_policy": "false"}
    return [str(exe), "--ros-args", *(arg for k, v in params.items() for arg in ("-p", f"{k}:={v}"))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="episode length (default 10)")
    parser.add_argument("--size", default="480x640", help="camera HxW (default 480x640, the contract's)")
    parser.add_argument("--compress", action="store_true", help="the recorder JPEG-encodes frames")
    parser.add_argument("--domain", type=int, default=210, help="ROS_DOMAIN_ID of this run (default 210)")
    args = parser.parse_args()
    height, width = (int(v) for v in args.size.lower().split("x"))
    os.environ["ROS_DOMAIN_ID"] = str(args.domain)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")

    import rclpy
    from sensor_msgs.msg import Image, JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile, time_msg, vector_to_joint_state
    from rollout_recorder.episode_file import open_episode_file
    from rollout_recorder.record_client import RecordClient

    contract = load_contract()
    period = contract.control_period_s
    with tempfile.TemporaryDirectory(prefix="bench_recorder_") as tmp:
        recorder = subprocess.Popen(recorder_command(Path(tmp), height, width, args.compress),
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        rclpy.init()
        node = rclpy.create_node("bench_recorder_robot")
        client = RecordClient(contract, node_name="bench_recorder_client")
        try:
            pub_state = node.create_publisher(JointState, contract.topic("joint_states"),
                                              qos_profile(contract, "joint_states"))
            pub_cmd = node.create_publisher(JointState, contract.topic("joint_commands"),
                                            qos_profile(contract, "joint_commands"))
            pub_cams = {cam: node.create_publisher(Image, contract.camera_topic(cam), qos_profile(contract, "images"))
                        for cam in contract.cameras}
            if not client.wait_for_service(60.0):
                print("the recorder did not come up within 60 s", file=sys.stderr)
                return 1
            rng = np.random.default_rng(0)
            frames = {cam: rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for cam in contract.cameras}
            images = {cam: Image(height=height, width=width, encoding="rgb8", step=width * 3,
                                 data=frames[cam].tobytes()) for cam in contract.cameras}
            qpos = np.zeros(len(contract.joint_names))

            def tick(t: float) -> None:
                stamp = time_msg(t)
                pub_state.publish(vector_to_joint_state(qpos, contract.joint_names, stamp))
                pub_cmd.publish(vector_to_joint_state(qpos, contract.joint_names, stamp))
                for cam, msg in images.items():
                    msg.header.stamp = stamp
                    msg.header.frame_id = contract.camera_frame_id(cam)
                    pub_cams[cam].publish(msg)

            # discovery: publish until the recorder receives the streams, then record
            warm_until = time.monotonic() + 3.0
            while time.monotonic() < warm_until:
                tick(time.time())
                time.sleep(period)
            answer = client.call("start", task="bench", source="benchmark")
            if not answer.success:
                print(f"start refused: {answer.message}", file=sys.stderr)
                return 1
            cpu0, t0 = process_cpu_s(recorder.pid), time.monotonic()
            published, next_s = 0, t0
            while time.monotonic() - t0 < args.seconds:
                tick(time.time())
                published += 1
                next_s += period
                time.sleep(max(0.0, next_s - time.monotonic()))
            wall = time.monotonic() - t0
            cpu = process_cpu_s(recorder.pid) - cpu0
            stop_t = time.monotonic()
            answer = client.call("stop")
            finalise_s = time.monotonic() - stop_t
            if not answer.success:
                print(f"stop refused: {answer.message}", file=sys.stderr)
                return 1
            path = Path(answer.episode_path)
            recorder_rates = answer.camera_rates_hz
            with open_episode_file(path) as f:
                rows = int(f["observations/qpos"].shape[0])
                valid = {cam: np.asarray(f[f"observations/frame_valid/{cam}"][()]).astype(bool)
                         for cam in contract.cameras if f"observations/frame_valid/{cam}" in f}
                if os.environ.get("BENCH_DEBUG"):
                    print("".join("1" if v else "0" for v in valid[contract.cameras[0]]))
                size_mb = path.stat().st_size / 1e6
        finally:
            client.close()
            node.destroy_node()
            rclpy.shutdown()
            recorder.terminate()
            recorder.wait(timeout=20)

    print(f"recorder: 3 x {height}x{width} rgb8 + joint states + commands at {1 / period:.0f} Hz for "
          f"{wall:.1f} s{' (JPEG in the recorder)' if args.compress else ''}; {os.cpu_count()} cores")
    print(f"  published (baseline)  {published / wall:6.1f} ticks/s")
    print(f"  recorded              {rows / wall:6.1f} rows/s = {rows / max(published, 1):.2f} of the published ticks")
    for cam, flags in valid.items():
        print(f"  {cam:16s}      {int((~flags).sum()):5d} dropped frames of {len(flags)} rows "
              f"({100 * (~flags).mean():.1f}%); the recorder received {recorder_rates.get(cam, 0.0):.1f} frames/s")
    print(f"  recorder CPU          {cpu / wall:6.2f} cores")
    print(f"  finalisation          {finalise_s * 1000:6.0f} ms (STOP answered, file complete; {size_mb:.0f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
