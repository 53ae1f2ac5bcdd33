"""Every RunPolicy goal becomes a rollout episode carrying the goal's task text, seed and checkpoint."""

from __future__ import annotations

import h5py
import pytest
from ros_harness import wait_until
from test_policy_node import SMALL, action_client, reset_sim, send_goal, start_policy, start_sim, wait_result

pytestmark = pytest.mark.ros


def test_policy_goal_is_recorded_with_its_task_and_seed(start_node, test_node, tmp_path):
    from aloha_contract import load_contract
    from aloha_interfaces.action import RunPolicy
    from rollout_recorder.episode_file import list_episode_files

    contract = load_contract()
    start_sim(start_node, mode="lockstep")
    recorder = start_node("rollout_recorder", "recorder_node",
                          params={"out_dir": str(tmp_path), "sim": True, "reserve_mb": 1, **SMALL})
    assert recorder.wait_for_output("recorder ready", 30), recorder.output
    policy = start_policy(start_node, "hold:execute_steps=20", clock_mode="lockstep")
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    assert wait_until(lambda: policy.output.count("subscribed to") == 3, 30), policy.output
    # the reset publishes the first observation once: both the policy node and the recorder must hear it
    streams = [contract.topic("joint_states")] + [contract.camera_topic(cam) for cam in contract.cameras]
    assert wait_until(lambda: all(test_node.count_subscribers(t) >= 2 for t in streams), 30), recorder.output
    # the recorder learns of a goal from the action's status topic: it must be matched before the lockstep goal
    # starts (once in a CI run it was not, and nothing was recorded);
    # its subscribers there: the recorder and this test's action client
    status_topic = contract.action("run_policy") + "/_action/status"
    assert wait_until(lambda: test_node.count_subscribers(status_topic) >= 2, 30), recorder.output
    description = reset_sim(test_node, contract, seed=1234).task_description
    # the recorder starts on the EXECUTING status, which a loaded machine may deliver after a lockstep burst's
    # first ticks: a 60-step goal (about a second) once ended before the recorder heard of it, and the file had
    # no rows. 250 steps leave ticks to record after any start-up delay shorter than the goal itself.
    result = wait_result(send_goal(client, task=description, max_steps=250, seed=77)).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert wait_until(lambda: len(list_episode_files(tmp_path)) == 1, 20), recorder.output
    with h5py.File(list_episode_files(tmp_path)[0]) as f:
        attrs = dict(f.attrs)
        # rows, not all 60: lockstep bursts steps faster than the recorder's queues hold on a loaded machine
        assert f["/action"].shape[0] > 0
    assert attrs["task_description"] == description
    assert int(attrs["seed"]) == 77
    assert str(attrs["policy_checkpoint"]).startswith("fake_policy:hold")
    # the run's end, in words that do not read as the task's outcome (the fake policy does no task)
    assert attrs["stopped_by"] == "goal finished" and not attrs.get("success", False), attrs
