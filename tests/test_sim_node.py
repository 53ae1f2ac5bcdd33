"""The simulator node, seen from another process exactly as the real robot would be seen."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from ros_harness import blind_start_up_check_script, wait_until

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
    from sensor_msgs.msg import Image, JointState

    from aloha_contract.ros import qos_profile
    from aloha_interfaces.msg import StageScore

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
    from builtin_interfaces.msg import Time

    from aloha_contract.ros import vector_to_joint_state
    pub.publish(vector_to_joint_state(vec, contract.joint_names, stamp or Time()))


def command_publisher(node, contract):
    from sensor_msgs.msg import JointState

    from aloha_contract.ros import qos_profile
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
    # the safety gate takes at most velocity limit x period per step: ramp there, 0.02 rad per command
    for s in np.linspace(0.0, 1.0, 16)[1:]:
        send_command(pub, contract, start + s * (target - start))
        time.sleep(0.03)
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
    # logged per reason key (malformed message / invalid values), each with its first detail
    assert any("[malformed]" in line and "NaN" in line for line in refusals), refusals
    assert any("[invalid]" in line and "gripper range" in line for line in refusals), refusals


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


# ---- safety gate, diagnostics, parameters, shutdown, faults, lockstep (issue 8) ----

class Diagnostics:
    """The latest /diagnostics status of one node, as a dict of its values (plus level and message)."""

    def __init__(self, node, contract, name="aloha_sim"):
        from diagnostic_msgs.msg import DiagnosticArray
        self.name, self.lock, self.statuses = name, threading.Lock(), []
        self.sub = node.create_subscription(DiagnosticArray, contract.topic("diagnostics"), self._store, 10)

    def _store(self, msg):
        with self.lock:
            self.statuses += [s for s in msg.status if s.name == self.name]

    def latest(self) -> dict:
        with self.lock:
            if not self.statuses:
                return {}
            s = self.statuses[-1]
        return {"level": int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                "message": s.message, **{kv.key: kv.value for kv in s.values}}

    def wait(self, predicate, timeout_s) -> dict:
        wait_until(lambda: predicate(self.latest()), timeout_s, poll_s=0.1)
        return self.latest()


def refusal_lines(sim) -> list[str]:
    return [line for line in sim.output.splitlines() if "refused joint command" in line]


def test_single_step_jump_is_refused_and_counted_in_diagnostics(start_node, test_node):
    """Measured defect: a 3-rad single-step waist jump was accepted and the arm swung 3.77 rad."""
    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    diag = Diagnostics(test_node, contract)
    pub = command_publisher(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    state_topic = contract.topic("joint_states")
    assert wait_until(lambda: len(rec.get(state_topic)) > 5 and pub.get_subscription_count() > 0, 40), sim.output
    start = np.array(rec.get(state_topic)[-1][1].position)
    jump = start.copy()
    jump[0] += 3.0  # within the joint limits, far beyond velocity limit x period
    # the command topic keeps only the newest message (depth 1): on a loaded machine one may replace another
    # before the sim reads it, so send until ten refusals are counted rather than exactly ten commands
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and int(diag.latest().get("refused_step", 0)) < 10:
        send_command(pub, contract, jump)
        time.sleep(0.05)
    status = diag.wait(lambda d: int(d.get("refused_step", 0)) >= 10, 5)
    assert int(status.get("refused_step", 0)) >= 10, (status, sim.output)
    assert status["level"] >= 1 and "[step]" in status["last_fault"]
    held = np.array(rec.get(state_topic)[-1][1].position)
    assert abs(held[0] - start[0]) < 0.02, (held[0], start[0])
    lines = refusal_lines(sim)
    assert lines and "[step]" in lines[0] and "left_waist" in lines[0], lines
    for key in ("joint_states_rate_hz", "camera_rate_hz", "refused_commands", "dropped_catch_up_steps", "last_fault"):
        assert key in status, status


def test_refusal_log_is_throttled_by_reason_not_text(start_node, test_node):
    """Measured defect: alternating bad commands gave 2,008 warning lines in 20 s (one per distinct text)."""
    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    diag = Diagnostics(test_node, contract)
    pub = command_publisher(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    state_topic = contract.topic("joint_states")
    assert wait_until(lambda: len(rec.get(state_topic)) > 5 and pub.get_subscription_count() > 0, 40), sim.output
    start = np.array(rec.get(state_topic)[-1][1].position)
    t0 = time.monotonic()
    sent = 300
    for i in range(sent):
        bad = start.copy()
        bad[i % 6] = 10.0 + 0.001 * i if i % 2 else -10.0 - 0.001 * i  # a different text every time
        send_command(pub, contract, bad)
        time.sleep(0.005)
    status = diag.wait(lambda d: int(d.get("refused_commands", 0)) >= sent * 0.9, 15)
    elapsed_s = time.monotonic() - t0
    refused = int(status.get("refused_commands", 0))
    # depth-1 QoS replaces a command the node has not taken yet (on a loaded machine most of them: 71 of 300
    # arrived once in CI beside other jobs); every arrival is refused and counted, each with its own text
    assert refused >= 50, status
    lines = refusal_lines(sim)
    # one reason key ("invalid"): at most one line per second of sending, plus the first
    assert 1 <= len(lines) <= elapsed_s + 2, (len(lines), elapsed_s, lines[:5])
    assert "more like it" in sim.output or len(lines) == 1


@pytest.mark.parametrize("param,value", [("camera_rate_hz", "0.0"), ("image_height", "abc"), ("image_width", "3"),
                                         ("mode", "fast")])
def test_out_of_range_parameter_is_refused_at_start_naming_it(start_node, param, value):
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, param: value})
    rc = sim.proc.wait(timeout=60)
    sim.stop()
    assert rc != 0, sim.output
    assert f"parameter {param}" in sim.output, sim.output
    assert "Traceback" not in sim.output, sim.output


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_signals_end_the_sim_cleanly(start_node, test_node, sig):
    """Measured defect: SIGTERM gave exit 1 with an ExternalShutdownException traceback, and the camera
    thread published into the dead context (RCLError: publisher's context is invalid)."""
    import os
    import signal

    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params=SMALL)
    cam_topic = contract.camera_topic(contract.cameras[0])
    assert wait_until(lambda: len(rec.get(cam_topic)) > 3, 40), sim.output  # the camera thread is busy
    os.killpg(sim.proc.pid, getattr(signal, sig))
    rc = sim.proc.wait(timeout=20)
    sim.stop()
    assert rc == 0, sim.output
    for bad in ("Traceback", "RCLError", "context is invalid", "ExternalShutdownException"):
        assert bad not in sim.output, sim.output


CAMERA_FAULT_SCRIPT = """
import os, sys
from aloha_sim import camera_worker
render = camera_worker.CameraRenderer.render
def failing_render(self, data):
    if os.path.exists(os.environ["FAIL_RENDER_FLAG"]):
        raise RuntimeError("injected render failure (test)")
    return render(self, data)
camera_worker.CameraRenderer.render = failing_render
from aloha_sim.sim_node import main
sys.exit(main())
"""


def test_camera_worker_death_is_reported_and_stops_the_sim(ros_domain, test_node, tmp_path):
    import os
    import sys

    from ros_harness import NodeProcess

    from aloha_contract import load_contract
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    diag = Diagnostics(test_node, contract)
    flag = tmp_path / "fail_render"
    sim = NodeProcess([sys.executable, "-c", CAMERA_FAULT_SCRIPT, "--ros-args", "-p", "image_height:=64",
                       "-p", "image_width:=64"],
                      {**os.environ, "PYTHONUNBUFFERED": "1", "FAIL_RENDER_FLAG": str(flag)})
    try:
        cam_topic = contract.camera_topic(contract.cameras[0])
        assert wait_until(lambda: len(rec.get(cam_topic)) > 3 and diag.latest(), 40), sim.output
        flag.touch()  # from now on every render fails
        rc = sim.proc.wait(timeout=30)
    finally:
        sim.stop()
    assert rc != 0, sim.output
    assert "camera render worker died" in sim.output and "injected render failure" in sim.output, sim.output
    assert "Traceback" not in sim.output, sim.output
    status = diag.wait(lambda d: d.get("level") == 2, 5)
    assert status.get("level") == 2 and "camera render worker died" in status["message"], status


def test_lockstep_reports_stale_stamps_and_scores_carry_their_step(start_node, test_node):
    from builtin_interfaces.msg import Time

    from aloha_contract import load_contract
    from aloha_interfaces.srv import ResetEpisode
    contract = load_contract()
    rec, _ = subscribe_contract_topics(test_node, contract)
    diag = Diagnostics(test_node, contract)
    pub = command_publisher(test_node, contract)
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "mode": "lockstep"})
    client = test_node.create_client(ResetEpisode, contract.service("reset_episode"))
    assert client.wait_for_service(timeout_sec=40), sim.output
    state_topic, score_topic = contract.topic("joint_states"), contract.topic("stage_score")
    assert wait_until(lambda: pub.get_subscription_count() > 0, 10)
    future = client.call_async(ResetEpisode.Request(task="transfer_cube", seed=0))
    assert wait_until(future.done, 30) and future.result().success
    assert wait_until(lambda: len(rec.get(state_topic)) >= 1, 10)
    start = np.array(rec.get(state_topic)[-1][1].position)

    period = 1.0 / contract.control_rate_hz
    for step in range(3):  # three good steps, each stamped with the sim time it answers
        n = len(rec.get(state_topic))
        send_command(pub, contract, start, Time(sec=0, nanosec=int(round(step * period * 1e9))))
        assert wait_until(lambda n=n: len(rec.get(state_topic)) > n, 10), sim.output
    assert wait_until(lambda: rec.get(score_topic) and rec.get(score_topic)[-1][1].episode_step == 3, 5)
    score = rec.get(score_topic)[-1][1]
    assert abs(score.header.stamp.sec + score.header.stamp.nanosec * 1e-9 - 3 * period) < 1e-6

    for _ in range(50):  # stale: for t = 5 s while the sim is at 0.06 s
        send_command(pub, contract, start, Time(sec=5, nanosec=0))
        time.sleep(0.003)
    status = diag.wait(lambda d: int(d.get("stale_lockstep_commands", 0)) >= 40, 10)
    assert int(status.get("stale_lockstep_commands", 0)) >= 40, status
    stale_lines = [line for line in sim.output.splitlines() if "lockstep: ignoring a command" in line]
    assert 1 <= len(stale_lines) <= 3, stale_lines

    # a refused command stamped now still advances one period, holding the last safe target
    jump = start.copy()
    jump[0] += 3.0
    n = len(rec.get(state_topic))
    send_command(pub, contract, jump, Time(sec=0, nanosec=int(round(3 * period * 1e9))))
    assert wait_until(lambda: len(rec.get(state_topic)) > n, 10), sim.output
    assert abs(rec.get(state_topic)[-1][1].position[0] - start[0]) < 0.02
    assert wait_until(lambda: rec.get(score_topic)[-1][1].episode_step == 4, 5)
    assert any("[step]" in line for line in refusal_lines(sim))


def test_reason_log_counts_every_event_and_logs_each_reason_once_per_interval():
    from aloha_contract.reason_log import ReasonLog
    log = ReasonLog(interval_s=1.0)
    due = [log.record("invalid" if i % 2 else "step", now_s=i * 0.01) for i in range(200)]  # 2 s of events
    assert log.counts == {"invalid": 100, "step": 100} and log.total == 200
    assert sum(d is not None for d in due) == 4  # each reason at t=0 and again after 1 s
    assert due[0] == 0 and max(d for d in due if d is not None) > 0  # the repeat says how many were suppressed


# ---- one simulator per ROS domain ----

def wait_for_exit(proc_handle, timeout_s: float) -> int:
    """The node's exit status; a clear failure with its output when it is still running after ``timeout_s``."""
    if not wait_until(lambda: proc_handle.proc.poll() is not None, timeout_s):
        proc_handle.stop()
        pytest.fail(f"still running after {timeout_s:.0f} s; its output:\n{proc_handle.output}")
    return proc_handle.proc.returncode


def test_a_second_simulator_on_the_same_domain_refuses_to_start(start_node, test_node):
    """Measured defect: two main jobs started at once on one domain each reset both simulators, without a warning."""
    from aloha_contract import load_contract
    from aloha_interfaces.srv import ResetEpisode
    contract = load_contract()
    first = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    assert first.wait_for_output("ALOHA sim ready", 60), first.output
    second = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    rc = wait_for_exit(second, 60)
    second.stop()
    assert rc != 0, second.output
    assert "another simulator or robot is already running on ROS domain" in second.output, second.output
    assert "Stop the other one" in second.output and "ROS_DOMAIN_ID" in second.output, second.output
    assert "Traceback" not in second.output, second.output
    if "found just after start-up" not in second.output:  # else discovery was slower than the check (once in CI)
        assert "/aloha/reset_episode is already served" in second.output, second.output
        assert "ALOHA sim ready" not in second.output, second.output

    # the first one keeps running and serving: it was never reset by the second
    assert first.proc.poll() is None, first.output
    client = test_node.create_client(ResetEpisode, contract.service("reset_episode"))
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(ResetEpisode.Request(task="transfer_cube", seed=4))
    assert wait_until(future.done, 20) and future.result().success, first.output
    assert first.output.count("episode reset:") == 1, first.output


BLIND_START_UP_CHECK_SCRIPT = blind_start_up_check_script("aloha_sim.sim_node")


def run_blind_second_sim(params: dict, ros_args: list[str] | None = None):
    """A second sim whose start-up check sees nothing, run until it exits: (its process, its exit status)."""
    import os
    import sys

    from ros_harness import NodeProcess
    argv = [sys.executable, "-c", BLIND_START_UP_CHECK_SCRIPT, "--ros-args", *(ros_args or [])]
    for key, value in params.items():
        argv += ["-p", f"{key}:={value}"]
    second = NodeProcess(argv, {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        return second, wait_for_exit(second, 60)
    finally:
        second.stop()


def test_a_second_simulator_missed_at_start_up_leaves_and_the_first_keeps_running(start_node, test_node):
    """Measured defect (CI): discovery took longer than the 3 s start-up check, and the second sim ran on."""
    first = start_node("aloha_sim", "sim_node", params={**SMALL, "camera_rate_hz": 5.0})
    assert first.wait_for_output("ALOHA sim ready", 60), first.output
    second, rc = run_blind_second_sim({**SMALL, "camera_rate_hz": 5.0})
    assert rc == 1, second.output
    assert "ALOHA sim ready" in second.output, second.output  # it did start: the check above was blind
    assert "found just after start-up" in second.output and "ROS_DOMAIN_ID" in second.output, second.output
    assert "Traceback" not in second.output, second.output
    from aloha_sim.sim_node import PEER_WATCH_PERIOD_S
    time.sleep(1.5 * PEER_WATCH_PERIOD_S)  # time for the first one to act on what it saw: it must not leave
    assert first.proc.poll() is None, first.output  # the one that was there first stays


def test_a_late_subscriber_gets_no_stale_stage_score(start_node, test_node):
    """Measured defect: the score topic replayed old scores to late joiners (transient local), so a node that
    joined after an episode ended could read that episode's score as the current one."""
    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from aloha_interfaces.msg import StageScore
    contract = load_contract()
    early, _ = subscribe_contract_topics(test_node, contract)
    start_node("aloha_sim", "sim_node", params={**SMALL, "mode": "lockstep"})  # publishes at reset, then waits
    score_topic = contract.topic("stage_score")
    assert wait_until(lambda: len(early.get(score_topic)) >= 1, 40)
    late = []
    test_node.create_subscription(StageScore, score_topic, late.append, qos_profile(contract, "stage_score"))
    time.sleep(2.0)  # the lockstep sim publishes nothing new without a command
    assert late == []


def test_lockstep_sim_refuses_to_follow_a_clock(start_node):
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "mode": "lockstep", "use_sim_time": True})
    rc = sim.proc.wait(timeout=60)
    sim.stop()
    assert rc != 0, sim.output
    assert "parameter use_sim_time:=true with mode:=lockstep" in sim.output, sim.output
    assert "Traceback" not in sim.output, sim.output


def test_a_lockstep_simulator_in_another_namespace_missed_at_start_up_leaves(start_node, test_node):
    """Measured defect (CI): the start-up check missed the first lockstep sim's /clock, and the watch after
    start-up looked only at this namespace's joint states: the second ran on, both driving the global /clock."""
    lockstep = {**SMALL, "camera_rate_hz": 5.0, "mode": "lockstep"}
    first = start_node("aloha_sim", "sim_node", params=lockstep, ros_args=["-r", "__ns:=/robot_a"])
    assert first.wait_for_output("ALOHA sim ready", 60), first.output
    second, rc = run_blind_second_sim(lockstep, ["-r", "__ns:=/robot_b"])
    assert rc == 1, second.output
    assert "ALOHA sim ready" in second.output, second.output  # it did start: the check above was blind
    assert "found just after start-up" in second.output and "/clock" in second.output, second.output
    assert first.proc.poll() is None, first.output
