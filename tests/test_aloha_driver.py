"""The real-robot driver against the fake Interbotix arms, across processes, as on the robot.

The driver sees the fake exactly as it would see Interbotix's xs_sdk nodes (same message and service types,
same names); the tests look at the contract's topics and at the Interbotix side.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from ros_harness import NodeProcess, blind_start_up_check_script, wait_until

START_TIMEOUT_S = 60  # two node processes on a loaded 2-core machine


class Latest:
    """The messages of one topic as they arrive, with an event per new message."""

    def __init__(self):
        self.lock = threading.Lock()
        self.messages = []

    def __call__(self, msg):
        with self.lock:
            self.messages.append(msg)

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.messages)

    def last(self):
        with self.lock:
            return self.messages[-1] if self.messages else None

    def after(self, count: int, timeout_s: float = 10.0):
        """The first message after the first `count` ones (waits for it)."""
        assert wait_until(lambda: self.count > count, timeout_s), "no new message"
        with self.lock:
            return self.messages[count]


@pytest.fixture
def contract():
    from aloha_contract import load_contract
    return load_contract()


@pytest.fixture
def fake_robot(start_node):
    """The fake Interbotix followers and the driver on top, set up and ready."""
    fake = start_node("aloha_bringup", "fake_interbotix")
    driver = start_node("aloha_bringup", "aloha_driver", params={"refusal_log_interval_s": 0.0})
    assert driver.wait_for_output("ALOHA driver ready", START_TIMEOUT_S), driver.output + fake.output
    return fake, driver


def subscribe(node, msg_type, topic, qos=10) -> Latest:
    latest = Latest()
    node.create_subscription(msg_type, topic, latest, qos)
    return latest


def aloha_state(node, contract) -> Latest:
    from sensor_msgs.msg import JointState

    from aloha_contract.ros import qos_profile
    return subscribe(node, JointState, contract.topic("joint_states"), qos_profile(contract, "joint_states"))


def command_publisher(node, contract):
    from sensor_msgs.msg import JointState

    from aloha_contract.ros import qos_profile
    pub = node.create_publisher(JointState, contract.topic("joint_commands"), qos_profile(contract, "joint_commands"))
    assert wait_until(lambda: pub.get_subscription_count() > 0, 10), "the driver does not subscribe to commands"
    return pub


def send(node, pub, contract, vec):
    from aloha_contract.ros import vector_to_joint_state
    pub.publish(vector_to_joint_state(vec, contract.joint_names, node.get_clock().now().to_msg()))


def vector(msg, contract):
    assert list(msg.name) == contract.joint_names
    return np.array(msg.position)


def ramp(node, pub, contract, start, target, steps=40):
    """Command a straight line at the control rate, in steps far inside the safety gate's per-step limits."""
    import time
    for alpha in np.linspace(0.0, 1.0, steps + 1)[1:]:
        send(node, pub, contract, start + alpha * (target - start))
        time.sleep(contract.control_period_s)  # pacing a command stream, not waiting for a result


@pytest.mark.ros
def test_commands_move_the_fake_arms_and_come_back_in_the_contract_convention(fake_robot, test_node, contract):
    from sensor_msgs.msg import JointState
    _, driver = fake_robot
    state = aloha_state(test_node, contract)
    follower_stamps = set()
    for arm in contract.arms:
        test_node.create_subscription(JointState, contract.follower_joint_states_topic(arm),
                                      lambda m: follower_stamps.add((m.header.stamp.sec, m.header.stamp.nanosec)), 100)
    pub = command_publisher(test_node, contract)
    start = vector(state.after(0), contract)
    assert start[contract.gripper_indices] == pytest.approx([1.0, 1.0], abs=1e-6)  # the fake starts open

    target = start.copy()
    target[0] += 0.3  # left waist
    target[9] -= 0.2  # right elbow
    target[contract.gripper_indices] = [0.2, 0.6]  # normalised: 0 closed, 1 open
    ramp(test_node, pub, contract, start, target)

    def reached():
        send(test_node, pub, contract, target)  # hold the target until the lagging arms arrive
        msg = state.last()
        return msg is not None and np.allclose(vector(msg, contract), target, atol=2e-3)

    assert wait_until(reached, 15, poll_s=contract.control_period_s), (state.last(), target, driver.output)
    # the gripper came back through the finger position with the same value it was commanded with
    msg = state.last()
    assert vector(msg, contract)[contract.gripper_indices] == pytest.approx([0.2, 0.6], abs=2e-3)
    # stamped by the follower messages it was made from, not by the driver's clock
    def stamped_by_a_follower_message():
        with state.lock:
            recent = state.messages[-20:]
        return any((m.header.stamp.sec, m.header.stamp.nanosec) in follower_stamps for m in recent)

    assert wait_until(stamped_by_a_follower_message, 5)


@pytest.mark.ros
def test_unsafe_commands_are_refused_and_the_arms_hold(fake_robot, test_node, contract):
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    fake, driver = fake_robot
    state = aloha_state(test_node, contract)
    forwarded = [subscribe(test_node, JointGroupCommand, contract.topic("follower_joint_group_command", arm_robot=r))
                 for r in ("follower_left", "follower_right")]
    forwarded += [subscribe(test_node, JointSingleCommand, contract.topic("follower_joint_single_command", arm_robot=r))
                  for r in ("follower_left", "follower_right")]
    pub = command_publisher(test_node, contract)
    start = vector(state.after(0), contract)
    assert wait_until(lambda: all(f.count == 0 for f in forwarded), 1)

    unsafe = {
        "NaN/inf positions for ['left_elbow']": {2: float("nan")},
        "left_shoulder=3.000 rad outside joint limits": {1: 3.0},
        "right_gripper=1.500 outside the normalised gripper range": {13: 1.5},
        "[step]: right_waist moves 0.400 in one step": {7: start[7] + 0.4},
        "[step]: left_wrist_angle moves 0.400 in one step": {4: start[4] - 0.4},  # a jump down is as bad as up
    }
    for expected, changes in unsafe.items():
        command = start.copy()
        for index, value in changes.items():
            command[index] = value
        # resent until refused for its own reason (a load spike can make the arms' states stale meanwhile)
        assert wait_until(lambda c=command, e=expected: send(test_node, pub, contract, c) or e in driver.output,
                          10, poll_s=0.1), driver.output
    assert "holding the last safe target (refused so far: invalid " in driver.output

    held = vector(state.after(state.count), contract)  # a state published after every refusal
    assert held == pytest.approx(start, abs=1e-9)
    assert all(f.count == 0 for f in forwarded), "a refused command reached the arms"

    # a safe command is still accepted after refusals: the gate holds, it does not latch
    safe = start.copy()
    safe[0] += 0.02
    assert wait_until(lambda: send(test_node, pub, contract, safe) or all(f.count > 0 for f in forwarded), 10)
    assert forwarded[0].last().cmd[0] == pytest.approx(safe[0], abs=1e-6)

    # the arms' joint states stop: once they are stale, commands are no longer forwarded
    fake.stop()
    safe[0] += 0.01
    assert wait_until(lambda: send(test_node, pub, contract, safe) or "[stale]: follower joint states of" in driver.output,
                      10, poll_s=0.1), driver.output
    safe[0] += 0.01  # a new target, sent only after the driver declared the states stale
    for _ in range(5):
        send(test_node, pub, contract, safe)
        time.sleep(0.05)
    assert forwarded[0].last().cmd[0] != pytest.approx(safe[0], abs=1e-6)


@pytest.mark.ros
def test_start_up_sets_modes_and_torque_through_the_interbotix_services(fake_robot, test_node, contract):
    from interbotix_xs_msgs.srv import RegisterValues, RobotInfo
    fake, _ = fake_robot

    def call(srv_type, name, request):
        client = test_node.create_client(srv_type, name)
        assert client.wait_for_service(timeout_sec=10), name
        future = client.call_async(request)
        assert wait_until(future.done, 10), name
        return future.result()

    for robot in ("follower_left", "follower_right"):
        torque = call(RegisterValues, f"/{robot}/get_motor_registers",
                      RegisterValues.Request(cmd_type="group", name="all", reg="Torque_Enable"))
        assert list(torque.values) == [1] * 7
        arm = call(RobotInfo, f"/{robot}/get_robot_info", RobotInfo.Request(cmd_type="group", name="arm"))
        assert arm.mode == "position" and list(arm.joint_names) == contract.arm_joints
        gripper = call(RobotInfo, f"/{robot}/get_robot_info", RobotInfo.Request(cmd_type="single", name="gripper"))
        assert gripper.mode == "current_based_position"  # the fake starts it in linear_position
        assert f"{robot}: operating mode of group 'arm' -> position" in fake.output
        assert f"{robot}: rebooted single 'gripper'" in fake.output


@pytest.mark.ros
def test_without_the_arms_the_driver_names_what_is_missing(start_node):
    driver = start_node("aloha_bringup", "aloha_driver", params={"startup_timeout_s": 2.0})
    assert driver.proc.wait(timeout=START_TIMEOUT_S) == 1
    for missing in ("/follower_left/torque_enable", "/follower_right/set_operating_modes",
                    "/follower_left/joint_states", "start the arm drivers first"):
        assert missing in driver.output
    assert "Traceback" not in driver.output


@pytest.mark.ros
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signals_end_both_nodes_cleanly(fake_robot, signum):
    for node in fake_robot:
        os.killpg(node.proc.pid, signum)
        assert node.proc.wait(timeout=20) == 0, node.output
        node.stop()  # collects the rest of its output
        assert "Traceback" not in node.output, node.output


@pytest.mark.ros
def test_robot_launch_with_fake_hardware_brings_the_graph_up(ros_domain, test_node, contract):
    from interbotix_xs_msgs.srv import RegisterValues
    launcher = NodeProcess([sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "robot.launch.py",
                            "hardware:=fake"], {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        state = aloha_state(test_node, contract)
        assert vector(state.after(0, timeout_s=START_TIMEOUT_S), contract).shape == (14,), launcher.output
        # judged from the graph, not from the launcher's output: the driver torqued both followers on
        for robot in ("follower_left", "follower_right"):
            client = test_node.create_client(RegisterValues, f"/{robot}/get_motor_registers")
            assert client.wait_for_service(timeout_sec=10)

            def torqued(client=client):
                future = client.call_async(RegisterValues.Request(cmd_type="group", name="all", reg="Torque_Enable"))
                return wait_until(future.done, 5) and list(future.result().values) == [1] * 7

            assert wait_until(torqued, START_TIMEOUT_S, poll_s=0.2), launcher.output
        os.kill(launcher.proc.pid, signal.SIGINT)
        assert launcher.proc.wait(timeout=30) == 0, launcher.output
        launcher.stop()
        # not asserted on the launcher's output text: the wheel launcher can hold back a node's last lines
        assert "Traceback" not in launcher.output, launcher.output
    finally:
        launcher.stop()


def _fake_prefix(root, packages_with_executables):
    """An ament prefix where `ros2 launch` would find the robot's third-party packages."""
    index = root / "share" / "ament_index" / "resource_index" / "packages"
    index.mkdir(parents=True)
    for package, executable in packages_with_executables.items():
        (index / package).write_text("")
        (root / "share" / package / "config").mkdir(parents=True)
        if executable:
            exe = root / "lib" / package / executable
            exe.parent.mkdir(parents=True)
            exe.write_text("#!/bin/sh\n")
            exe.chmod(exe.stat().st_mode | stat.S_IXUSR)


def test_real_hardware_graph_has_an_xs_sdk_per_arm_and_a_camera_per_view(tmp_path, monkeypatch, contract):
    """Evaluated (not run) as on a robot computer: the third-party packages exist only as names."""
    from aloha_bringup import wheel_launch as wl
    from aloha_contract.robot_config import load_robot_config

    _fake_prefix(tmp_path / "prefix", {"interbotix_xs_sdk": "xs_sdk", "interbotix_xsarm_control": None,
                                       "realsense2_camera": "realsense2_camera_node"})
    monkeypatch.setenv("AMENT_PREFIX_PATH", f"{tmp_path / 'prefix'}:{os.environ['AMENT_PREFIX_PATH']}")
    monkeypatch.setenv("ROS_HOME", str(tmp_path / "ros_home"))
    description = wl.load_description(wl.find_launch_file("aloha_bringup", "robot.launch.py"))
    robot = load_robot_config(contract=contract)

    nodes, _ = wl.evaluate(description, {"hardware": "real"})
    argv = {" ".join(n.argv) for n in nodes}
    sdk = [a for a in argv if "/xs_sdk " in a]
    assert len(sdk) == 2 and all("__node:=xs_sdk" in a for a in sdk)
    for arm in robot.followers:
        line = next(a for a in sdk if f"__ns:=/{arm.robot}" in a or f"__ns:={arm.robot}" in a)
        assert f"interbotix_xsarm_control/config/{arm.model}.yaml" in line
        mode_file = tmp_path / "ros_home" / "aloha_bringup" / f"{arm.robot}_modes.yaml"
        assert f"mode_configs:={mode_file}" in line and arm.port in mode_file.read_text()
    cameras = [a for a in argv if "realsense2_camera_node" in a]
    assert len(cameras) == len(contract.cameras)
    for cam in contract.cameras:
        line = next(a for a in cameras if f"__ns:={cam}" in a or f"__ns:=/{cam}" in a)
        # private names: the rule holds under any robot namespace (~ = <ns>/<cam>/camera)
        assert "~/color/image_raw:=~/color/image_rect_raw" in line
        assert contract.camera_topic(cam) == f"{cam}/camera/color/image_rect_raw"
        assert "rgb_camera.color_profile:=640x480x" in line
    assert sum("aloha_driver" in a for a in argv) == 1

    # one namespace for the whole robot: every arm, camera and the driver under it
    nodes, _ = wl.evaluate(description, {"hardware": "real", "namespace": "robot_a"})
    namespaces = sorted(next(a for a in n.argv if a.startswith("__ns:=")) for n in nodes)
    assert namespaces == sorted(["__ns:=/robot_a", *(f"__ns:=/robot_a/{arm.robot}" for arm in robot.followers),
                                 *(f"__ns:=/robot_a/{cam}" for cam in contract.cameras)])

    nodes, _ = wl.evaluate(description, {"hardware": "real", "launch_leaders": "true", "use_cameras": "false"})
    argv = [" ".join(n.argv) for n in nodes]
    assert sum("/xs_sdk " in a for a in argv) == 4 and not any("realsense" in a for a in argv)


def test_real_hardware_needs_the_interbotix_packages(tmp_path):
    """Here (no Interbotix stack) the real graph is refused with the missing package named."""
    proc = subprocess.run([sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "robot.launch.py",
                           "--print"], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "ROS_HOME": str(tmp_path)})
    if proc.returncode == 0:
        pytest.skip("the Interbotix stack is installed here")
    assert "interbotix_xs_sdk" in proc.stderr


# ---- one robot per ROS domain, diagnostics ----

@pytest.mark.ros
def test_driver_refuses_to_start_when_another_robot_publishes_its_joint_states(start_node, test_node, contract):
    """A simulator (or a second driver) already publishing /aloha/joint_states: two robots on one domain."""
    from sensor_msgs.msg import JointState

    from aloha_contract.ros import qos_profile
    test_node.create_publisher(JointState, contract.topic("joint_states"), qos_profile(contract, "joint_states"))
    driver = start_node("aloha_bringup", "aloha_driver", params={"startup_timeout_s": 2.0})
    assert driver.proc.wait(timeout=START_TIMEOUT_S) == 1, driver.output
    assert "another driver or simulator of this robot is already running on ROS domain" in driver.output
    assert f"{contract.topic('joint_states')} is already published by /{test_node.get_name()}" in driver.output
    assert "ROS_DOMAIN_ID" in driver.output and "Traceback" not in driver.output, driver.output
    assert "waiting for" not in driver.output  # refused before touching the arms


BLIND_START_UP_CHECK_SCRIPT = blind_start_up_check_script("aloha_bringup.aloha_driver")


@pytest.mark.ros
def test_a_driver_that_discovery_hid_another_robot_from_leaves_once_it_sees_it(start_node, test_node, contract):
    """Discovery slower than the start-up check (measured once in CI for the sim): the driver, started and set up,
    sees a second publisher of the robot's joint states just after start-up and leaves (one line, status 1)."""
    import os
    import sys

    from sensor_msgs.msg import JointState

    from aloha_contract.ros import qos_profile
    test_node.create_publisher(JointState, contract.topic("joint_states"), qos_profile(contract, "joint_states"))
    start_node("aloha_bringup", "fake_interbotix")
    driver = NodeProcess([sys.executable, "-c", BLIND_START_UP_CHECK_SCRIPT, "--ros-args"],
                         {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_until(lambda: driver.proc.poll() is not None, START_TIMEOUT_S), driver.output
    finally:
        driver.stop()
    assert driver.proc.returncode == 1, driver.output
    assert "found just after start-up" in driver.output and "ROS_DOMAIN_ID" in driver.output, driver.output
    assert "Traceback" not in driver.output, driver.output


class DriverDiagnostics:
    def __init__(self, node, contract):
        from diagnostic_msgs.msg import DiagnosticArray
        self.latest_status = Latest()
        node.create_subscription(DiagnosticArray, contract.topic("diagnostics"),
                                 lambda msg: [self.latest_status(s) for s in msg.status if s.name == "aloha_driver"], 10)

    def values(self) -> dict:
        status = self.latest_status.last()
        if status is None:
            return {}
        level = status.level
        return {"level": int.from_bytes(level, "little") if isinstance(level, bytes) else int(level),
                "message": status.message, **{kv.key: kv.value for kv in status.values}}


@pytest.mark.ros
def test_driver_publishes_rates_refusals_and_the_last_fault_on_diagnostics(fake_robot, test_node, contract):
    _, driver = fake_robot
    diagnostics = DriverDiagnostics(test_node, contract)
    state = aloha_state(test_node, contract)
    pub = command_publisher(test_node, contract)
    start = vector(state.after(0), contract)
    assert wait_until(lambda: diagnostics.values().get("ready") == "true", 10), diagnostics.values()
    status = diagnostics.values()
    assert status["level"] == 0 and float(status["joint_states_rate_hz"]) > 10, status
    for robot in ("follower_left", "follower_right"):
        assert float(status[f"{robot}_joint_states_rate_hz"]) > 10, status

    bad = start.copy()
    bad[2] = float("nan")
    safe = start.copy()
    safe[0] += 0.01
    for _ in range(20):  # commands at the control rate: half refused, half forwarded
        send(test_node, pub, contract, bad)
        time.sleep(contract.control_period_s)
        send(test_node, pub, contract, safe)
        time.sleep(contract.control_period_s)

    def counted(values):
        return int(values.get("refused_invalid", 0)) >= 5 and int(values.get("forwarded_commands", 0)) >= 5

    assert wait_until(lambda: counted(diagnostics.values()), 10), (diagnostics.values(), driver.output)
    status = diagnostics.values()
    assert status["level"] == 1 and "refused command [invalid]" in status["last_fault"], status
    assert "NaN" in status["last_fault"] and int(status["refused_commands"]) >= 5, status
    for key in ("commands_rate_hz", "forwarded_rate_hz", "follower_state_errors", "stale_followers"):
        assert key in status, status
