"""The policy node across processes, with test-double policies: goals, cancel, preemption, faults, prefetch.

Each test runs the node in its own process on a private ROS domain, against either the MuJoCo sim node or a
fake robot published from the test process (to make a camera go stale or publish the wrong size).
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from ros_harness import wait_until

pytestmark = pytest.mark.ros

SMALL = {"image_height": 48, "image_width": 64}


@pytest.fixture
def contract():
    from aloha_contract import load_contract
    return load_contract()


class CommandLog:
    """Every /aloha/joint_commands message with its arrival time."""

    def __init__(self, node, contract):
        from sensor_msgs.msg import JointState

        from aloha_contract.ros import joint_state_to_vector, qos_profile
        self.lock = threading.Lock()
        self.items: list[tuple[float, np.ndarray]] = []
        names = contract.joint_names

        def store(msg):
            with self.lock:
                self.items.append((time.monotonic(), joint_state_to_vector(msg, names)))
        # a deep queue (the contract's depth 1 is for drivers, which want only the newest): log every message
        qos = qos_profile(contract, "joint_commands")
        qos.depth = 100
        self.sub = node.create_subscription(JointState, contract.topic("joint_commands"), store, qos)

    def since(self, t: float) -> list[np.ndarray]:
        with self.lock:
            return [v for at, v in self.items if at > t]

    def all(self) -> list[np.ndarray]:
        with self.lock:
            return [v for _, v in self.items]


class FakeRobot:
    """Joint states and three cameras at 50 Hz from the test process; a camera can be silenced."""

    def __init__(self, node, contract, *, hw=(48, 64), best_effort=False, wrong_size_camera=None):
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image, JointState

        from aloha_contract.ros import qos_profile
        self.node, self.contract, self.hw = node, contract, hw
        self.silenced: set[str] = set()
        self.wrong_size_camera = wrong_size_camera
        image_qos = qos_profile(contract, "images")
        if best_effort:
            image_qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.BEST_EFFORT)
        self.pub_state = node.create_publisher(JointState, contract.topic("joint_states"),
                                               qos_profile(contract, "joint_states"))
        self.pub_images = {cam: node.create_publisher(Image, contract.camera_topic(cam), image_qos)
                           for cam in contract.cameras}
        self.qpos = np.zeros(14)
        self.qpos[[6, 13]] = 0.5
        self.timer = node.create_timer(0.02, self.tick)

    def tick(self):
        from aloha_contract.ros import rgb_to_image, vector_to_joint_state
        stamp = self.node.get_clock().now().to_msg()
        self.pub_state.publish(vector_to_joint_state(self.qpos, self.contract.joint_names, stamp))
        for cam, pub in self.pub_images.items():
            if cam in self.silenced:
                continue
            hw = (24, 32) if cam == self.wrong_size_camera else self.hw
            pub.publish(rgb_to_image(np.zeros((*hw, 3), np.uint8), stamp, cam))


def action_client(node, contract):
    from rclpy.action import ActionClient

    from aloha_interfaces.action import RunPolicy
    client = ActionClient(node, RunPolicy, contract.action("run_policy"))
    return client


def send_goal(client, feedback=None, **fields):
    from aloha_interfaces.action import RunPolicy
    goal = RunPolicy.Goal(task=fields.pop("task", "transfer_cube"), **fields)
    callback = (lambda fb: feedback.append(fb.feedback)) if feedback is not None else None
    # a goal's answer sent right after discovery can be lost (see RunPolicyClient.send_goal): send again
    for _ in range(3):
        future = client.send_goal_async(goal, feedback_callback=callback)
        if wait_until(future.done, 6):
            break
    assert future.done(), "the policy node answered none of three goals"
    handle = future.result()
    assert handle.accepted
    return handle


def wait_result(handle, timeout_s=60):
    future = handle.get_result_async()
    assert wait_until(future.done, timeout_s), "no result"
    return future.result()


# Staleness limits for tests that are not about staleness: the machine running the suite may be loaded
# enough to pause a 50 Hz publisher for a few hundred ms, which would (rightly) abort a goal.
RELAXED = {"joint_stale_s": 2.0, "camera_stale_s": 2.0, "startup_timeout_s": 15.0}


def reset_sim(node, contract, task="transfer_cube", seed=1000):
    """Reset the simulator: in lockstep it publishes the first observation only then (volatile topics)."""
    from aloha_interfaces.srv import ResetEpisode
    client = node.create_client(ResetEpisode, contract.service("reset_episode"))
    assert client.wait_for_service(timeout_sec=30)
    future = client.call_async(ResetEpisode.Request(task=task, seed=seed))
    assert wait_until(future.done, 30) and future.result().success
    return future.result()


def start_policy(start_node, fake, **params):
    params = {**RELAXED, **params}
    node = start_node("cosmos_policy_ros", "policy_node", params={"fake_policy": fake, **params})
    assert node.wait_for_output("policy ready", 30), node.output
    return node


def start_sim(start_node, mode="realtime"):
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "mode": mode})
    assert sim.wait_for_output("ALOHA sim ready", 60), sim.output
    return sim


def test_goal_runs_chunks_to_a_result(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    policy = start_policy(start_node, "hold:execute_steps=25")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30), policy.output
    commands = CommandLog(test_node, contract)
    feedback: list = []
    result = wait_result(send_goal(client, feedback, max_steps=120, seed=3)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert result.steps_executed == 120
    assert result.chunks_executed >= 5  # 120 steps / 25 per chunk
    assert len(feedback) >= 4 and [f.chunk_index for f in feedback] == sorted(f.chunk_index for f in feedback)
    assert len(result.chunk_latency_ms) == result.chunks_executed
    # per chunk, the value the fake policy predicted (0.5 in direct mode), for calibration against the outcome
    assert list(result.chunk_values) == [0.5] * result.chunks_executed
    assert list(result.chunk_value_spreads) == [0.0] * result.chunks_executed
    assert len(result.tick_period_ms) == 119
    assert 0 <= result.final_stage_score <= 100  # the sim's stage score reached the result
    assert wait_until(lambda: len(commands.all()) >= 110, 5)
    waist = np.array([c[0] for c in commands.all()])
    assert np.ptp(waist) > 0.02  # the fake policy's sine: the arm was commanded to move


def start_lockstep_episode(start_node, test_node, contract, fake, **params):
    """A lockstep sim and policy node, the node subscribed, the sim reset: the action client, ready for a goal."""
    start_sim(start_node, mode="lockstep")
    policy = start_policy(start_node, fake, clock_mode="lockstep", **params)
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    # in lockstep the sim publishes an observation only after a reset or a command: subscribe first
    assert wait_until(lambda: policy.output.count("subscribed to") == 3, 30), policy.output
    reset_sim(test_node, contract)
    return client


def test_lockstep_runs_one_command_per_sim_step(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    client = start_lockstep_episode(start_node, test_node, contract, "hold:execute_steps=20")
    result = wait_result(send_goal(client, max_steps=60)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert result.steps_executed == 60 and result.chunks_executed == 3
    assert result.stall_ticks == 0


def test_lockstep_chunks_slower_than_the_sensor_limit_are_not_stale_sensors(start_node, test_node, contract):
    """A lockstep sim publishes only after a command: while the node waits for a chunk (planning on a loaded CPU
    took 12-15 s) its newest frame ages by that wait. That wait must not end the run as a stale sensor."""
    from aloha_interfaces.action import RunPolicy
    client = start_lockstep_episode(start_node, test_node, contract, "hold:execute_steps=20,latency_s=1.6",
                                    lockstep_timeout_s=1.0)
    result = wait_result(send_goal(client, max_steps=60)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert result.steps_executed == 60 and result.chunks_executed == 3
    assert min(result.chunk_latency_ms) > 1500


def test_cancel_stops_commands_within_a_tick(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    start_policy(start_node, "hold")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    commands = CommandLog(test_node, contract)
    handle = send_goal(client, max_steps=100000)
    assert wait_until(lambda: len(commands.all()) > 20, 20)
    cancel = handle.cancel_goal_async()
    assert wait_until(cancel.done, 5)
    accepted_at = time.monotonic()
    assert len(cancel.result().goals_canceling) == 1
    result = wait_result(handle)
    assert result.result.end_reason == RunPolicy.Result.END_CANCELED
    time.sleep(0.3)  # any late command would have arrived by now
    assert len(commands.since(accepted_at)) <= 1


def test_new_goal_preempts_the_running_one(start_node, test_node, contract):
    from action_msgs.msg import GoalStatus

    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    start_policy(start_node, "hold")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    first = send_goal(client, max_steps=100000)
    first_result = first.get_result_async()
    time.sleep(0.5)
    second = send_goal(client, max_steps=60)
    assert wait_until(first_result.done, 10)
    assert first_result.result().status == GoalStatus.STATUS_ABORTED
    assert first_result.result().result.end_reason == RunPolicy.Result.END_PREEMPTED
    assert wait_result(second).result.end_reason == RunPolicy.Result.END_MAX_STEPS


def test_stale_camera_holds_and_aborts(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    robot = FakeRobot(test_node, contract)
    policy = start_policy(start_node, "hold", camera_stale_s=0.5)
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    commands = CommandLog(test_node, contract)
    handle = send_goal(client, max_steps=100000)
    assert wait_until(lambda: len(commands.all()) > 10, 20), policy.output
    robot.silenced.add("cam_left_wrist")
    silenced_at = time.monotonic()
    result = wait_result(handle, 10).result
    assert result.end_reason == RunPolicy.Result.END_STALE_SENSOR
    assert "cam_left_wrist" in result.end_detail
    time.sleep(0.3)
    stale_s = 0.5
    # commands stop once the camera is stale: at most the staleness window plus a tick of commands after it
    assert len(commands.since(silenced_at)) <= stale_s / contract.control_period_s + 3


def test_best_effort_cameras_are_matched(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    FakeRobot(test_node, contract, best_effort=True)
    policy = start_policy(start_node, "hold")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    result = wait_result(send_goal(client, max_steps=40)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert "best_effort" in policy.output


def test_wrong_image_size_names_the_camera(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    FakeRobot(test_node, contract, wrong_size_camera="cam_right_wrist")
    start_policy(start_node, "hold:image_height=48,image_width=64")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    result = wait_result(send_goal(client, max_steps=40)).result
    assert result.end_reason == RunPolicy.Result.END_INFERENCE_ERROR
    assert result.end_detail.startswith("cam_right_wrist: got 24x32 rgb8, expected 48x64 rgb8"), result.end_detail


@pytest.mark.parametrize("fault, text", [("nan_at_chunk=1", "NaN"), ("jump_at_chunk=1", "left_shoulder")])
def test_unsafe_model_output_is_refused_and_the_arm_holds(start_node, test_node, contract, fault, text):
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    start_policy(start_node, f"hold:execute_steps=20,{fault}")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    commands = CommandLog(test_node, contract)
    result = wait_result(send_goal(client, max_steps=200)).result
    assert result.end_reason == RunPolicy.Result.END_UNSAFE_COMMAND
    assert text in result.end_detail
    time.sleep(1.0)  # the hold command left before the result: let a loaded machine deliver it
    sent = commands.all()
    assert sent and all(np.isfinite(c).all() for c in sent)
    steps = np.abs(np.diff(np.array(sent), axis=0)).max()
    assert steps < 0.2  # the 1 rad jump never reached the robot
    # the fault sits in the second chunk: the first ran, nothing after the fault
    assert 5 <= result.steps_executed < 45 and result.chunks_executed == 2
    np.testing.assert_allclose(sent[-1], sent[-2])  # the last message is the hold of the last safe target


@pytest.mark.parametrize("shape", [True, False])
def test_a_gripper_a_little_past_open_is_clamped_when_shaping_and_refused_without(start_node, test_node, contract,
                                                                                   shape):
    """Measured on ACT: gripper targets of 1.10-1.12 (accepted: up to 1.1) stopped 34 of 50 episodes at the gate."""
    from aloha_contract.validation import accepted_command_range
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    start_policy(start_node, "hold:execute_steps=20,gripper_target=1.12", shape_commands=shape)
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    commands = CommandLog(test_node, contract)
    result = wait_result(send_goal(client, max_steps=60)).result
    time.sleep(1.0)  # let a loaded machine deliver the last commands
    grippers = np.array(commands.all())[:, list(contract.gripper_indices)]
    upper = accepted_command_range(contract)[1][list(contract.gripper_indices)]
    assert (grippers <= upper).all()  # never past the accepted range, either way
    if shape:
        assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
        assert "gripper target clamped onto the accepted range" in result.end_detail, result.end_detail
        assert np.allclose(grippers[-1], upper), grippers[-1]
    else:
        assert result.end_reason == RunPolicy.Result.END_UNSAFE_COMMAND, result.end_detail
        assert "gripper" in result.end_detail and "1.120" in result.end_detail, result.end_detail


# One boundary late by up to 0.8 s at 50 Hz: what a host hiccup costs, against >= 10 ticks at every one of
# a dozen boundaries without prefetch
HICCUP_TICKS = 40


@pytest.mark.parametrize("prefetch", [True, False])
def test_slow_policy_stalls_only_without_prefetch(start_node, test_node, contract, prefetch):
    """Latency 0.3 s = 30% of a 50-step chunk at 50 Hz."""
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    # a generous lead margin: the suite may share the CPU; the test is about prefetch, not the margin
    start_policy(start_node, "hold:latency_s=0.3", prefetch=prefetch, lead_margin_ticks=15)
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    result = wait_result(send_goal(client, max_steps=250)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    boundaries = result.chunks_executed - 1
    if prefetch:
        # at most one late boundary: on 2026-12-04 this host made one boundary 0.5-0.8 s late in about a third
        # of runs (26-38 ticks); cause not found. No stall is the norm.
        assert result.stall_ticks <= HICCUP_TICKS, result.stall_ticks
    else:
        # every boundary waits the 0.3 s (15 ticks when the timer keeps time; a loaded host fires fewer ticks in
        # it: 141 over 15 boundaries measured in one run), and in all far more than one hiccup costs
        assert boundaries >= 3 and result.stall_ticks >= max(5 * boundaries, 2 * HICCUP_TICKS), \
            (boundaries, result.stall_ticks)


@pytest.mark.parametrize("scoring_s,fallback", [(1.5, True), (1.5, False), (0.05, True)])
def test_planning_that_cannot_finish_in_time_falls_back_to_a_direct_chunk(start_node, test_node, contract,
                                                                          scoring_s, fallback):
    """Realtime planning whose scoring (1.5 s) outlasts a 50-step chunk (1 s at 50 Hz): with the fallback the
    base policy's proposal runs at the deadline, said in feedback and result; without it the arm waits."""
    from aloha_interfaces.action import RunPolicy
    start_sim(start_node)
    start_policy(start_node, f"hold:latency_s=0.1,planning_latency_s={scoring_s}", lead_margin_ticks=15,
                 planning_fallback=fallback)
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    feedback: list = []
    result = wait_result(send_goal(client, feedback, max_steps=250, mode=RunPolicy.Goal.MODE_PLANNING)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    fell_back = [f for f in feedback if f.planning_fallback]
    if scoring_s < 0.5:  # scoring fits in a chunk: every chunk is planned
        # at most one chunk late through a host hiccup (see HICCUP_TICKS); a systematic miss fails
        assert result.planning_fallbacks <= 1 and len(fell_back) <= 1, result.planning_fallbacks
        planned = [f for f in feedback if not f.planning_fallback]
        assert planned and all(abs(f.predicted_value - 0.6) < 1e-6 and f.value_spread > 0 for f in planned)
        assert result.stall_ticks <= HICCUP_TICKS, result.stall_ticks
    elif fallback:  # every chunk after the first (which has no deadline) falls back, and the arm never waits
        assert result.planning_fallbacks >= 3 and len(fell_back) >= 3
        assert all(math.isnan(f.predicted_value) for f in fell_back)
        # the result's per-chunk values: NaN for each fallback, the scored value (0.6) for the others
        assert sum(math.isnan(v) for v in result.chunk_values) == result.planning_fallbacks
        assert all(abs(v - 0.6) < 1e-6 for v in result.chunk_values if not math.isnan(v))
        assert not feedback[0].planning_fallback
        # the only waits: the first chunk (planned in full, the arm holds for it) arrives 80 ticks after its
        # observation, past its 50 rows, and the arm waits the few ticks until the first fallback chunk (< 15),
        # plus at most one host hiccup (HICCUP_TICKS)
        assert result.stall_ticks < 15 + HICCUP_TICKS, result.stall_ticks
    else:  # planning to the end: >= 0.5 s of waiting at each boundary
        assert result.planning_fallbacks == 0 and not fell_back
        assert result.stall_ticks >= 2 * 20


def test_planning_goal_refused_without_planning_checkpoint(start_node, test_node, contract):
    from aloha_interfaces.action import RunPolicy
    FakeRobot(test_node, contract)
    start_policy(start_node, "hold")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    future = client.send_goal_async(RunPolicy.Goal(task="x", mode=RunPolicy.Goal.MODE_PLANNING))
    assert wait_until(future.done, 10)
    assert not future.result().accepted
