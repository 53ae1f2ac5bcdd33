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


def near_misses(contract, base: np.ndarray, rng: np.random.Generator, n: int):
    """Well-formed commands close to the safety gate's edges: small safe moves, and steps, limits and gripper
    values just beyond them (what a policy gone slightly wrong sends)."""
    from builtin_interfaces.msg import Time

    from aloha_contract.ros import vector_to_joint_state
    arm_indices = [i for i in range(len(base)) if i not in contract.gripper_indices]
    for i in range(n):
        vec = base + rng.uniform(-0.02, 0.02, len(base))
        joint = int(rng.choice(arm_indices))
        kind = i % 4
        if kind == 1:
            vec[joint] = base[joint] + rng.choice([-1, 1]) * 0.2  # beyond velocity limit x period
        elif kind == 2:
            lo, hi = contract.joint_limits_rad[joint % (len(contract.arm_joints) + 1)]
            vec[joint] = hi + contract.joint_margin_rad + 0.01  # just beyond limit + margin
        elif kind == 3:
            vec[int(rng.choice(contract.gripper_indices))] = 1.15  # just beyond the gripper range
        yield vector_to_joint_state(vec, contract.joint_names, Time(sec=int(rng.integers(0, 100)), nanosec=0))


class NodeDiagnostics:
    """The latest /diagnostics status of one node, as a dict (level, message and its values)."""

    def __init__(self, node, contract, name: str):
        from diagnostic_msgs.msg import DiagnosticArray
        self.name, self.latest = name, {}
        node.create_subscription(DiagnosticArray, contract.topic("diagnostics"), self._store, 10)

    def _store(self, msg) -> None:
        for status in msg.status:
            if status.name == self.name:
                self.latest = {"message": status.message, **{kv.key: kv.value for kv in status.values}}

    def wait(self, predicate, timeout_s: float) -> dict:
        wait_until(lambda: predicate(self.latest), timeout_s, poll_s=0.1)
        return self.latest


def processed(status: dict) -> int:
    return int(status.get("refused_commands", 0)) + int(status.get("forwarded_commands", 0))


def count_log_lines(proc) -> int:
    return len(proc.output.splitlines())


@pytest.mark.parametrize("mode", ["realtime", "lockstep"])
def test_fuzz_sim_node(start_node, test_node, mode):
    from sensor_msgs.msg import JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from aloha_interfaces.srv import ResetEpisode
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


def test_fuzz_aloha_driver(start_node, test_node):
    """The real-robot driver over the fake Interbotix arms: nothing unsafe ever reaches the arms' topics."""
    from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
    from sensor_msgs.msg import JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile, vector_to_joint_state
    from aloha_contract.safety import SafetyGate
    contract = load_contract()
    names = contract.joint_names
    states: list = []
    test_node.create_subscription(JointState, contract.topic("joint_states"), states.append,
                                  qos_profile(contract, "joint_states"))
    forwarded: dict[str, list] = {}
    for arm in contract.arms:
        robot = contract.follower_robot(arm)
        for kind, msg_type in (("group", JointGroupCommand), ("single", JointSingleCommand)):
            key = f"{robot}/{kind}"
            forwarded[key] = []
            test_node.create_subscription(
                msg_type, contract.topic(f"follower_joint_{kind}_command", arm_robot=robot), forwarded[key].append, 100)
    pub = test_node.create_publisher(JointState, contract.topic("joint_commands"), qos_profile(contract, "joint_commands"))
    diagnostics = NodeDiagnostics(test_node, contract, "aloha_driver")
    fake = start_node("aloha_bringup", "fake_interbotix")
    driver = start_node("aloha_bringup", "aloha_driver")
    assert driver.wait_for_output("ALOHA driver ready", 60), driver.output + fake.output
    assert wait_until(lambda: len(states) > 0 and pub.get_subscription_count() > 0, 10)
    start = np.array(states[-1].position)
    lines_before = count_log_lines(driver)

    # bounded in count on the driver's side: depth-1 QoS drops what it cannot take, so send until its diagnostics
    # count >= 1,000 commands handled (a few seconds here; more on a loaded machine)
    rng = np.random.default_rng(1)
    messages = list(adversarial_joint_states(names, start, rng, 2200)) + list(near_misses(contract, start, rng, 800))
    rng.shuffle(messages)
    t0 = time.monotonic()
    for sent, msg in enumerate(messages, start=1):
        pub.publish(msg)  # stamps random or zero: out of order for any stream
        time.sleep(0.003)
        if sent % 100 == 0 and (processed(diagnostics.latest) >= 1000 or time.monotonic() - t0 > 45):
            break
    fuzz_s = time.monotonic() - t0
    status = diagnostics.wait(lambda d: processed(d) >= 1000, 5)
    assert processed(status) >= 1000, (sent, status, driver.output[-3000:])
    assert int(status["forwarded_commands"]) > 0, status  # the near misses that were safe went through
    assert driver.proc.poll() is None and fake.proc.poll() is None, driver.output + fake.output

    # 0 unsafe commands forwarded: every arm target finite, within limits + margin and within the tracking bound of
    # the start pose (every well-formed command the fuzz sent was within 0.05 rad of it, so the arms never left it);
    # every gripper target inside the calibrated range of the accepted normalised commands
    calibration = contract.gripper_calibration("real")
    gripper_lo, gripper_hi = sorted(calibration.follower_gripper_joint_rad.unnormalize(v)
                                    for v in contract.gripper_command_range)
    tracking = SafetyGate(contract).limits.max_tracking_error
    per_arm = len(contract.arm_joints) + 1
    for arm_i, arm in enumerate(contract.arms):
        robot = contract.follower_robot(arm)
        start_arm = start[arm_i * per_arm:arm_i * per_arm + len(contract.arm_joints)]
        for msg in list(forwarded[f"{robot}/group"]):
            values = np.asarray(msg.cmd, dtype=np.float64)
            assert msg.name == "arm" and values.shape == start_arm.shape and np.all(np.isfinite(values)), msg
            for v, (lo, hi) in zip(values, contract.joint_limits_rad):
                assert lo - contract.joint_margin_rad <= v <= hi + contract.joint_margin_rad, (robot, values)
            assert np.all(np.abs(values - start_arm) <= tracking[:len(start_arm)] + 1e-9), (robot, start_arm, values)
        for msg in list(forwarded[f"{robot}/single"]):
            assert msg.name == "gripper" and math.isfinite(msg.cmd) and gripper_lo <= msg.cmd <= gripper_hi, msg

    # still serves a valid command: a small step from where the arms are is forwarded
    target = np.array(states[-1].position)
    target[0] += 0.01
    group = forwarded[f"{contract.follower_robot(contract.arms[0])}/group"]

    def served():
        pub.publish(vector_to_joint_state(target, names, test_node.get_clock().now().to_msg()))
        return bool(group) and abs(group[-1].cmd[0] - target[0]) < 1e-6

    assert wait_until(served, 10, poll_s=0.05), driver.output[-3000:]
    # the log stays bounded: throttled per reason (at most ~1 line per reason per second of fuzzing)
    new_lines = count_log_lines(driver) - lines_before
    assert new_lines < 20 + 10 * fuzz_s, (new_lines, fuzz_s, driver.output[-5000:])
