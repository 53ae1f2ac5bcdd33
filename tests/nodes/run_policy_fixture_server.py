"""A RunPolicy action server for interface tests: executes fake 'chunks' of a fixed length.

Test fixture only (the product's server is the policy node): it exercises the action's goal,
feedback, cancel and result fields across processes without needing a model.
"""

import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node

from aloha_contract import load_contract
from aloha_interfaces.action import RunPolicy

CHUNK_STEPS = 10
CHUNK_PERIOD_S = 0.05


class FixtureServer(Node):
    def __init__(self):
        super().__init__("run_policy_fixture")
        contract = load_contract()
        self.server = ActionServer(self, RunPolicy, contract.action("run_policy"), execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT)

    def on_goal(self, goal: RunPolicy.Goal) -> GoalResponse:
        if not goal.task:
            self.get_logger().warning("rejecting goal without task text")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def execute(self, handle):
        goal = handle.request
        max_steps = goal.max_steps or 100
        result = RunPolicy.Result()
        step, chunk = 0, 0
        while step < max_steps:
            if handle.is_cancel_requested:
                handle.canceled()
                result.end_reason = RunPolicy.Result.END_CANCELED
                result.end_detail = "cancelled by client"
                break
            t0 = time.monotonic()
            time.sleep(CHUNK_PERIOD_S)
            step = min(step + CHUNK_STEPS, max_steps)
            chunk += 1
            handle.publish_feedback(RunPolicy.Feedback(
                step=step, chunk_index=chunk, chunk_latency_ms=(time.monotonic() - t0) * 1e3,
                predicted_value=step / max_steps, stage_score=-1.0))
        else:
            handle.succeed()
            result.end_reason = RunPolicy.Result.END_MAX_STEPS
            result.end_detail = f"{goal.task}: {max_steps} steps"
        result.steps_executed = step
        result.chunks_executed = chunk
        result.final_stage_score = -1.0
        result.final_value = step / max_steps
        return result


def main():
    rclpy.init(args=sys.argv)
    node = FixtureServer()
    executor = MultiThreadedExecutor()
    try:
        rclpy.spin(node, executor=executor)
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
