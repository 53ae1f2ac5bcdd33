"""The RunPolicy action across processes: goal, feedback, cancel, result, rejection."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from ros_harness import NodeProcess, wait_until

pytestmark = pytest.mark.ros

SERVER = Path(__file__).parent / "nodes" / "run_policy_fixture_server.py"


@pytest.fixture
def action_client(ros_domain, test_node):
    from rclpy.action import ActionClient

    from aloha_contract import load_contract
    from aloha_interfaces.action import RunPolicy

    server = NodeProcess([sys.executable, str(SERVER)], {**os.environ, "PYTHONUNBUFFERED": "1"})
    client = ActionClient(test_node, RunPolicy, load_contract().action("run_policy"))
    assert client.wait_for_server(timeout_sec=30), server.output
    yield client
    client.destroy()
    server.stop()


def send(client, goal, feedback):
    future = client.send_goal_async(goal, feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait_until(future.done, 10)
    return future.result()


def test_goal_feedback_result(action_client):
    from action_msgs.msg import GoalStatus

    from aloha_interfaces.action import RunPolicy

    feedback = []
    handle = send(action_client, RunPolicy.Goal(task="transfer the cube", mode=RunPolicy.Goal.MODE_PLANNING,
                                                 max_steps=40, num_candidates=8), feedback)
    assert handle.accepted
    result_future = handle.get_result_async()
    assert wait_until(result_future.done, 20)
    wrapped = result_future.result()
    assert wrapped.status == GoalStatus.STATUS_SUCCEEDED
    result = wrapped.result
    assert result.steps_executed == 40 and result.chunks_executed == 4
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS and "transfer the cube" in result.end_detail
    assert [f.chunk_index for f in feedback] == [1, 2, 3, 4]
    assert [f.step for f in feedback] == [10, 20, 30, 40]
    assert all(f.chunk_latency_ms > 0 for f in feedback)


def test_cancel_stops_the_run(action_client):
    from action_msgs.msg import GoalStatus

    from aloha_interfaces.action import RunPolicy

    feedback = []
    handle = send(action_client, RunPolicy.Goal(task="insert the peg", max_steps=100000), feedback)
    assert handle.accepted and wait_until(lambda: len(feedback) >= 2, 10)
    cancel_future = handle.cancel_goal_async()
    assert wait_until(cancel_future.done, 10) and len(cancel_future.result().goals_canceling) == 1
    result_future = handle.get_result_async()
    assert wait_until(result_future.done, 10)
    wrapped = result_future.result()
    assert wrapped.status == GoalStatus.STATUS_CANCELED
    assert wrapped.result.end_reason == RunPolicy.Result.END_CANCELED
    assert 0 < wrapped.result.steps_executed < 100000


def test_goal_without_task_is_rejected(action_client):
    from aloha_interfaces.action import RunPolicy
    handle = send(action_client, RunPolicy.Goal(task=""), [])
    assert not handle.accepted
