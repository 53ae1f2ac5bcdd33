"""The recorder node across processes: a RunPolicy goal becomes an episode, and kill -9 mid-episode
leaves every earlier episode intact and the partial one ignored by training and recoverable."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import uuid

import h5py
import numpy as np
import pytest
from ros_harness import wait_until

pytestmark = pytest.mark.ros

HW = (12, 16)


class FakeRobot:
    """Publishes the contract's streams with synthetic stamps, one control tick per call."""

    def __init__(self, node, contract):
        from action_msgs.msg import GoalStatusArray
        from rclpy.qos import qos_profile_action_status_default
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float32

        from aloha_contract.ros import qos_profile
        from aloha_interfaces.msg import StageScore

        c = self.contract = contract
        self.node = node
        self.pub_state = node.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        self.pub_cmd = node.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
        self.pub_cams = {cam: node.create_publisher(Image, c.camera_topic(cam), qos_profile(c, "images"))
                         for cam in c.cameras}
        self.pub_stage = node.create_publisher(StageScore, c.topic("stage_score"), qos_profile(c, "stage_score"))
        self.pub_value = node.create_publisher(Float32, c.topic("policy_value"), 10)
        self.pub_status = node.create_publisher(GoalStatusArray, c.action("run_policy") + "/_action/status",
                                                qos_profile_action_status_default)
        self.tick = 0

    def connected(self) -> bool:
        pubs = [self.pub_state, self.pub_cmd, self.pub_stage, self.pub_value, self.pub_status, *self.pub_cams.values()]
        return all(p.get_subscription_count() > 0 for p in pubs)

    def step(self, n: int, *, skip_camera_at: int | None = None) -> None:
        import time

        from aloha_contract.ros import rgb_to_image, time_msg, vector_to_joint_state

        names = self.contract.joint_names
        for _ in range(n):
            t = self.tick
            stamp = time_msg(1000.0 + t * self.contract.control_period_s)
            q = np.full(14, 0.001 * t)
            self.pub_state.publish(vector_to_joint_state(q, names, stamp, velocity=np.zeros(14), effort=np.zeros(14)))
            for i, (cam, pub) in enumerate(self.pub_cams.items()):
                if not (skip_camera_at == t and i == 0):
                    pub.publish(rgb_to_image(np.full((*HW, 3), (t + 40 * i) % 256, np.uint8), stamp, cam))
            self.pub_cmd.publish(vector_to_joint_state(q + 0.01, names, stamp))
            self.tick += 1
            time.sleep(self.contract.control_period_s)  # paces the publisher like a robot; no assertion on time

    def stage(self, score: float, success: bool) -> None:
        from aloha_interfaces.msg import StageScore

        self.pub_stage.publish(StageScore(task="transfer_cube", score=float(score), success=success, source="sim",
                                          stage="lifted" if score else "", stages_reached=["touched"] if score else []))

    def value(self, v: float) -> None:
        from std_msgs.msg import Float32

        self.pub_value.publish(Float32(data=float(v)))

    def goal_status(self, goal: bytes, status: int) -> None:
        from action_msgs.msg import GoalStatus, GoalStatusArray

        msg = GoalStatusArray()
        s = GoalStatus(status=status)
        s.goal_info.goal_id.uuid = list(goal)
        msg.status_list = [s]
        self.pub_status.publish(msg)


def rows_on_disk(partial) -> int:
    try:
        with h5py.File(partial, "r", libver="latest", swmr=True) as f:
            return int(f["action"].shape[0])
    except (OSError, KeyError):
        return 0


def set_recording(node, value: bool) -> bool:
    from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
    from rcl_interfaces.srv import SetParameters

    client = node.create_client(SetParameters, "/rollout_recorder/set_parameters")
    assert client.wait_for_service(timeout_sec=20.0), "recorder parameter service not found"
    req = SetParameters.Request(parameters=[Parameter(name="recording", value=ParameterValue(
        type=ParameterType.PARAMETER_BOOL, bool_value=value))])
    future = client.call_async(req)
    assert wait_until(future.done, 20.0), "set_parameters did not answer"
    return future.result().results[0].successful


def test_policy_goal_episode_then_kill9_mid_episode(start_node, test_node, tmp_path):
    from action_msgs.msg import GoalStatus

    from aloha_contract import load_contract
    from rollout_recorder.episode_file import list_episode_files, read_act_episode, read_rollout_history

    contract = load_contract()
    out = tmp_path / "rollouts"
    recorder = start_node("rollout_recorder", "recorder_node", params={
        "out_dir": str(out), "image_height": HW[0], "image_width": HW[1], "reserve_mb": 0, "flush_every": 5,
        "policy_checkpoint": "runs/tiny@step200", "task": "transfer the cube", "seed": 7})
    assert recorder.wait_for_output("recorder ready", 60.0), recorder.output
    robot = FakeRobot(test_node, contract)
    assert wait_until(robot.connected, 30.0), "recorder did not subscribe to every contract topic"

    # 1. a RunPolicy goal starts and ends an episode
    goal = uuid.uuid4().bytes
    robot.goal_status(goal, GoalStatus.STATUS_EXECUTING)
    first_partial = out / "episode_0.hdf5.partial"
    assert wait_until(first_partial.exists, 20.0), recorder.output
    robot.stage(0, False)
    robot.value(0.4)
    robot.step(20, skip_camera_at=robot.tick + 5)
    robot.stage(50, False)
    robot.value(0.7)
    robot.step(20)
    robot.goal_status(goal, GoalStatus.STATUS_SUCCEEDED)
    first = out / "episode_0.hdf5"
    assert wait_until(first.exists, 20.0), recorder.output
    episode = read_act_episode(first)
    assert 30 <= episode.num_steps <= 40, episode.num_steps
    assert sorted(episode.images) == sorted(contract.cameras)
    a = episode.attrs
    assert a["complete"] in (True, 1) and a["source"] == "policy" and a["goal_id"] == goal.hex()
    assert a["policy_checkpoint"] == "runs/tiny@step200" and a["seed"] == 7
    assert a["task"] == "transfer_cube" and a["stage_score"] == 50 and a["success_score"] == 0.5
    assert a["success"] in (False, 0)
    assert a["camera_rate_low"] in (True, 1, False, 0)  # present; its value depends on this machine's load
    cam0 = contract.cameras[0]
    assert not episode.frame_valid[cam0].all()  # the skipped frame is marked, not silently filled
    # each row holds the command of its tick, or (a command lost under load) the one still in force
    fresh = np.all(np.abs(episode.action - episode.qpos - 0.01) < 1e-5, axis=1)
    held = np.r_[False, np.all(episode.action[1:] == episode.action[:-1], axis=1)]
    assert np.all(fresh | held) and fresh.mean() >= 0.8, (fresh, held)
    history = read_rollout_history(first)
    assert history["chunk_values"][:, 1].tolist() == pytest.approx([0.4, 0.7])
    assert history["stage_history"][:, 1].tolist() == [0, 50]
    first_digest = hashlib.sha256(first.read_bytes()).hexdigest()

    # 2. an episode started by the service, killed -9 once rows are on disk
    assert set_recording(test_node, True)
    partial = out / "episode_1.hdf5.partial"
    assert wait_until(partial.exists, 20.0), recorder.output
    robot.step(25)
    assert wait_until(lambda: rows_on_disk(partial) >= 10, 20.0), recorder.output
    os.killpg(recorder.proc.pid, signal.SIGKILL)
    recorder.proc.wait(timeout=10)

    assert hashlib.sha256(first.read_bytes()).hexdigest() == first_digest  # earlier episode untouched
    assert list_episode_files(out) == [first]
    code = ("import sys; from cosmos_policy.data.datasets import find_episode_files; "
            "print([p.name for p in find_episode_files(sys.argv[1], split=None)])")
    seen = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True).stdout
    assert seen.strip() == "['episode_0.hdf5']"  # the training reader ignores the partial episode

    result = subprocess.run([sys.executable, "-m", "rollout_recorder.cli", "recover", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    recovered = read_act_episode(out / "episode_1.hdf5")
    assert recovered.attrs["recovered"] in (True, 1) and recovered.num_steps >= 10
    assert recovered.attrs["policy_checkpoint"] == "runs/tiny@step200"
    assert not partial.exists() and hashlib.sha256(first.read_bytes()).hexdigest() == first_digest
