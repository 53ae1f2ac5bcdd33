"""Fuzzing the rollout recorder over ROS: >= 1,000 malformed or adversarial messages to every subscription of
the recorder node (joint states, joint commands, the three cameras, stage score, policy value, policy run, the
RunPolicy goal status) and to its ``recording`` parameter (wrong types, undeclaring it, rapid toggles), some
while it records. Then: the process is alive, its log stayed bounded, every finished episode it wrote reads
back, and it still records a valid episode from well-formed input.

Bounded in time: a fixed number of paced messages (a few seconds of sending here), under a 45 s deadline."""

from __future__ import annotations

import json
import math
import re
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from ros_harness import wait_until
from test_fuzz_nodes import adversarial_joint_states, count_log_lines
from test_fuzz_policy_node import adversarial_images
from test_recorder_crash import HW, FakeRobot

pytestmark = pytest.mark.ros

FUZZ_DEADLINE_S = 45.0
EPISODE_LINE = re.compile(r"recording episode_\d+\.hdf5\.partial|episode_\d+\.hdf5: \d+ steps")
LOG_SOURCE = re.compile(r"\[(?:WARN|ERROR)\] \[[\d.]+\] \[rollout_recorder\]: ([^:]+):")


def odd_stamp(rng: np.random.Generator, i: int):
    """Zero, negative, extreme, non-normalised (nanosec >= 1e9), decreasing or random stamps."""
    from builtin_interfaces.msg import Time
    kind = i % 8
    if kind == 0:
        return Time(sec=0, nanosec=0)
    if kind == 1:
        return Time(sec=-int(rng.integers(1, 2**31)), nanosec=int(rng.integers(0, 10**9)))
    if kind == 2:
        return Time(sec=2**31 - 1, nanosec=999_999_999)
    if kind == 3:
        return Time(sec=-2**31, nanosec=0)
    if kind == 4:
        return Time(sec=int(rng.integers(0, 100)), nanosec=2**32 - 1)
    if kind == 5:
        return Time(sec=max(0, 10_000 - i), nanosec=0)  # going backwards
    return Time(sec=int(rng.integers(0, 2**31 - 1)), nanosec=int(rng.integers(0, 10**9)))


def well_formed_states(names: list[str], rng: np.random.Generator, n: int):
    """Valid JointStates with odd stamps (so they reach the synchroniser) and huge but finite values."""
    from aloha_contract.ros import vector_to_joint_state
    for i in range(n):
        q = rng.normal(0, 1, len(names))
        if i % 5 == 0:
            q[int(rng.integers(0, len(q)))] = float(rng.choice([1e308, -1e308, 3.4e38, 1e-320]))
        velocity = [math.nan] * len(names) if i % 7 == 0 else [1e300] * len(names) if i % 7 == 1 else None
        yield vector_to_joint_state(q, names, odd_stamp(rng, i), velocity=velocity,
                                    effort=[math.inf] * len(names) if i % 3 == 0 else None)


def near_miss_images(hw: tuple[int, int], rng: np.random.Generator, n: int):
    """Images at (or next to) the configured size: wrong step, data shorter or longer than height*step, wrong
    encodings at the right size, transposed sizes, valid rgb8/bgr8 frames with odd stamps."""
    from sensor_msgs.msg import Image
    h, w = hw
    for i in range(n):
        msg = Image()
        msg.height, msg.width, msg.encoding, msg.step = h, w, "rgb8", w * 3
        size = h * w * 3
        kind = i % 9
        if kind == 0:
            size -= int(rng.integers(1, w * 3 + 1))  # shorter than height*step
        elif kind == 1:
            size += int(rng.integers(1, 100))
        elif kind == 2:
            msg.step = w * 3 + int(rng.choice([-3, -1, 1, 3, 2**31]))
        elif kind == 3:
            msg.height, msg.width = w, h
            msg.step = h * 3
        elif kind == 4:
            msg.encoding = str(rng.choice(["mono8", "rgba8", "16UC1", "RGB8", "rgb8 ", "", "jpeg"]))
        elif kind == 5:
            msg.height, msg.width, msg.step = 2**32 - 1, 2**32 - 1, 2**32 - 1  # h*w*3 overflows 32 bits
            size = int(rng.integers(0, 64))
        elif kind == 6:
            msg.encoding = "bgr8"
        msg.data = rng.integers(0, 256, max(0, size), dtype=np.uint8).tobytes()
        msg.header.stamp = odd_stamp(rng, i)
        yield msg


def adversarial_stage_scores(rng: np.random.Generator, n: int):
    from aloha_interfaces.msg import StageScore
    specials = [math.nan, math.inf, -math.inf, 3.4e38, -3.4e38, -1.0, 100.0, 1e-45, 0.0]
    for i in range(n):
        yield StageScore(task=["", "transfer_cube", "x" * 2000, "\x00\x01", "\u00e9\u4e2d"][i % 5],
                         score=float(specials[i % len(specials)]) if i % 2 else float(rng.normal(0, 1e6)),
                         episode_step=int(rng.integers(0, 2**32)), stage="s" * int(rng.integers(0, 300)),
                         stages_reached=[str(j) for j in range(int(rng.integers(0, 40)))],
                         success=bool(i % 3 == 0), source=["sim", "operator", "", "?" * 100][i % 4])


def malformed_runs(rng: np.random.Generator, n: int):
    """/aloha/policy/run payloads: not JSON, not objects, no or odd goal ids, deep nesting, huge text."""
    fixed = ["", "{", "}", "null", "[]", "123", '"goal"', "{}", "nan", "[1, 2", '{"goal_id": null}',
             '{"goal_id": [1, 2]}', '{"goal_id": {}}', "[" * 100_000, '{"a":' * 50_000, "\x00" * 100,
             '{"goal_id": "x", "seed": "abc"}', '{"goal_id": "y", "seed": 1e999}', '{"goal_id": "z", "seed": null}',
             json.dumps({"goal_id": "w", "task": "t" * 200_000}), "{\"goal_id\": \"\\ud800\"}", "1e999", "-"]
    for i in range(n):
        if i < len(fixed):
            yield fixed[i]
        else:
            yield bytes(rng.integers(32, 127, int(rng.integers(0, 200)), dtype=np.uint8)).decode()


def adversarial_run_fields() -> list[dict]:
    """Well-formed run announcements whose fields are of the wrong type or out of range (used with a goal)."""
    return [{"seed": "abc"}, {"seed": 1e999}, {"seed": None}, {"seed": 2**80}, {"seed": [1]}, {"seed": 1.5},
            {"task": None, "checkpoint": {"a": 1}, "mode": [1, 2]}, {"task": "t" * 100_000},
            {"task": "\x00nul"}, {"seed": True, "task": 5}]


def status_array(entries: list[tuple[bytes, int]]):
    from action_msgs.msg import GoalStatus, GoalStatusArray
    msg = GoalStatusArray()
    for goal, status in entries:
        s = GoalStatus(status=status)
        s.goal_info.goal_id.uuid = list(goal)
        s.goal_info.stamp.sec = -1
        msg.status_list.append(s)
    return msg


def adversarial_statuses(rng: np.random.Generator, n: int):
    """Goal status arrays: empty, unknown ids in any state (terminal ones never seen executing), status values
    outside the enum, duplicate ids, long arrays; never executing (those start episodes, sent separately)."""
    for i in range(n):
        kind = i % 5
        if kind == 0:
            yield status_array([])
        elif kind == 1:
            yield status_array([(uuid.uuid4().bytes, int(rng.choice([0, 1, 3, 4, 5, 6])))])
        elif kind == 2:
            yield status_array([(uuid.uuid4().bytes, int(rng.choice([-128, -1, 7, 99, 127])))])
        elif kind == 3:
            goal = uuid.uuid4().bytes
            yield status_array([(goal, 4), (goal, 6), (goal, 5), (goal, 0)])
        else:
            statuses = [int(s) for s in rng.integers(-128, 128, int(rng.integers(50, 300)))]
            yield status_array([(uuid.uuid4().bytes, 3 if s == 2 else s) for s in statuses])


class ParamClient:
    """The recorder's SetParameters / SetParametersAtomically services, requests sent without waiting."""

    def __init__(self, node, recorder):
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically
        self.recorder = recorder
        self.single = node.create_client(SetParameters, "/rollout_recorder/set_parameters")
        self.atomic = node.create_client(SetParametersAtomically, "/rollout_recorder/set_parameters_atomically")
        assert self.single.wait_for_service(timeout_sec=20) and self.atomic.wait_for_service(timeout_sec=20)

    def send(self, params, atomic: bool = False):
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically
        if atomic:
            return self.atomic.call_async(SetParametersAtomically.Request(parameters=params))
        return self.single.call_async(SetParameters.Request(parameters=params))

    def set_recording(self, value: bool) -> bool:
        future = self.send([recording_param(value)])
        assert wait_until(future.done, 20), f"set_parameters did not answer: {self.recorder.output[-5000:]}"
        return future.result().results[0].successful


def recording_param(value, kind: str = "bool"):
    """A `recording` parameter of the given wire type (bool or a wrong one)."""
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.msg import ParameterType as T
    from rcl_interfaces.msg import ParameterValue as V
    values = {
        "bool": V(type=T.PARAMETER_BOOL, bool_value=bool(value)),
        "int": V(type=T.PARAMETER_INTEGER, integer_value=1),
        "int_min": V(type=T.PARAMETER_INTEGER, integer_value=-2**63),
        "double": V(type=T.PARAMETER_DOUBLE, double_value=math.nan),
        "string": V(type=T.PARAMETER_STRING, string_value="true"),
        "string_false": V(type=T.PARAMETER_STRING, string_value=""),
        "bytes": V(type=T.PARAMETER_BYTE_ARRAY, byte_array_value=[b"\x01"]),
        "bool_array": V(type=T.PARAMETER_BOOL_ARRAY, bool_array_value=[True, False]),
        "int_array": V(type=T.PARAMETER_INTEGER_ARRAY, integer_array_value=[1] * 1000),
        "double_array": V(type=T.PARAMETER_DOUBLE_ARRAY, double_array_value=[math.inf]),
        "string_array": V(type=T.PARAMETER_STRING_ARRAY, string_array_value=["true"]),
        "not_set": V(type=T.PARAMETER_NOT_SET),  # would undeclare it: a static parameter refuses
        "int_with_bool": V(type=T.PARAMETER_INTEGER, bool_value=True),
    }
    return Parameter(name="recording", value=values[kind])


WRONG_KINDS = ["int", "int_min", "double", "string", "string_false", "bytes", "bool_array", "int_array",
               "double_array", "string_array", "not_set", "int_with_bool"]


def finished_episode_checks(path, cameras: list[str]):
    """A finished episode reads back whole: 14-dim rows, (T, H, W, 3) frames of every camera, complete."""
    from rollout_recorder.episode_file import read_act_episode
    episode = read_act_episode(path)
    steps = episode.num_steps
    assert episode.qpos.shape == (steps, 14) and episode.action.shape == (steps, 14), path
    assert sorted(episode.images) == sorted(cameras), (path, list(episode.images))
    for cam in cameras:
        assert episode.images[cam].shape == (steps, *HW, 3), (path, cam, episode.images[cam].shape)
        assert episode.frame_valid[cam].shape == (steps,), (path, cam)
    assert episode.attrs["complete"] in (True, 1), path
    return episode


def test_fuzz_recorder_node(start_node, test_node, tmp_path):
    from std_msgs.msg import Float32, String

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile

    contract = load_contract()
    names = contract.joint_names
    out = tmp_path / "rollouts"
    recorder = start_node("rollout_recorder", "recorder_node", params={
        "out_dir": str(out), "image_height": HW[0], "image_width": HW[1], "reserve_mb": 0, "flush_every": 5,
        "max_episode_s": 10.0, "policy_checkpoint": "fuzz@0", "task": "fuzz"})
    assert recorder.wait_for_output("recorder ready", 60), recorder.output
    robot = FakeRobot(test_node, contract)  # every contract stream the recorder subscribes to but the run topic
    pub_run = test_node.create_publisher(String, contract.topic("policy_run"), qos_profile(contract, "policy_run"))
    assert wait_until(lambda: robot.connected() and pub_run.get_subscription_count() > 0, 30), recorder.output
    params = ParamClient(test_node, recorder)
    lines_before = count_log_lines(recorder)
    rng = np.random.default_rng(0)
    cams = list(contract.cameras)
    sent = 0
    t0 = time.monotonic()

    def alive() -> bool:
        return recorder.proc.poll() is None

    def publish(pub, msgs, pause_s: float = 0.002) -> None:
        nonlocal sent
        for msg in msgs:
            pub.publish(msg)
            sent += 1
            time.sleep(pause_s)  # paced so that the recorder takes most of them (depth 1-10 queues)
            if time.monotonic() - t0 > FUZZ_DEADLINE_S:
                pytest.fail(f"fuzz ran past {FUZZ_DEADLINE_S} s after {sent} messages")

    def fuzz_streams(n: int) -> None:
        base = np.zeros(len(names))
        publish(robot.pub_state, adversarial_joint_states(names, base, rng, n))
        publish(robot.pub_cmd, adversarial_joint_states(names, base, rng, n // 2))
        for cam in cams:
            publish(robot.pub_cams[cam], adversarial_images(rng, n // 8))
            publish(robot.pub_cams[cam], near_miss_images(HW, rng, n // 8))
        publish(robot.pub_stage, adversarial_stage_scores(rng, n // 8))
        publish(robot.pub_value, (Float32(data=v) for v in [math.nan, math.inf, -math.inf, 3.4e38, -0.0] * (n // 40)))
        publish(pub_run, (String(data=text) for text in malformed_runs(rng, n // 8)))
        publish(robot.pub_status, adversarial_statuses(rng, n // 16), pause_s=0.01)

    # 1. idle: malformed input on every subscription
    fuzz_streams(240)
    assert alive(), recorder.output[-5000:]

    # 2. recording (started by the parameter): malformed input and well-formed messages with odd stamps and
    # huge values, which reach the synchroniser and the episode file
    assert params.set_recording(True), recorder.output[-3000:]
    fuzz_streams(240)
    publish(robot.pub_state, well_formed_states(names, rng, 120))
    publish(robot.pub_cmd, well_formed_states(names, rng, 60))
    for cam in cams:
        publish(robot.pub_cams[cam], (m for m in near_miss_images(HW, rng, 90) if m.height == HW[0]))
    assert params.set_recording(False), recorder.output[-3000:]
    assert alive(), recorder.output[-5000:]

    # 3. the parameter: every wrong wire type is refused (the parameter cannot be undeclared either), rapid
    # true/false toggles each get an answer, contradictory atomic sets
    for kind in WRONG_KINDS:
        future = params.send([recording_param(True, kind)])
        assert wait_until(future.done, 20), kind
        assert not future.result().results[0].successful, (kind, future.result())
        sent += 1
    requests = [([recording_param(i % 2 == 0)], False) for i in range(40)]
    requests += [([recording_param(True), recording_param(False), recording_param(True, "int")], True)] * 5
    requests += [([recording_param(v) for v in (True, False, True, False)], False)] * 5
    for first in range(0, len(requests), 4):  # 4 in flight: a service's request queue (depth 10) drops beyond
        futures = [params.send(p, atomic=atomic) for p, atomic in requests[first:first + 4]]
        sent += len(futures)
        assert wait_until(lambda futures=futures: all(f.done() for f in futures), 20), recorder.output[-3000:]
    assert params.set_recording(False)
    assert alive(), recorder.output[-5000:]

    # 4. RunPolicy goals whose run announcement is well-formed JSON with fields of the wrong type or range:
    # each goal starts an episode (executing) and ends it (a terminal status), storing those fields
    for i, fields in enumerate(adversarial_run_fields()):
        goal = uuid.uuid4().bytes
        publish(pub_run, [String(data=json.dumps({"goal_id": goal.hex(), **fields}))], pause_s=0.05)
        publish(robot.pub_status, [status_array([(goal, 2)])], pause_s=0.0)
        assert recorder.wait_for_output(f"goal {goal.hex()}", 10) or not alive(), recorder.output[-3000:]
        publish(robot.pub_state, well_formed_states(names, rng, 5))
        publish(robot.pub_stage, adversarial_stage_scores(rng, 3))
        publish(robot.pub_value, [Float32(data=math.nan)])
        publish(robot.pub_status, [status_array([(goal, 4 + i % 3), (goal, 2)])], pause_s=0.2)
        assert alive(), recorder.output[-5000:]
    # a burst: many goals executing in one array, and the same goal flapping
    goals = [uuid.uuid4().bytes for _ in range(5)]
    publish(robot.pub_status, [status_array([(g, 2) for g in goals])], pause_s=0.3)
    publish(robot.pub_status, [status_array([(goals[-1], s)]) for s in (2, 4, 2, 6, 2, 5)], pause_s=0.05)
    fuzz_s = time.monotonic() - t0
    assert sent >= 1000, sent
    assert fuzz_s < FUZZ_DEADLINE_S, fuzz_s
    time.sleep(1.0)
    assert alive(), recorder.output[-5000:]

    # the log stayed bounded: two lines per episode started, and warnings throttled per reason (one line per
    # second at most from each source: a topic, a camera, the episode writer), not one per bad message
    new_lines = recorder.output.splitlines()[lines_before:]
    other_lines = [line for line in new_lines if not EPISODE_LINE.search(line)]
    per_source = Counter(m.group(1) for m in map(LOG_SOURCE.match, other_lines) if m)
    report = (len(new_lines), per_source, fuzz_s, "".join(line[:300] + "\n" for line in other_lines[-60:]))
    assert len(new_lines) < 400 and len(other_lines) < 10 + 4 * fuzz_s, report
    assert all(n <= 3 + fuzz_s for n in per_source.values()), report

    # 5. it still records a valid episode from well-formed input
    assert params.set_recording(False)
    service_start = re.compile(r"recording (episode_\d+)\.hdf5\.partial \(service\)")
    starts_before = len(service_start.findall(recorder.output))
    assert params.set_recording(True), recorder.output[-3000:]
    assert wait_until(lambda: len(service_start.findall(recorder.output)) > starts_before, 10), recorder.output[-3000:]
    good = out / f"{service_start.findall(recorder.output)[-1]}.hdf5"
    robot.step(75)  # 1.5 s at 50 Hz: joint states, the three cameras and commands
    assert params.set_recording(False)
    assert wait_until(good.exists, 20), recorder.output[-3000:]
    episode = finished_episode_checks(good, cams)
    assert 20 <= episode.num_steps <= 75, episode.num_steps
    assert episode.attrs["source"] == "service" and episode.attrs["stopped_by"] == "service"
    assert np.all(np.diff(episode.qpos[:, 0]) > 0), episode.qpos[:, 0]  # ticks in order, one row each
    assert all(episode.frame_valid[cam].any() for cam in cams), episode.frame_valid

    # no file written during the fuzz is a corrupt finished episode: every finished one reads back
    assert alive(), recorder.output[-5000:]
    finished = sorted(out.glob("*.hdf5"))
    assert good in finished
    for path in finished:
        finished_episode_checks(path, cams)
    # every episode was finished, even those whose task text carried a NUL (HDF5 strings cannot hold one)
    assert not list(out.glob("*.partial")), sorted(out.glob("*.partial"))
    print(f"fuzz: {sent} messages in {fuzz_s:.1f} s, {len(finished)} finished episodes, "
          f"{len(list(out.glob('*.partial')))} partial, {len(new_lines)} log lines ({len(other_lines)} not episodes)")
