"""Across processes: `rollout_recorder replay` publishes a bag's messages (our own StageScore type included)
unchanged, in order, paced by their recorded times, with /clock in the bag's time."""

from __future__ import annotations

import os
import sys
import threading
import time

import numpy as np
import pytest
from ros_harness import NodeProcess, wait_until

pytestmark = pytest.mark.ros

T0_NS = 1_700_000_000_000_000_000
PERIOD_NS = 20_000_000
STEPS = 25
HW = (8, 12)


def write_bag(path, contract):
    """25 ticks of joint states + one camera at 50 Hz and one stage score, through our writer."""
    from rollout_recorder.bags import BagWriter

    writer = BagWriter(path)
    t = writer.typestore.types

    def header(stamp):
        return t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=stamp // 10**9,
                                                                             nanosec=stamp % 10**9), frame_id="")

    cam = contract.cameras[0]
    for k in range(STEPS):
        stamp = T0_NS + k * PERIOD_NS
        writer.write_message(contract.qualified_topic("joint_states"), t["sensor_msgs/msg/JointState"](
            header=header(stamp), name=contract.joint_names, position=np.full(14, float(k)),
            velocity=np.zeros(0), effort=np.zeros(0)), stamp, contract.qos("joint_states"))
        writer.write_message(contract.qualified_topic("camera_image", camera=cam), t["sensor_msgs/msg/Image"](
            header=header(stamp), height=HW[0], width=HW[1], encoding="rgb8", is_bigendian=0, step=HW[1] * 3,
            data=np.full(HW[0] * HW[1] * 3, k, np.uint8)), stamp + 1_000_000, contract.qos("images"))
        if k == 3:
            writer.write_message(contract.qualified_topic("stage_score"), t["aloha_interfaces/msg/StageScore"](
                header=header(stamp), task="transfer_cube", episode_step=k, score=25.0, stage="touched",
                stages_reached=["touched"], success=False, source="sim"), stamp + 2_000_000,
                contract.qos("stage_score"))
    writer.close()


class Listener:
    def __init__(self, node, contract):
        from rosgraph_msgs.msg import Clock
        from sensor_msgs.msg import Image, JointState

        from aloha_contract.ros import qos_profile
        from aloha_interfaces.msg import StageScore

        self.lock = threading.Lock()
        self.states: list[tuple[float, int, int]] = []  # (arrival, k, header stamp ns)
        self.images: list[int] = []
        self.clock_ns: list[int] = []
        self.stages: list = []

        def on_state(msg):
            with self.lock:
                self.states.append((time.monotonic(), int(msg.position[0]),
                                    msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec))

        def on_clock(msg):
            with self.lock:
                self.clock_ns.append(msg.clock.sec * 10**9 + msg.clock.nanosec)

        qos = qos_profile(contract, "joint_states")
        qos.depth = 100
        node.create_subscription(JointState, contract.topic("joint_states"), on_state, qos)
        node.create_subscription(Image, contract.camera_topic(contract.cameras[0]),
                                 lambda m: self.images.append(int(m.data[0])), 50)
        node.create_subscription(Clock, contract.topic("clock"), on_clock, qos_profile(contract, "clock"))
        node.create_subscription(StageScore, contract.topic("stage_score"), self.stages.append,
                                 qos_profile(contract, "stage_score"))

    def full_pass(self):
        """Arrival times of the first complete, in-order pass 0..STEPS-1, or None."""
        with self.lock:
            ks = [k for _, k, _ in self.states]
            for i in range(len(ks) - STEPS + 1):
                if ks[i:i + STEPS] == list(range(STEPS)):
                    return self.states[i:i + STEPS]
        return None


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rollout_recorder.cli", *args]


def test_replay_loops_with_recorded_timing_and_clock(ros_domain, test_node, tmp_path):
    from aloha_contract import load_contract

    contract = load_contract()
    write_bag(tmp_path / "bag", contract)
    listener = Listener(test_node, contract)
    player = NodeProcess(cli("replay", str(tmp_path / "bag"), "--rate", "2", "--loop"),
                         {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        # looping: discovery may cost the first messages of the first pass, never a whole later pass
        assert wait_until(lambda: listener.full_pass() is not None, 30.0), player.output
        assert wait_until(lambda: len(listener.stages) > 0, 10.0), player.output
        assert wait_until(lambda: np.any(np.diff(np.array(listener.clock_ns)) < 0), 10.0), player.output
    finally:
        code = player.stop()
    assert code == 0, player.output
    one_pass = listener.full_pass()
    assert [stamp for _, _, stamp in one_pass] == [T0_NS + k * PERIOD_NS for k in range(STEPS)]  # bytes unchanged
    # 24 periods of 20 ms at 2x: 0.24 s of wall time (a lower bound only: a loaded machine may be slower)
    assert one_pass[-1][0] - one_pass[0][0] >= 0.8 * (STEPS - 1) * PERIOD_NS * 1e-9 / 2
    stage = listener.stages[0]
    assert stage.score == 25.0 and list(stage.stages_reached) == ["touched"] and stage.source == "sim"
    assert set(listener.images) <= set(range(STEPS)) and len(listener.images) >= STEPS
    clock = np.array(listener.clock_ns)
    assert len(clock) > 10
    assert clock.min() >= T0_NS and clock.max() <= T0_NS + (STEPS - 1) * PERIOD_NS + 2_000_000  # the bag's time
    assert np.any(np.diff(clock) < 0)  # it jumped back when the loop started over


def test_replay_without_loop_ends_by_itself(ros_domain, tmp_path):
    from aloha_contract import load_contract

    write_bag(tmp_path / "bag", load_contract())
    player = NodeProcess(cli("replay", str(tmp_path / "bag"), "--rate", "5"), {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert wait_until(lambda: player.proc.poll() is not None, 30.0), player.output
    assert player.stop() == 0 and f"replayed {2 * STEPS + 1} messages in 1 pass" in player.output, player.output


@pytest.mark.parametrize("after_s", [0.0, 0.01, 0.03, 0.2])
def test_ctrl_c_at_any_point_of_the_first_pass_exits_cleanly(ros_domain, tmp_path, after_s):
    # Regression: Ctrl-C ~10 ms into the first pass lands while rosbags builds its message classes (an exec);
    # on CPython 3.11 a KeyboardInterrupt there made the process exit by SIGINT (-2) even though it was caught
    from aloha_contract import load_contract

    write_bag(tmp_path / "bag", load_contract())
    player = NodeProcess(cli("replay", str(tmp_path / "bag"), "--rate", "2", "--loop"),
                         {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert player.wait_for_output("Ctrl-C stops", 30.0), player.output
    time.sleep(after_s)
    assert player.stop() == 0, player.output
    assert "replayed " in player.output, player.output  # it closed through its summary, not by the signal


def test_replay_decompresses_a_compressed_camera_for_the_policy_node(ros_domain, test_node, tmp_path):
    """A bag recorded with --compress-images holds <camera>/compressed; --decompress publishes raw rgb8 frames on
    the contract's camera topic again (what the policy node subscribes to), with the recorded stamps."""
    import cv2
    from sensor_msgs.msg import Image

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from rollout_recorder.bags import BagWriter

    contract = load_contract()
    cam = contract.cameras[0]
    writer = BagWriter(tmp_path / "bag")
    t = writer.typestore.types
    hw = (24, 32)
    for k in range(STEPS):
        stamp = T0_NS + k * PERIOD_NS
        rgb = np.zeros((*hw, 3), np.uint8)
        rgb[..., 0] = 10 * k  # red grows per frame; JPEG keeps a flat colour within a few levels
        ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        assert ok
        header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](
            sec=stamp // 10**9, nanosec=stamp % 10**9), frame_id="cam_high_color_optical_frame")
        writer.write_message(contract.qualified_topic("camera_image", camera=cam) + "/compressed",
                             t["sensor_msgs/msg/CompressedImage"](header=header, format="rgb8; jpeg compressed bgr8",
                                                                  data=np.frombuffer(jpeg.tobytes(), np.uint8)),
                             stamp, contract.qos("images"))
    writer.close()

    frames: list = []
    qos = qos_profile(contract, "images")
    qos.depth = 50
    test_node.create_subscription(Image, contract.camera_topic(cam), frames.append, qos)
    player = NodeProcess(cli("replay", str(tmp_path / "bag"), "--decompress", "--loop"),
                         {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_until(lambda: len(frames) >= STEPS, 30.0), player.output
    finally:
        assert player.stop() == 0, player.output
    msg = frames[-1]
    assert (msg.height, msg.width, msg.encoding) == (*hw, "rgb8") and msg.header.frame_id.startswith("cam_high")
    k = (msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec - T0_NS) // PERIOD_NS
    rgb = np.frombuffer(bytes(msg.data), np.uint8).reshape(*hw, 3)
    assert abs(float(rgb[..., 0].mean()) - 10 * k) < 4 and float(rgb[..., 1:].mean()) < 4
