"""A scriptable stand-in for the policy node (and optionally the simulator) for run_policy / aloha_eval tests.

Test fixture only. It serves RunPolicy at the contract's action name, executes fake chunks, fills the
result's timing arrays with known values, and can end runs with a chosen reason (a fault), reject
goals, and play a minimal simulator (ResetEpisode service + transient-local StageScore topic).
Every goal and cancel is printed on one line for the test to read.

    fake_run_policy_server.py [--end-reason stale_sensor --fault-at-step 20] [--reject] [--with-sim]
"""

import argparse
import sys
import time

import rclpy
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.node import Node
from rclpy.utilities import remove_ros_args

from aloha_contract import load_contract
from aloha_contract.ros import qos_profile
from aloha_interfaces.action import RunPolicy
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import ResetEpisode

CHUNK_LATENCIES_MS = (10.0, 20.0, 30.0, 40.0)   # cycled over chunks
TICK_PERIODS_MS = (19.0, 21.0, 20.0, 24.0)      # cycled over steps
OBS_TO_COMMAND_MS = 15.0
STALL_TICKS = 2


class FakeServer(Node):
    def __init__(self, args):
        super().__init__("fake_run_policy")
        self.args = args
        self.contract = load_contract()
        group = ReentrantCallbackGroup()
        self.server = ActionServer(self, RunPolicy, self.contract.action("run_policy"), execute_callback=self.execute,
                                   goal_callback=self.on_goal, cancel_callback=lambda _: CancelResponse.ACCEPT,
                                   callback_group=group)
        # subscribed like the policy node, so that clients that wait for its sensor subscriptions see them
        from sensor_msgs.msg import Image, JointState
        self.create_subscription(JointState, self.contract.topic("joint_states"), lambda _: None,
                                 qos_profile(self.contract, "joint_states"))
        self.create_subscription(Image, self.contract.camera_topic(self.contract.cameras[0]), lambda _: None,
                                 qos_profile(self.contract, "images"))
        self.task_name = ""
        self.pub_score = None
        if args.with_sim:
            self.pub_score = self.create_publisher(StageScore, self.contract.topic("stage_score"),
                                                   qos_profile(self.contract, "stage_score"))
            self.create_service(ResetEpisode, self.contract.service("reset_episode"), self.on_reset,
                                callback_group=group)

    def log(self, text):
        print(text, flush=True)

    def publish_score(self, step, score):
        if self.pub_score is not None:
            self.pub_score.publish(StageScore(task=self.task_name, episode_step=step, score=float(score),
                                              stage=f"stage_{int(score)}" if score else "",
                                              success=score >= 100, source="sim"))

    def on_reset(self, request, response):
        from aloha_sim.tasks import load_tasks
        tasks = load_tasks()
        if request.task not in tasks:
            response.success, response.message = False, f"unknown task '{request.task}'"
            return response
        self.task_name = request.task
        response.success = True
        response.task_description = tasks[request.task].description
        response.episode_steps = self.args.episode_steps
        self.log(f"reset: task={request.task} seed={request.seed}")
        self.publish_score(0, 0.0)
        return response

    def on_goal(self, goal):
        self.log(f"goal: task='{goal.task}' mode={goal.mode} max_steps={goal.max_steps} seed={goal.seed}")
        if self.args.reject or not goal.task:
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def execute(self, handle):
        goal = handle.request
        max_steps = goal.max_steps or 100
        result = RunPolicy.Result()
        step, chunk, score = 0, 0, 0.0
        latencies, periods = [], []
        reason = RunPolicy.Result.END_MAX_STEPS
        while step < max_steps:
            if not rclpy.ok():
                return result  # shutting down (Ctrl-C): nothing can be published any more
            if handle.is_cancel_requested:
                self.log(f"canceled at step {step}")
                reason = RunPolicy.Result.END_CANCELED
                break
            if self.args.fault_at_step and step >= self.args.fault_at_step:
                reason = getattr(RunPolicy.Result, f"END_{self.args.end_reason.upper()}")
                break
            time.sleep(self.args.chunk_period)
            n = min(self.args.chunk_steps, max_steps - step)
            periods += [TICK_PERIODS_MS[(step + k) % len(TICK_PERIODS_MS)] for k in range(n)]
            latencies.append(CHUNK_LATENCIES_MS[chunk % len(CHUNK_LATENCIES_MS)])
            step += n
            chunk += 1
            score = min(100.0, 25.0 * chunk) if self.args.score_per_chunk else 0.0
            self.publish_score(step, score)
            try:
                handle.publish_feedback(RunPolicy.Feedback(step=step, chunk_index=chunk,
                                                           chunk_latency_ms=latencies[-1],
                                                           predicted_value=step / max_steps,
                                                           stage_score=score if self.pub_score else -1.0))
            except Exception:  # noqa: BLE001  (the context went down between the check and the publish)
                return result
        if reason == RunPolicy.Result.END_CANCELED:
            handle.canceled()
        elif reason in (RunPolicy.Result.END_MAX_STEPS, RunPolicy.Result.END_SUCCEEDED):
            handle.succeed()
        else:
            handle.abort()
        result.end_reason = reason
        result.end_detail = f"fake: {self.args.end_reason} at step {step}" if reason >= 5 else f"{step} steps"
        result.steps_executed, result.chunks_executed = step, chunk
        result.final_stage_score = score if self.pub_score else -1.0
        result.final_value = step / max_steps
        result.chunk_latency_ms = latencies
        result.obs_to_command_ms = [OBS_TO_COMMAND_MS] * chunk
        result.tick_period_ms = periods
        result.stall_ticks = STALL_TICKS
        self.log(f"result: end_reason={reason} steps={step}")
        return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--end-reason", default="stale_sensor", help="the fault that ends runs (--fault-at-step)")
    parser.add_argument("--fault-at-step", type=int, default=0, help="end every run with --end-reason at this step")
    parser.add_argument("--reject", action="store_true", help="reject every goal")
    parser.add_argument("--with-sim", action="store_true", help="also serve ResetEpisode and publish StageScore")
    parser.add_argument("--episode-steps", type=int, default=40, help="episode length the fake reset reports")
    parser.add_argument("--chunk-steps", type=int, default=10)
    parser.add_argument("--chunk-period", type=float, default=0.02, help="seconds per fake chunk")
    parser.add_argument("--score-per-chunk", action="store_true", help="stage score +25 per chunk (else 0)")
    args = parser.parse_args(remove_ros_args(sys.argv)[1:])
    rclpy.init(args=sys.argv)
    node = FakeServer(args)
    executor = MultiThreadedExecutor()
    print("fake RunPolicy server ready", flush=True)
    try:
        rclpy.spin(node, executor=executor)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
