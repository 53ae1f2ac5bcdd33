"""``recorder_node``: contract topics -> streamed ALOHA/ACT HDF5 episodes, one row per control tick.

Recording starts and stops by the contract's ``record_episode`` service (``aloha_interfaces/RecordEpisode``:
start with the task, stop -> the finished file, discard -> deleted, status -> steps and the live camera rates;
``record_demos`` and the scoring page use it), by the ``recording`` parameter (true/false, e.g.
``ros2 param set /rollout_recorder recording true``) and, with ``auto_record_policy`` (default), around
every RunPolicy goal: the goal starting to execute starts an episode, its end finishes it, so every policy
run becomes a rollout episode. The node only wires topics to ``sync.TickSynchronizer`` and
``episode_file.EpisodeWriter``; one writer thread does all disk work so that callbacks never wait on it.
While recording, a camera whose rate over the last second falls below the contract's threshold is warned
about in the log at once (and flagged in the episode's attributes at its end).
"""

from __future__ import annotations

import json
import queue
import sys
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any

import numpy as np
from action_msgs.msg import GoalStatus, GoalStatusArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from rclpy.qos import qos_profile_action_status_default
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, String

from aloha_contract import load_contract
from aloha_contract.node_main import run_node
from aloha_contract.ros import MessageError, image_to_rgb, joint_state_to_vector, qos_profile
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import RecordEpisode

from .camera_rate import LiveCameraRates
from .episode_file import DiskSpaceError, EpisodeWriter
from .sync import TickSynchronizer, low_rate_cameras

TERMINAL = (GoalStatus.STATUS_SUCCEEDED, GoalStatus.STATUS_CANCELED, GoalStatus.STATUS_ABORTED)
# stopped_by of an episode whose goal ended (the run's end, not the task's: "finished" may have failed the task)
GOAL_END = {GoalStatus.STATUS_SUCCEEDED: "goal finished", GoalStatus.STATUS_CANCELED: "goal canceled",
            GoalStatus.STATUS_ABORTED: "goal aborted"}
DEFAULT_MIN_CAMERA_RATE_FRACTION = 0.8  # of the control rate, when the contract names no threshold
RATE_CHECK_PERIOD_S = 1.0  # how often a running episode's live camera rates are checked (and warned about)
FINISH_WAIT_S = 60.0  # a stop or discard by service answers once the file is final (the queued rows written first)
RECORD_COMMANDS = {RecordEpisode.Request.STATUS: "status", RecordEpisode.Request.START: "start",
                   RecordEpisode.Request.STOP: "stop", RecordEpisode.Request.DISCARD: "discard"}


def stamp_s(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9



def _without_nul(value: Any) -> Any:
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, list):
        return [_without_nul(v) for v in value]
    return value

class Recording:
    """The episode being recorded: its synchroniser, counters and what the topics told about it."""

    def __init__(self, sync: TickSynchronizer, source: str, goal_id: str = "", *, partial_path: Path | None = None,
                 path: Path | None = None, task: str = "", live: LiveCameraRates | None = None):
        self.sync = sync
        self.source = source  # "service", "policy", or who asked the service (e.g. "teleop")
        self.goal_id = goal_id
        self.partial_path = partial_path  # the file being written
        self.path = path  # the file it becomes when finished
        self.task = task
        self.live = live
        self.rows = 0
        self.uncommanded = 0
        self.stale_rows = 0  # rows written before the clock went back (a lockstep reset's stale messages)
        self.first_s: float | None = None
        self.last_s: float | None = None
        self.stage: StageScore | None = None
        self.values: list[float] = []

    @property
    def duration_s(self) -> float:
        return 0.0 if self.first_s is None else self.last_s - self.first_s


class EpisodeEnd:
    """A stopped or discarded episode: what it held, and the writer thread's answer (the file) once it is done."""

    def __init__(self, rec: Recording, rates_hz: dict[str, float], low: list[str]):
        self.recording = rec
        self.rates_hz = rates_hz
        self.low = low
        self.done: Future = Future()  # resolved by the writer thread with the file's path


class RecorderNode(Node):
    def __init__(self) -> None:
        super().__init__("rollout_recorder")
        self.contract = c = load_contract(self._param("contract", "", "contract YAML (empty: the installed one)") or None)
        self.out_dir = Path(self._param("out_dir", "data/rollouts", "episode folder (episode_<i>.hdf5)"))
        self.default_task = self._param("task", "", "task text when no stage score names one")
        self.policy_checkpoint = self._param("policy_checkpoint", "", "policy checkpoint id stored with each rollout")
        self.seed = self._param("seed", -1, "seed stored with each episode (-1: unknown)")
        self.sim = self._param("sim", False, "episodes come from the simulator")
        self.compress = self._param("compress", False, "store JPEG frames (quality 50) as ALOHA does")
        self.auto_record_policy = self._param("auto_record_policy", True, "record every RunPolicy goal as an episode")
        self.max_episode_s = self._param("max_episode_s", 120.0, "longest episode expected (sizes the disk check)")
        self.flush_every = self._param("flush_every", 10, "rows between flushes to disk (what a crash may lose)")
        self.reserve_bytes = int(self._param("reserve_mb", 1024, "free disk space (MB) to leave beyond an episode")) << 20
        cams = self._param("cameras", list(c.cameras), "contract cameras to record")
        h = self._param("image_height", 0, "frame height (0: the contract's)") or c.image_height
        w = self._param("image_width", 0, "frame width (0: the contract's)") or c.image_width
        self.image_shapes = {cam: (int(h), int(w)) for cam in cams}
        recording_cfg = c.raw.get("recording", {}) or {}
        self.min_camera_rate_hz = float(self._param(
            "min_camera_rate_hz", float(recording_cfg.get("min_camera_rate_hz",
                                                          DEFAULT_MIN_CAMERA_RATE_FRACTION * c.control_rate_hz)),
            "an episode whose camera rate fell below this is flagged camera_rate_low"))
        self.declare_parameter("recording", False, ParameterDescriptor(
            description="set true to start an episode, false to finish it"))
        self.add_on_set_parameters_callback(self._on_set_parameters)

        self.lock = threading.Lock()
        self.recording: Recording | None = None
        self.last_stage: StageScore | None = None
        self.goal_status: dict[str, int] = {}
        self.ops: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self.writer: EpisodeWriter | None = None
        self.writer_thread = threading.Thread(target=self._write_loop, name="episode_writer", daemon=True)
        self.writer_thread.start()

        self.create_subscription(JointState, c.topic("joint_states"), self.on_joint_state, qos_profile(c, "joint_states"))
        # the contract's depth 1 keeps drivers from acting on stale commands; a recorder must see each one
        command_qos = qos_profile(c, "joint_commands")
        command_qos.depth = max(command_qos.depth, 10)
        self.create_subscription(JointState, c.topic("joint_commands"), self.on_command, command_qos)
        for cam in cams:
            self.create_subscription(Image, c.camera_topic(cam), lambda msg, cam=cam: self.on_image(cam, msg),
                                     qos_profile(c, "images"))
        self.create_subscription(StageScore, c.topic("stage_score"), self.on_stage_score, qos_profile(c, "stage_score"))
        self.create_subscription(Float32, c.topic("policy_value"), self.on_value, 10)
        self.policy_runs: dict[str, dict] = {}  # goal id -> what the policy node says the goal runs
        self.create_subscription(String, c.topic("policy_run"), self.on_policy_run, qos_profile(c, "policy_run"))
        self.create_subscription(GoalStatusArray, c.action("run_policy") + "/_action/status", self.on_goal_status,
                                 qos_profile_action_status_default)
        self.create_service(RecordEpisode, c.service("record_episode"), self.on_record)
        # on the wall clock: a lockstep graph's sim time stands still between steps
        self.create_timer(RATE_CHECK_PERIOD_S, self.check_camera_rates, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"recorder ready: {self.out_dir} cameras {cams} {h}x{w} at {c.control_rate_hz:.0f} Hz, "
            f"auto-record policy runs {'on' if self.auto_record_policy else 'off'}, "
            f"camera rate threshold {self.min_camera_rate_hz:.1f} Hz; start/stop/discard by the service "
            f"{c.service('record_episode')}")

    def _param(self, name, default, description):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    # ---- start / stop ----
    def _on_set_parameters(self, params) -> SetParametersResult:
        for p in params:
            if p.name != "recording":
                continue
            if p.value:
                reason = self.start("service")
                if reason:
                    return SetParametersResult(successful=False, reason=reason)
            else:
                self.stop("service")
        return SetParametersResult(successful=True)

    def start(self, source: str, goal_id: str = "", task: str = "", task_description: str = "") -> str:
        """Start an episode; returns why it could not ('' when started).

        ``task`` / ``task_description`` (from the service) replace the node's task parameter for this episode.
        """
        with self.lock:
            if self.recording is not None:
                return (f"already recording {self.recording.partial_path.name} (started by {self.recording.source}): "
                        f"stop or discard it first")
            max_steps = int(self.max_episode_s * self.contract.control_rate_hz)
            task = _without_nul(task or self.default_task)
            attrs = {"sim": bool(self.sim), "task": task, "task_description": _without_nul(task_description) or task,
                     "policy_checkpoint": self.policy_checkpoint, "seed": int(self.seed), "source": source,
                     "goal_id": goal_id, "control_period_s": self.contract.control_period_s,
                     "min_camera_rate_hz": self.min_camera_rate_hz}
            try:
                writer = EpisodeWriter(self.out_dir, self.image_shapes, attrs=attrs, compress=self.compress,
                                       max_steps=max_steps, flush_every=self.flush_every,
                                       reserve_bytes=self.reserve_bytes)
            except (DiskSpaceError, OSError) as exc:
                self.get_logger().error(f"not recording: {exc}")
                return str(exc)
            self.recording = Recording(TickSynchronizer(list(self.image_shapes), self.contract.control_period_s),
                                       source, goal_id, partial_path=writer.partial_path, path=writer.path, task=task,
                                       live=LiveCameraRates(self.image_shapes))
            self.ops.put(("start", writer))
        self.get_logger().info(f"recording {writer.partial_path.name} ({source}{' goal ' + goal_id if goal_id else ''})")
        return ""

    def stop(self, source: str) -> EpisodeEnd | None:
        """Finish the episode being recorded (None if there is none); its ``done`` gives the finished file."""
        with self.lock:
            rec, self.recording = self.recording, None
            if rec is None:
                return None
            for row in rec.sync.flush():
                self._queue_row(rec, row)
        duration = (rec.last_s - rec.first_s + self.contract.control_period_s) if rec.first_s is not None else 0.0
        rates = rec.sync.camera_rates_hz(duration)
        low = low_rate_cameras(rates, self.min_camera_rate_hz) if rec.rows else []
        attrs: dict[str, Any] = {"camera_rate_hz": [rates[c] for c in self.image_shapes], "camera_rate_low": bool(low),
                                 "uncommanded_steps": rec.uncommanded, "duration_s": duration, "stopped_by": source,
                                 "rows_before_clock_restart": rec.stale_rows}
        stage = rec.stage
        if stage is not None:
            attrs.update(stage_score=float(stage.score), success=bool(stage.success),
                         success_score=float(stage.score) / 100.0, stages_reached=list(stage.stages_reached) or [""],
                         score_source=stage.source)
            if stage.task:
                attrs["task"] = stage.task
        if rec.values:
            attrs["final_value"] = float(rec.values[-1])
        run = self.policy_runs.get(rec.goal_id) if rec.goal_id else None
        if run is not None:  # the goal's own task text, seed and checkpoint beat the node's defaults
            attrs.update(task_description=str(run.get("task", "")), seed=int(run.get("seed", -1)),
                         policy_checkpoint=str(run.get("checkpoint", "")), policy_mode=str(run.get("mode", "")))
        # HDF5 string attributes cannot hold NUL: a bad task text must not cost the episode its final write
        attrs = {k: _without_nul(v) for k, v in attrs.items()}
        end = EpisodeEnd(rec, rates, low)
        self.ops.put(("finish", (attrs, rec.rows, rates, low, end.done)))
        return end

    def discard(self) -> EpisodeEnd | None:
        """Drop the episode being recorded (None if there is none): its file is deleted once ``done``."""
        with self.lock:
            rec, self.recording = self.recording, None
            if rec is None:
                return None
        end = EpisodeEnd(rec, {cam: 0.0 for cam in self.image_shapes}, [])
        self.ops.put(("discard", end.done))
        self.get_logger().info(f"discarded {rec.partial_path.name} ({rec.rows} steps): its number is used again")
        return end

    # ---- the RecordEpisode service ----
    def on_record(self, request: RecordEpisode.Request, response: RecordEpisode.Response) -> RecordEpisode.Response:
        command = RECORD_COMMANDS.get(request.command)
        response.camera_names = list(self.image_shapes)
        response.min_camera_rate_hz = float(self.min_camera_rate_hz)
        if command is None:
            response.success = False
            response.message = (f"unknown command {request.command}: expected STATUS (0), START (1), STOP (2) or "
                                f"DISCARD (3)")
            return self._status(response)
        if command == "start":
            reason = self.start(request.source or "service", task=request.task,
                                task_description=request.task_description)
            response.success = not reason
            response.message = reason or "recording"
            return self._status(response)
        if command == "status":
            response.success = True
            response.message = "recording" if self.recording is not None else "not recording"
            return self._status(response)
        end = self.stop(request.source or "service") if command == "stop" else self.discard()
        if end is None:
            response.success = False
            response.message = f"nothing to {command}: not recording"
            return self._status(response)
        rec = end.recording
        response.recording = self.recording is not None
        response.steps, response.duration_s = rec.rows, rec.duration_s
        response.task, response.source = rec.task, rec.source
        response.camera_rate_hz = [float(end.rates_hz[cam]) for cam in self.image_shapes]
        response.low_rate_cameras = list(end.low)
        try:
            path = end.done.result(timeout=FINISH_WAIT_S)
        except FutureTimeout:
            response.success = False
            response.message = (f"{rec.partial_path.name}: still being written after {FINISH_WAIT_S:.0f} s (a slow "
                                f"disk?); it becomes {rec.path.name if command == 'stop' else 'deleted'} when done")
            response.episode_path = str(rec.path if command == "stop" else rec.partial_path)
            return response
        except Exception as exc:  # noqa: BLE001 - the writer's error, reported to the caller
            response.success = False
            response.message = f"{command} of {rec.partial_path.name} failed: {exc}"
            response.episode_path = str(rec.partial_path)
            return response
        response.success = True
        response.episode_path = str(path)
        response.message = (f"{'finished' if command == 'stop' else 'discarded'} {Path(path).name}: {rec.rows} steps"
                            + (f"; CAMERA RATE LOW: {end.low}" if end.low else ""))
        return response

    def _status(self, response: RecordEpisode.Response) -> RecordEpisode.Response:
        """The episode being recorded, if any, into ``response``: path, steps, live camera rates."""
        with self.lock:
            rec = self.recording
            response.recording = rec is not None
            if rec is None:
                return response
            response.episode_path = str(rec.partial_path)
            response.steps, response.duration_s = rec.rows, rec.duration_s
            response.task, response.source = rec.task, rec.source
            rates = rec.live.rates_hz()
            response.camera_rate_hz = [float(rates[cam]) for cam in self.image_shapes]
            response.low_rate_cameras = rec.live.low(self.min_camera_rate_hz)
        return response

    def check_camera_rates(self) -> None:
        """Warn while recording when a camera's rate over the last second is below the threshold."""
        with self.lock:
            rec = self.recording
            if rec is None:
                return
            rates, low = rec.live.rates_hz(), rec.live.low(self.min_camera_rate_hz)
        if low:
            text = ", ".join(f"{cam} {rates[cam]:.1f} Hz" for cam in low)
            self.get_logger().warning(f"{rec.partial_path.name}: camera rate low: {text} (threshold "
                                      f"{self.min_camera_rate_hz:.1f} Hz; the episode will be flagged "
                                      f"camera_rate_low: check USB bandwidth, exposure, CPU load)")

    # ---- topics ----
    def on_joint_state(self, msg: JointState) -> None:
        names = self.contract.joint_names
        try:
            qpos = joint_state_to_vector(msg, names)
        except MessageError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        qvel = np.asarray(msg.velocity, np.float32) if len(msg.velocity) == len(names) else None
        effort = np.asarray(msg.effort, np.float32) if len(msg.effort) == len(names) else None
        with self.lock:
            rec = self.recording
            if rec is not None:
                rec.live.add_time(stamp_s(msg.header.stamp))
                restarts = rec.sync.restarts
                rows = rec.sync.add_state(stamp_s(msg.header.stamp), qpos, qvel, effort)
                if rec.sync.restarts != restarts:  # rows already written were stamped on the old clock
                    self.get_logger().warning(
                        f"{rec.partial_path.name}: the clock went back (a lockstep sim's reset) after {rec.rows} "
                        f"rows: the episode starts over on the new clock; those rows stay at its start",
                        throttle_duration_sec=1.0)
                    rec.first_s = None
                    rec.stale_rows += rec.rows
                for row in rows:
                    self._queue_row(rec, row)

    def on_command(self, msg: JointState) -> None:
        try:
            action = joint_state_to_vector(msg, self.contract.joint_names, "joint_commands")
        except MessageError as exc:
            self.get_logger().warning(str(exc), throttle_duration_sec=1.0)
            return
        with self.lock:
            rec = self.recording
            if rec is not None:
                for row in rec.sync.add_command(stamp_s(msg.header.stamp), action):
                    self._queue_row(rec, row)

    def on_image(self, cam: str, msg: Image) -> None:
        try:
            rgb = image_to_rgb(msg, cam, self.image_shapes[cam])
        except MessageError as exc:
            self.get_logger().warning(f"{exc} (frame recorded as dropped)", throttle_duration_sec=1.0)
            return
        with self.lock:
            rec = self.recording
            if rec is not None:
                rec.live.add_frame(cam, stamp_s(msg.header.stamp))
                for row in rec.sync.add_frame(cam, stamp_s(msg.header.stamp), rgb):
                    self._queue_row(rec, row)

    def on_stage_score(self, msg: StageScore) -> None:
        if not 0.0 <= msg.score <= 100.0:  # NaN, inf or out of the 0-100 range: no stage history row to store
            self.get_logger().warning(f"{self.contract.topic('stage_score')}: score {msg.score} not in 0-100 "
                                      f"(message ignored)", throttle_duration_sec=1.0)
            return
        with self.lock:
            self.last_stage = msg
            if self.recording is not None:
                self.recording.stage = msg
                self.ops.put(("stage", int(round(msg.score))))

    def on_value(self, msg: Float32) -> None:
        with self.lock:
            if self.recording is not None:
                self.recording.values.append(float(msg.data))
                self.ops.put(("value", float(msg.data)))

    def on_policy_run(self, msg: String) -> None:
        try:
            run = json.loads(msg.data)  # deep nesting: RecursionError
            goal_id = str(run["goal_id"])
            # the fields stop() stores, typed here: a bad announcement must not fail the episode's end
            run = {"task": str(run.get("task", "")), "seed": int(run.get("seed", -1)),
                   "checkpoint": str(run.get("checkpoint", "")), "mode": str(run.get("mode", ""))}
            if not -2**63 <= run["seed"] < 2**63:
                raise ValueError(f"seed {run['seed']} out of int64 range")
            self.policy_runs[goal_id] = run
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError, RecursionError) as exc:
            self.get_logger().warning(f"{self.contract.topic('policy_run')}: unreadable message ({exc})"[:500],
                                      throttle_duration_sec=1.0)

    def on_goal_status(self, msg: GoalStatusArray) -> None:
        if not self.auto_record_policy:
            return
        for status in msg.status_list:
            goal_id = bytes(status.goal_info.goal_id.uuid).hex()
            previous = self.goal_status.get(goal_id)
            self.goal_status[goal_id] = status.status
            if previous == status.status:
                continue
            if status.status == GoalStatus.STATUS_EXECUTING:
                rec = self.recording
                if rec is not None and rec.source == "policy":
                    self.stop("preempted by a new goal")
                self.start("policy", goal_id)
            elif status.status in TERMINAL:
                rec = self.recording
                if rec is not None and rec.source == "policy" and rec.goal_id == goal_id:
                    # the action's status, not the task's outcome (that is the stage score / success attrs):
                    # a run that executed all its steps and failed the task is a SUCCEEDED goal
                    self.stop(GOAL_END.get(status.status, "goal ended"))

    def _queue_row(self, rec: Recording, row) -> None:
        rec.rows += 1
        rec.uncommanded += not row.commanded
        rec.first_s = row.stamp_s if rec.first_s is None else rec.first_s
        rec.last_s = row.stamp_s
        self.ops.put(("row", row))

    # ---- disk (writer thread only) ----
    def _write_loop(self) -> None:
        while True:
            op = self.ops.get()
            if op is None:
                return
            kind, arg = op
            try:
                self._write(kind, arg)
            except Exception as exc:  # noqa: BLE001 - a disk error must not kill the node; say what failed
                self.get_logger().error(f"episode writer: {kind} failed: {exc}")

    def _write(self, kind: str, arg: Any) -> None:
        if kind == "start":
            self.writer = arg
            return
        w = self.writer
        done: Future | None = arg[-1] if kind == "finish" else arg if kind == "discard" else None
        if w is None:
            if done is not None:
                done.set_exception(RuntimeError("no episode writer (its start failed: see the log)"))
            return
        try:
            self._write_op(w, kind, arg)
        except Exception as exc:
            if done is not None:
                done.set_exception(exc)
            raise

    def _write_op(self, w: EpisodeWriter, kind: str, arg: Any) -> None:
        if kind == "row":
            w.append(arg.qpos, arg.action, arg.images, qvel=arg.qvel, effort=arg.effort,
                     stamp_ns=int(round(arg.stamp_s * 1e9)))
        elif kind == "stage":
            w.add_stage(w.num_steps, arg)
        elif kind == "value":
            w.add_chunk_value(w.num_steps, arg)
        elif kind == "finish":
            attrs, rows, rates, low, done = arg
            t0 = time.perf_counter()
            try:
                path = w.finish(attrs)
            finally:
                self.writer = None
            done.set_result(path)
            rate_text = ", ".join(f"{cam} {rates[cam]:.1f} Hz ({w.dropped[cam]} dropped)" for cam in w.cameras)
            self.get_logger().info(f"{path.name}: {rows} steps, {rate_text}; finalised in "
                                   f"{(time.perf_counter() - t0) * 1000:.0f} ms"
                                   + (f"; CAMERA RATE LOW: {low} below {self.min_camera_rate_hz:.1f} Hz" if low else ""))
        elif kind == "discard":
            try:
                w.discard()
            finally:
                self.writer = None
            arg.set_result(w.partial_path)
        elif kind == "close":
            w.close_partial()
            self.writer = None

    def close(self) -> None:
        """Shutdown: an episode in progress is finished (stopped_by=shutdown), the writer thread drained."""
        self.stop("shutdown")
        self.ops.put(None)
        self.writer_thread.join(timeout=30.0)


def main(args: list[str] | None = None) -> None:
    sys.exit(run_node("rollout_recorder", RecorderNode, setup_errors=(ValueError, FileNotFoundError), args=args))


if __name__ == "__main__":
    main()
