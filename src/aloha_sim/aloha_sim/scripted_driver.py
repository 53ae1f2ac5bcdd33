"""Drive scripted demonstration episodes through ROS topics, as a policy would.

For each episode: reset the simulator through its service (which also reports the initial object
poses), plan the scripted joint trajectory from those poses, stream it as 14-D joint commands at the
control rate (or one per observation in lockstep mode), read the stage score from its topic, and
print a line per episode and a summary at the end. Exits when all episodes are done.
The streaming and the stage score reading live in ``plan_streamer`` (shared with ``aloha_eval``).
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import numpy as np
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node

from aloha_contract import load_contract

from .plan_streamer import CLOCK_MODES, PlanStreamer, ResetError, SimEpisodes, object_poses_from_reset
from .scripted import plan_episode


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
        # comma-separated task names; the simulator switches task on reset
        self.tasks = [t.strip() for t in str(self.declare_parameter("tasks", "transfer_cube").value).split(",") if t.strip()]
        self.task = self.tasks[0]
        self.episodes = int(self.declare_parameter("episodes", 3).value)
        self.seed_start = int(self.declare_parameter("seed_start", 0).value)
        self.mode = self.declare_parameter("mode", "realtime").value
        if self.mode not in CLOCK_MODES:
            raise ValueError(f"parameter mode:={self.mode} must be one of {CLOCK_MODES}")
        self.sim = SimEpisodes(self, self.contract)
        self.streamer = PlanStreamer(self, self.contract, self.mode)

    def run_episode(self, seed: int) -> EpisodeResult | None:
        t0 = time.monotonic()
        try:
            response = self.sim.reset(self.task, seed)
        except ResetError as exc:
            self.get_logger().error(str(exc))
            return None
        plan = plan_episode(self.task, object_poses_from_reset(response), self.contract)[:response.episode_steps]
        self.streamer.play(plan)
        score = self.sim.final_score(self.task, len(plan), self.mode)
        if score is None:
            self.get_logger().error("no stage score received from the simulator")
            return EpisodeResult(seed, float("nan"), "", False, len(plan), time.monotonic() - t0)
        return EpisodeResult(seed, score.score, score.stage, score.success, len(plan), time.monotonic() - t0)


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
        if not node.sim.wait_for_service(30.0):
            node.get_logger().error(f"simulator reset service {node.sim.service_name} not "
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
    except (KeyboardInterrupt, ExternalShutdownException):
        exit_code = 130
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    sys.exit(exit_code)


if __name__ == "__main__":
    main()
