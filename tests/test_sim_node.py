"""The simulator node, seen from another process exactly as the real robot would be seen."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ros_harness import wait_until

pytestmark = pytest.mark.ros

SMALL = {"image_height": 96, "image_width": 128}


class Recorder:
    """Collects messages of several topics with their arrival times."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages: dict[str, list] = {}

    def callback(self, topic):
        def store(msg):
            with self.lock:
                self.messages.setdefault(topic, []).append((time.monotonic(), msg))
        return store

    def get(self, topic):
        with self.lock:
            return list(self.messages.get(topic, []))

    def clear(self):
        with self.lock:
            self.messages.clear()


def subscribe_contract_topics(node, contract):
    from aloha_contract.ros import qos_profile
    from aloha_interfaces.msg import StageScore
    from sensor_msgs.msg import Image, JointState

    rec = Recorder()
    topics = {contract.topic("joint_states"): (JointState, "joint_states"),
              contract.topic("stage_score"): (StageScore, "stage_score")}
    for arm in contract.arms:
        topics[contract.follower_joint_states_topic(arm)] = (JointState, "joint_states")
    for cam in contract.cameras:
        topics[contract.camera_topic(cam)] = (Image, "images")
    subs = [node.create_subscription(t, name, rec.callback(name), qos_profile(contract, q))
            for name, (t, q) in topics.items()]
    return rec, subs


def send_command(pub, contract, vec, stamp=None):
    from aloha_contract.ros import vector_to_joint_state
    from builtin_interfaces.msg import Time
    pub.publish(vector_to_joint_state(vec, contract.joint_names, stamp or Time()))


def command_publisher(node, contract):
    from aloha_contract.ros import qos_profile
    from sensor_msgs.msg import JointState
    return node.create_publisher(JointState, contract.topic("joint_commands"), qos_profile(contract, "joint_commands"))


def test_publishes_every_contract_topic_at_the_control_rate(start_node, test_node):
    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params=SMALL)
    state_topic = contract.topic("joint_states")
    assert wait_until(lambda: len(rec.get(state_topic)) > 5, 40), sim.output
    rec.clear()
    time.sleep(3.0)

    states = rec.get(state_topic)
    scores = rec.get(contract.topic("stage_score"))
    elapsed_s = states[-1][0] - states[0][0]
    # the simulation keeps wall-clock time at the control rate (it catches up when a tick is late) ...
    steps_per_s = (scores[-1][1].episode_step - scores[0][1].episode_step) / (scores[-1][0] - scores[0][0])
    assert abs(steps_per_s - contract.control_rate_hz) < 0.1 * contract.control_rate_hz, steps_per_s
    # ... and publishes a fresh state each tick: near 50 Hz here, loose bound for a loaded 2-core machine
    rate_hz = (len(states) - 1) / elapsed_s
    assert rate_hz > 0.5 * contract.control_rate_hz, f"joint_states at {rate_hz:.1f} Hz"
    stamps = [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for _, m in states]
    assert all(b > a for a, b in zip(stamps, stamps[1:]))
    msg = states[-1][1]
    assert list(msg.name) == contract.joint_names and len(msg.position) == 14
    assert np.all(np.isfinite(msg.position)) and len(msg.velocity) == 14 and len(msg.effort) == 14

    for arm in contract.arms:
        follower = rec.get(contract.follower_joint_states_topic(arm))
        assert len(follower) > 0.6 * len(states)
        assert list(follower[-1][1].name) == contract.follower_joint_names
    for cam in contract.cameras:
        images = rec.get(contract.camera_topic(cam))
        assert len(images) > 10, f"{cam}: only {len(images)} images in 3 s"
        img = images[-1][1]
        assert (img.height, img.width, img.encoding) == (96, 128, "rgb8")
        assert img.header.frame_id == contract.camera_frame_id(cam)
    frames = {cam: np.frombuffer(rec.get(contract.camera_topic(cam))[-1][1].data, np.uint8) for cam in contract.cameras}
    assert not np.array_equal(frames["cam_high"], frames["cam_left_wrist"])
    assert scores[-1][1].task == "transfer_cube" and scores[-1][1].score == 0.0
    assert sim.proc.poll() is None


def test_commands_move_the_arms_and_bad_commands_are_refused(start_node, test_node):
    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    pub = command_publisher(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    state_topic = contract.topic("joint_states")
    assert wait_until(lambda: len(rec.get(state_topic)) > 5, 40), sim.output
    start = np.array(rec.get(state_topic)[-1][1].position)

    target = start.copy()
    target[0] += 0.3   # left waist
    target[7] -= 0.2   # right waist
    assert wait_until(lambda: pub.get_subscription_count() > 0, 10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        send_command(pub, contract, target)
        now = np.array(rec.get(state_topic)[-1][1].position)
        if abs(now[0] - target[0]) < 0.03 and abs(now[7] - target[7]) < 0.03:
            break
        time.sleep(0.05)
    moved = np.array(rec.get(state_topic)[-1][1].position)
    assert abs(moved[0] - target[0]) < 0.03 and abs(moved[7] - target[7]) < 0.03, (moved, target)

    bad_commands = [np.full(14, np.nan), target[:7], target + np.r_[np.zeros(13), 5.0], target + 4.0]
    for bad in bad_commands:
        for _ in range(5):
            send_command(pub, contract, bad)
            time.sleep(0.02)
    time.sleep(0.5)
    held = np.array(rec.get(state_topic)[-1][1].position)
    # still holding the last valid target, not driven anywhere by the refused commands
    np.testing.assert_allclose(held[[0, 7]], target[[0, 7]], atol=0.02)
    assert sim.proc.poll() is None, "the sim node died on a bad command"
    refusals = [line for line in sim.output.splitlines() if "refused joint command" in line]
    for reason in ("NaN", "malformed", "gripper range", "outside joint limits"):
        assert any(reason in line for line in refusals), (reason, refusals)


def test_reset_service_randomises_objects_by_seed(start_node, test_node):
    from aloha_contract import load_contract
    from aloha_interfaces.srv import ResetEpisode
    contract = load_contract()
    start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    client = test_node.create_client(ResetEpisode, contract.service("reset_episode"))
    assert client.wait_for_service(timeout_sec=40)

    def reset(task, seed):
        future = client.call_async(ResetEpisode.Request(task=task, seed=seed))
        assert wait_until(future.done, 20)
        return future.result()

    def box_xy(response):
        pose = response.object_poses[list(response.object_names).index("box")]
        return (pose.position.x, pose.position.y)

    a, b, a_again = reset("transfer_cube", 1), reset("transfer_cube", 2), reset("transfer_cube", 1)
    assert a.success and a.episode_steps == 400 and "cube" in a.task_description
    assert box_xy(a) == box_xy(a_again) and box_xy(a) != box_xy(b)
    insertion = reset("insertion", 3)
    assert insertion.success and set(insertion.object_names) == {"peg", "socket"}
    unknown = reset("fold_towel", 0)
    assert not unknown.success and "unknown task" in unknown.message
