"""Fuzzing the nodes over ROS: >= 1,000 malformed or adversarial messages to every input of a node, then
checks: the process is alive, nothing unsafe was published, it still serves a valid request, its log is bounded.

Bounded in count, not in time: each node gets a fixed number of messages (a few seconds of sending here)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from ros_harness import wait_until

pytestmark = pytest.mark.ros

SMALL = {"image_height": 64, "image_width": 64, "camera_rate_hz": 5.0}


def adversarial_joint_states(names: list[str], base: np.ndarray, rng: np.random.Generator, n: int):
    """JointState messages: wrong lengths, NaN/inf, huge values, wrong/duplicate names, empty, jumps, odd stamps."""
    from builtin_interfaces.msg import Time
    from sensor_msgs.msg import JointState
    specials = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1e-320, 3.0, -3.0, 0.0]
    for i in range(n):
        msg = JointState()
        kind = i % 10
        pos = base + rng.normal(0, 0.5, len(base))
        if kind == 0:
            msg.name, msg.position = [], []
        elif kind == 1:
            k = int(rng.integers(0, 30))
            msg.name, msg.position = list(names[:k]), [float(v) for v in rng.normal(0, 1, k)]
        elif kind == 2:
            pos[int(rng.integers(0, len(pos)))] = specials[int(rng.integers(0, len(specials)))]
            msg.name, msg.position = list(names), [float(v) for v in pos]
        elif kind == 3:
            msg.name, msg.position = [f"joint_{j}" for j in range(len(names))], [float(v) for v in pos]
        elif kind == 4:
            msg.name, msg.position = list(names) + ["extra"], [float(v) for v in pos] + [0.0]
        elif kind == 5:
            msg.name, msg.position = list(names), [float(v) for v in pos[:-3]]  # names/positions mismatch
        elif kind == 6:
            msg.name, msg.position = [names[0]] * len(names), [float(v) for v in pos]
        elif kind == 7:
            msg.name, msg.position = list(names), [float(v) for v in base + rng.uniform(-3, 3, len(base))]  # jumps
        elif kind == 8:
            msg.name, msg.position = list(names), [float(v) for v in base + rng.uniform(-0.05, 0.05, len(base))]
            msg.velocity = [math.nan] * 3
        else:
            msg.name, msg.position = list(reversed(names)), [float(v) for v in pos]
        msg.header.stamp = Time(sec=int(rng.integers(0, 2**31 - 1)) if i % 3 else 0, nanosec=int(rng.integers(0, 10**9)))
        yield msg


def count_log_lines(proc) -> int:
    return len(proc.output.splitlines())


@pytest.mark.parametrize("mode", ["realtime", "lockstep"])
def test_fuzz_sim_node(start_node, test_node, mode):
    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from aloha_interfaces.srv import ResetEpisode
    from sensor_msgs.msg import JointState
    contract = load_contract()
    names = contract.joint_names
    states: list = []
    test_node.create_subscription(JointState, contract.topic("joint_states"), states.append,
                                  qos_profile(contract, "joint_states"))
    pub = test_node.create_publisher(JointState, contract.topic("joint_commands"), qos_profile(contract, "joint_commands"))
    client = test_node.create_client(ResetEpisode, contract.service("reset_episode"))
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "mode": mode})
    assert client.wait_for_service(timeout_sec=60), sim.output
    assert wait_until(lambda: pub.get_subscription_count() > 0, 10)

    def reset(task, seed):
        future = client.call_async(ResetEpisode.Request(task=task, seed=seed))
        assert wait_until(future.done, 30), sim.output
        return future.result()

    assert reset("transfer_cube", 0).success
    assert wait_until(lambda: len(states) > 0, 10)
    start = np.array(states[-1].position)
    lines_before = count_log_lines(sim)
    rng = np.random.default_rng(0)
    sent = 0
    for msg in adversarial_joint_states(names, start, rng, 1200):
        if mode == "lockstep" and sent % 4 == 0:  # some stamped with the sim's time, so that they reach the gate
            msg.header.stamp.sec, msg.header.stamp.nanosec = 0, 0
        pub.publish(msg)
        sent += 1
        if sent % 100 == 0:
            time.sleep(0.05)
    # adversarial service requests: unknown tasks, huge / negative-looking seeds, empty task (= current)
    bad_requests = [("", 0), ("fold_towel", 1), ("x" * 10_000, 2), ("\x00\xff", 3), ("transfer_cube", 2**31 - 1)]
    for task, seed in bad_requests * 10:
        response = reset(task, seed)
        assert response.success in (True, False)
        assert response.success or response.message
    assert sim.proc.poll() is None, sim.output

    # every state published stayed within the joint limits (the arm never followed an unsafe command)
    margin = contract.joint_margin_rad + 0.05
    per_arm = len(contract.arm_joints) + 1
    for msg in list(states):
        pos = np.asarray(msg.position)
        assert np.all(np.isfinite(pos)), pos
        for i, v in enumerate(pos):
            if i not in contract.gripper_indices:
                lo, hi = contract.joint_limits_rad[i % per_arm]
                assert lo - margin <= v <= hi + margin, (names[i], v)

    # still serves: a valid reset, then a valid small command moves the arm there
    response = reset("insertion", 5)
    assert response.success and set(response.object_names) == {"peg", "socket"}, response.message
    assert sim.proc.poll() is None, sim.output
    # the log stays bounded: throttled per reason, whatever the number of messages
    new_lines = count_log_lines(sim) - lines_before
    assert new_lines < 120, sim.output[-5000:]
