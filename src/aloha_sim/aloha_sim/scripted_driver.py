"""Drive scripted demonstration episodes through ROS topics, as a policy would.

For each episode: reset the simulator through its service (which also reports the initial object
poses), plan the scripted joint trajectory from those poses, stream it as 14-D joint commands at the
control rate (or one per observation in lockstep mode), read the stage score from its topic, and
print a line per episode and a summary at the end. Exits when all episodes are done.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from aloha_contract import load_contract
from aloha_contract.ros import qos_profile, time_msg, vector_to_joint_state
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import ResetEpisode
from rclpy.node import Node
from sensor_msgs.msg import JointState

from .scripted import plan_episode
from .sim_node import MODES

SETTLE_S = 0.3  # after the last command, wait for the final stage score to arrive


@dataclass
class EpisodeResult:
    seed: int
    score: float
    stage: str
    success: bool
    steps: int
    wall_s: float


class ScriptedDriver(Node):
    def __init__(self) -> None:
        super().__init__("scripted_driver")
        self.contract = load_contract(self.declare_parameter("contract_file", "").value or None)
        c = self.contract
        # comma-separated task names; the simulator switches task on reset
        self.tasks = [t.strip() for t in str(self.declare_parameter("tasks", "transfer_cube").value).split(",") if t.strip()]
        self.task = self.tasks[0]
        self.episodes = int(self.declare_parameter("episodes", 3).value)
        self.seed_start = int(self.declare_parameter("seed_start", 0).value)
        self.mode = self.declare_parameter("mode", "realtime").value
        if self.mode not in MODES:
            raise ValueError(f"parameter mode:={self.mode} must be one of {MODES}")

        self.pub_command = self.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
        self.create_subscription(StageScore, c.topic("stage_score"), self.on_score, qos_profile(c, "stage_score"))
        self.create_subscription(JointState, c.topic("joint_states"), self.on_state, qos_profile(c, "joint_states"))
        self.reset_client = self.create_client(ResetEpisode, c.service("reset_episode"))

        self.latest_score: StageScore | None = None
        self.plan: np.ndarray | None = None
        self.step = 0
        self.answered_stamp_ns = -1
        self.done = False
        self.timer = self.create_timer(c.control_period_s, self.on_tick) if self.mode == "realtime" else None

    # ---- episode control (called from main) ----
    def start_episode(self, seed: int) -> bool:
        request = ResetEpisode.Request(task=self.task, seed=seed)
        future = self.reset_client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=30.0)
        response = future.result()
        if response is None or not response.success:
            why = response.message if response is not None else "no answer from the simulator within 30 s"
            self.get_logger().error(f"reset of {self.task} seed {seed} failed: {why}")
            return False
        poses = {name: (np.array([p.position.x, p.position.y, p.position.z]),
                        np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]))
                 for name, p in zip(response.object_names, response.object_poses)}
        self.plan = plan_episode(self.task, poses, self.contract)[:response.episode_steps]
        self.step = 0
        self.latest_score = None
        if self.mode == "lockstep":
            # the sim sits at t = 0 waiting for the first command; later ones answer each observation
            self.answered_stamp_ns = 0
            self.send(self.plan[0], time_msg(0.0))
            self.step = 1
        return True

    def send(self, command: np.ndarray, stamp) -> None:
        self.pub_command.publish(vector_to_joint_state(command, self.contract.joint_names, stamp))

    def on_tick(self) -> None:
        if self.plan is not None and self.step < len(self.plan):
            self.send(self.plan[self.step], self.get_clock().now().to_msg())
            self.step += 1

    def on_state(self, msg: JointState) -> None:
        if self.mode != "lockstep" or self.plan is None or self.step >= len(self.plan):
            return
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        if stamp_ns <= self.answered_stamp_ns:
            return
        self.answered_stamp_ns = stamp_ns
        self.send(self.plan[self.step], msg.header.stamp)
        self.step += 1

    def on_score(self, msg: StageScore) -> None:
        self.latest_score = msg

    def run_episode(self, seed: int) -> EpisodeResult | None:
        t0 = time.monotonic()
        if not self.start_episode(seed):
            return None
        while rclpy.ok() and self.step < len(self.plan):
            rclpy.spin_once(self, timeout_sec=0.1)
        settle_until = time.monotonic() + SETTLE_S
        while rclpy.ok() and time.monotonic() < settle_until:
            rclpy.spin_once(self, timeout_sec=0.05)
        score = self.latest_score
        steps = len(self.plan)
        self.plan = None
        if score is None:
            self.get_logger().error("no stage score received from the simulator")
            return EpisodeResult(seed, float("nan"), "", False, steps, time.monotonic() - t0)
        return EpisodeResult(seed, score.score, score.stage, score.success, steps, time.monotonic() - t0)


def format_summary(task: str, results: list[EpisodeResult]) -> str:
    scores = np.array([r.score for r in results], dtype=np.float64)
    lines = [f"{task}: {len(results)} episodes, success {sum(r.success for r in results)}/{len(results)}, "
             f"mean stage score {np.nanmean(scores):.1f}/100" if len(results) else f"{task}: no episodes"]
    if len(results):
        values, counts = np.unique(scores[np.isfinite(scores)], return_counts=True)
        lines.append("score distribution: " + ", ".join(f"{v:.0f}: {n}" for v, n in zip(values, counts)))
        lines.append(f"time per episode: {np.mean([r.wall_s for r in results]):.1f} s")
    return "\n".join(lines)


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = ScriptedDriver()
    exit_code = 0
    try:
        if not node.reset_client.wait_for_service(timeout_sec=30.0):
            node.get_logger().error(f"simulator reset service {node.contract.service('reset_episode')} not "
                                    f"available after 30 s: is the sim node running?")
            exit_code = 1
        else:
            summaries = []
            for task in node.tasks:
                node.task, results = task, []
                for i in range(node.episodes):
                    seed = node.seed_start + i
                    result = node.run_episode(seed)
                    if result is None:
                        exit_code = 1
                        break
                    results.append(result)
                    node.get_logger().info(
                        f"{task} episode {i + 1}/{node.episodes} seed {seed}: stage score {result.score:.0f}/100 "
                        f"({result.stage or 'no stage'}){' SUCCESS' if result.success else ''} "
                        f"[{result.steps} steps, {result.wall_s:.1f} s]")
                summaries.append(format_summary(task, results))
                if exit_code:
                    break
            print("\n".join(["scripted episodes over ROS:", *summaries]), flush=True)
    except KeyboardInterrupt:
        exit_code = 130
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
