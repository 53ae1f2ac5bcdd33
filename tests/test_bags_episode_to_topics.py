"""Across processes: `rollout_recorder episode-to-topics --report` publishes an episode's joint states and cameras
(stamps rebased to now) and /clock, and scores the chunks of a policy (a fake one in the test node, answering on
/aloha/policy/chunk as the policy node does) against the recorded actions."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import numpy as np
import pytest
from ros_harness import NodeProcess, wait_until

pytestmark = pytest.mark.ros

STEPS = 60
HW = (12, 16)
ANSWER_AT = (10, 30, 50)  # steps whose observation the fake policy answers
CHUNK = 20
OFFSET = 0.05  # the fake policy's chunk = recorded actions + OFFSET: L1 0.05 when aligned


def make_episode(path, contract):
    from rollout_recorder.episode_file import Episode, write_act_episode

    rng = np.random.default_rng(3)
    qpos = np.repeat(0.001 * np.arange(STEPS)[:, None], 14, axis=1).astype(np.float32)
    action = (qpos + np.cumsum(rng.normal(0, 0.05, (STEPS, 14)), axis=0)).astype(np.float32)
    images = {cam: np.stack([np.full((*HW, 3), (k + 50 * i) % 256, np.uint8) for k in range(STEPS)])
              for i, cam in enumerate(contract.cameras)}
    write_act_episode(path, Episode(qpos=qpos, qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos), action=action,
                                    images=images, attrs={"task": "t"}))
    return action


class FakePolicy:
    """Answers the joint state of each step in ANSWER_AT with a chunk of the recorded actions from that step."""

    def __init__(self, node, contract, action):
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float32MultiArray, MultiArrayDimension

        from aloha_contract.ros import qos_profile

        self.lock = threading.Lock()
        self.state_stamps: dict[int, int] = {}
        self.image_stamps: dict[tuple[str, int], int] = {}
        self.clock_ns: list[int] = []
        pub = node.create_publisher(Float32MultiArray, contract.topic("policy_chunk"), 10)

        def stamp_ns(msg):
            return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec

        def on_state(msg):
            k = int(round(msg.position[0] / 0.001))
            with self.lock:
                self.state_stamps[k] = stamp_ns(msg)
            if k in ANSWER_AT:
                chunk = action[k:k + CHUNK] + OFFSET
                out = Float32MultiArray()
                out.layout.dim = [MultiArrayDimension(label="steps", size=len(chunk), stride=chunk.size),
                                  MultiArrayDimension(label="joints", size=14, stride=14)]
                out.data = chunk.astype(np.float32).ravel().tolist()
                pub.publish(out)

        def on_image(cam, msg):
            k = (int(msg.data[0]) - 50 * contract.cameras.index(cam)) % 256  # make_episode's pixel value
            with self.lock:
                self.image_stamps[(cam, k)] = stamp_ns(msg)

        self.subs = [node.create_subscription(JointState, contract.topic("joint_states"), on_state,
                                              qos_profile(contract, "joint_states"))]
        for cam in contract.cameras:
            qos = qos_profile(contract, "images")
            qos.depth = 20
            self.subs.append(node.create_subscription(Image, contract.camera_topic(cam),
                                                      lambda m, cam=cam: on_image(cam, m), qos))
        self.subs.append(node.create_subscription(Clock, contract.topic("clock"),
                                                  lambda m: self.clock_ns.append(stamp_ns_clock(m)),
                                                  qos_profile(contract, "clock")))


def stamp_ns_clock(msg) -> int:
    return msg.clock.sec * 10**9 + msg.clock.nanosec


def test_episode_to_topics_scores_the_policy_chunks(ros_domain, test_node, tmp_path):
    from aloha_contract import load_contract

    contract = load_contract()
    action = make_episode(tmp_path / "episode_0.hdf5", contract)
    policy = FakePolicy(test_node, contract, action)
    report = tmp_path / "report.json"
    started_ns = time.time_ns()
    player = NodeProcess([sys.executable, "-m", "rollout_recorder.cli", "episode-to-topics",
                          str(tmp_path / "episode_0.hdf5"), "--report", str(report), "--report-wait-s", "1"],
                         {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert wait_until(lambda: player.proc.poll() is not None, 45.0), player.output
    assert player.stop() == 0, player.output
    data = json.loads(report.read_text())
    assert data["steps"] == STEPS and data["steps_published"] == STEPS, data
    assert data["summary"]["chunks"] == len(ANSWER_AT), player.output
    for chunk, step in zip(data["chunks"], ANSWER_AT, strict=True):
        # the chunk answers row `step`: the newest row on air when it arrived is that one or later
        assert chunk["on_air_step"] >= step and chunk["best_step"] == step, chunk
        assert chunk["best_l1"] == pytest.approx(OFFSET, abs=1e-5)
        assert chunk["rows"] == min(CHUNK, STEPS - chunk["on_air_step"])  # rows compared from the on-air step
    assert data["summary"]["best_l1_mean"] == pytest.approx(OFFSET, abs=1e-5)

    with policy.lock:
        states = dict(policy.state_stamps)
        images = dict(policy.image_stamps)
    assert set(states) == set(range(STEPS))  # every row (the player waited for our subscriptions)
    stamps = np.array([states[k] for k in range(STEPS)])
    assert started_ns <= stamps[0] <= time.time_ns()  # rebased to now
    np.testing.assert_allclose(np.diff(stamps), contract.control_period_s * 1e9, atol=1000)  # recorded spacing
    for (cam, k), stamp in images.items():
        assert stamp == states[k], (cam, k)  # a row's frames carry its joint state's stamp
    assert len(images) >= 0.9 * STEPS * len(contract.cameras)
    assert policy.clock_ns and set(policy.clock_ns) <= set(stamps.tolist())
