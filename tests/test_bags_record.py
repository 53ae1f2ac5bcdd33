"""Across processes: a fake robot in the test node -> `rollout_recorder record` (its own process) -> an MCAP bag
-> `rollout_recorder bag-to-episode` (another process) -> a valid ACT episode holding what was published."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml
from ros_harness import NodeProcess, wait_until

pytestmark = pytest.mark.ros

HW = (24, 32)
STEPS = 40


def frame(t: int, cam_index: int) -> np.ndarray:
    """Smooth (JPEG-friendly) and different per tick and camera."""
    h, w = HW
    y, x = np.mgrid[0:h, 0:w]
    base = np.clip(20 + x * 120 // (w - 1) + y * 40 // (h - 1) + (3 * t) % 40 + 20 * cam_index, 0, 255)
    return np.stack([base, 255 - base, base // 2 + 64], axis=-1).astype(np.uint8)


class FakeRobot:
    """The contract's streams from the test process, one control tick per call, stamped 1000 s + t x period."""

    def __init__(self, node, contract):
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float32

        from aloha_contract.ros import qos_profile
        from aloha_interfaces.msg import StageScore

        c = self.contract = contract
        self.pub_state = node.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        self.pub_cmd = node.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
        self.pub_cams = {cam: node.create_publisher(Image, c.camera_topic(cam), qos_profile(c, "images"))
                         for cam in c.cameras}
        self.pub_stage = node.create_publisher(StageScore, c.topic("stage_score"), qos_profile(c, "stage_score"))
        self.pub_value = node.create_publisher(Float32, c.topic("policy_value"), 10)
        self.pubs = [self.pub_state, self.pub_cmd, self.pub_stage, self.pub_value, *self.pub_cams.values()]

    def connected(self) -> bool:
        return all(p.get_subscription_count() > 0 for p in self.pubs)

    def step(self, t: int) -> None:
        from aloha_contract.ros import rgb_to_image, time_msg, vector_to_joint_state

        names = self.contract.joint_names
        stamp = time_msg(1000.0 + t * self.contract.control_period_s)
        q = np.full(14, 0.001 * t)
        self.pub_state.publish(vector_to_joint_state(q, names, stamp, velocity=np.zeros(14), effort=np.ones(14)))
        for i, (cam, pub) in enumerate(self.pub_cams.items()):
            pub.publish(rgb_to_image(frame(t, i), stamp, cam))
        self.pub_cmd.publish(vector_to_joint_state(q + 0.01, names, stamp))

    def stage(self, score: float) -> None:
        from aloha_interfaces.msg import StageScore

        self.pub_stage.publish(StageScore(task="transfer_cube", score=float(score), stage="lifted",
                                          stages_reached=["touched", "lifted"], source="sim"))


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rollout_recorder.cli", *args]


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "compressed"])
def test_record_subprocess_bag_becomes_an_episode(ros_domain, test_node, tmp_path, compress):
    from aloha_contract import load_contract
    from rollout_recorder.episode_file import read_act_episode

    contract = load_contract()
    bag = tmp_path / "demo_bag"
    recorder = NodeProcess(cli("record", "--out", str(bag), *(["--compress-images"] if compress else [])),
                           {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert recorder.wait_for_output("Ctrl-C ends the bag", 60.0), recorder.output
        robot = FakeRobot(test_node, contract)
        assert wait_until(robot.connected, 30.0), "the recorder did not subscribe to every contract topic"
        robot.stage(50)
        # the bag's (fully qualified) names
        streams = [contract.qualified_topic("joint_states"), contract.qualified_topic("joint_commands"),
                   *(contract.qualified_topic("camera_image", camera=c) + ("/compressed" if compress else "")
                     for c in contract.cameras)]
        # the first messages after matching can be lost while discovery completes on the recorder's side: tick
        # until the recorder has seen every stream, then every one of the STEPS ticks after that must be in the bag
        t = 0
        deadline = time.monotonic() + 30.0
        while not all(f"first message on {s} " in recorder.output for s in streams):
            assert time.monotonic() < deadline, recorder.output
            robot.step(t)
            t += 1
            time.sleep(contract.control_period_s)
        warmup = t
        for t in range(warmup, warmup + STEPS):
            robot.step(t)
            time.sleep(contract.control_period_s)  # paced like a robot; nothing asserts on time
        time.sleep(0.5)
    finally:
        code = recorder.stop(timeout_s=20.0)
    assert code == 0, recorder.output
    assert "bag " in recorder.output and "messages" in recorder.output, recorder.output

    meta = yaml.safe_load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in meta["topics_with_message_count"]}
    assert all(counts[s] >= STEPS for s in streams), counts
    assert counts[contract.qualified_topic("stage_score")] == 1 and meta["storage_identifier"] == "mcap"

    out = tmp_path / "episodes"
    result = subprocess.run(cli("bag-to-episode", str(bag), "--out", str(out), "--task", "demo", "--reserve-mb", "0",
                                "--quiet"), capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 episodes written" in result.stdout, result.stdout
    ep = read_act_episode(out / "episode_0.hdf5")
    assert ep.attrs["task"] == "demo" and ep.attrs["stage_score"] == 50.0
    assert STEPS <= ep.num_steps <= warmup + STEPS
    last = slice(ep.num_steps - STEPS, None)  # the ticks published once every stream was live
    ticks = np.arange(warmup, warmup + STEPS)
    np.testing.assert_allclose(ep.qpos[last], np.repeat(0.001 * ticks[:, None], 14, axis=1), atol=1e-6)
    np.testing.assert_allclose(ep.effort[last], 1.0)
    np.testing.assert_allclose(ep.action[last], ep.qpos[last] + 0.01, atol=1e-6)  # each command with its tick
    for i, cam in enumerate(contract.cameras):
        assert ep.frame_valid[cam][last].all()
        truth = np.stack([frame(t, i) for t in ticks])
        if compress:
            assert np.abs(ep.images[cam][last].astype(np.int16) - truth).mean() < 4.0
        else:
            np.testing.assert_array_equal(ep.images[cam][last], truth)
