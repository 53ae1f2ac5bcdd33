"""Fuzzing the policy node (with its test-double policy) over ROS: >= 1,000 adversarial inputs on its joint
state, camera and stage-score subscriptions, absurd goals and bursts of cancels. Then: the node is alive,
every command it published is finite and within the contract's limits, it still runs a valid goal, and its
log stayed bounded."""

from __future__ import annotations

import time

import numpy as np
import pytest
from ros_harness import wait_until
from test_fuzz_nodes import adversarial_joint_states
from test_policy_node import RELAXED, CommandLog, FakeRobot, action_client, send_goal, wait_result

pytestmark = pytest.mark.ros


def adversarial_images(rng: np.random.Generator, n: int):
    """Images with wrong encodings, sizes, steps, truncated or empty data, and odd stamps."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import Image
    encodings = ["rgb8", "bgr8", "mono8", "16UC1", "", "rgba8", "yuv422"]
    for i in range(n):
        msg = Image()
        msg.height, msg.width = int(rng.integers(0, 70)), int(rng.integers(0, 90))
        msg.encoding = encodings[i % len(encodings)]
        msg.step = int(rng.integers(0, 300))
        size = int(rng.integers(0, 3 * 64 * 48 + 10)) if i % 4 else 0
        msg.data = rng.integers(0, 256, size, dtype=np.uint8).tobytes()
        msg.header.stamp = Time(sec=int(rng.integers(0, 2**31 - 1)), nanosec=int(rng.integers(0, 10**9)))
        yield msg


def test_fuzz_policy_node(start_node, test_node):
    from sensor_msgs.msg import Image, JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from aloha_contract.validation import InvalidCommand, check_joint_command
    from aloha_interfaces.action import RunPolicy
    from aloha_interfaces.msg import StageScore

    contract = load_contract()
    rng = np.random.default_rng(0)
    robot = FakeRobot(test_node, contract)
    policy = start_node("cosmos_policy_ros", "policy_node", params={"fake_policy": "hold", **RELAXED})
    assert policy.wait_for_output("policy ready", 30), policy.output
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    commands = CommandLog(test_node, contract)
    lines_before = len(policy.output.splitlines())

    # a goal runs while the inputs are fuzzed: faults may abort it, never crash the node or command harm
    handle = send_goal(client, max_steps=100000)
    states = test_node.create_publisher(JointState, contract.topic("joint_states"), qos_profile(contract, "joint_states"))
    image_pub = test_node.create_publisher(Image, contract.camera_topic("cam_high"), qos_profile(contract, "images"))
    scores = test_node.create_publisher(StageScore, contract.topic("stage_score"), qos_profile(contract, "stage_score"))
    base = robot.qpos.copy()
    sent = 0
    for msg in adversarial_joint_states(contract.joint_names, base, rng, 600):
        states.publish(msg)
        sent += 1
    for msg in adversarial_images(rng, 300):
        image_pub.publish(msg)
        sent += 1
    for i in range(100):
        scores.publish(StageScore(task="x" * (i * 50), score=float(rng.normal(0, 1e6)), episode_step=i * 7919))
        sent += 1
    # absurd goals, each preempting the last, and a burst of cancels
    handles = []
    for goal in (dict(max_steps=2**32 - 1, max_duration_s=1e300), dict(max_steps=1, seed=-2**63),
                 dict(task="", action_steps=2**32 - 1, num_candidates=2**32 - 1), dict(task="\x00" * 10000)):
        future = client.send_goal_async(RunPolicy.Goal(**goal))
        assert wait_until(future.done, 15)
        handles.append(future.result())
        sent += 1
    for h in handles + [handle]:
        for _ in range(10):
            if h.accepted:
                h.cancel_goal_async()
                sent += 1
    assert sent >= 1000
    time.sleep(1.0)
    assert policy.proc.poll() is None, policy.output[-3000:]

    # every command that left the node was safe
    for command in commands.all():
        try:
            check_joint_command(command, contract)
        except InvalidCommand as exc:
            pytest.fail(f"unsafe command published: {exc}")

    # it still serves a valid goal (the fake robot's good messages have replaced the bad ones)
    time.sleep(0.5)
    result = wait_result(send_goal(client, max_steps=30)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    # bounded log: a few lines per goal and fault, not one per bad message
    assert len(policy.output.splitlines()) - lines_before < 100, policy.output[-3000:]
