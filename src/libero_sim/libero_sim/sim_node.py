"""ROS node exposing the LIBERO simulator through its contract (config/libero_contract.yaml).

Publishes the 9-D proprio (gripper fingers, end-effector position and quaternion) on the contract's joint_states
topic, the agentview and wrist cameras (upright, JPEG round-tripped as the release's data), the stage score (0, or
100 once the task's success condition held in the episode) and ``/diagnostics``; takes 7-D delta end-effector
commands at LIBERO's 20 Hz; resets episodes through the contract's ResetEpisode service, whose ``task`` names
``<suite>/<task id>`` and whose ``seed`` is the init-state index.

The environment runs in a worker process with the LIBERO venv's Python (``worker_client``): LIBERO needs
opencv-python<5 and cannot be imported beside this node's ROS and OpenCV 5. No venv, no assets: the node refuses at
start, naming ./scripts/setup_libero.sh.

Clocks, as the ALOHA sim node:
- ``lockstep`` (default, for evaluation): one control step per command stamped with the current sim time; /clock
  is published; the node runs as fast as the policy answers.
- ``realtime``: one step per 1/20 s of wall clock with the newest command received since the last step, or the
  hold command (zero deltas) when none came: a delta repeated would keep moving the arm.

Cameras render every ``camera_every_steps`` episode steps (default 1). Rendering two cameras costs ~20x the physics
on a CPU, and a policy that executes 16-step chunks open loop looks at frames only every 16 steps: the evaluation
sets 16, which is exact as long as every goal starts right after a reset (its ticks then meet the rendered steps).

Every command passes the contract's end-effector gate (length, NaN, box): a refused command is counted, logged
(throttled) and replaced by the hold command. One simulator per ROS domain, checked at start as aloha_sim does.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from aloha_contract import ContractError, load_contract
from aloha_contract.contract import DELTA_EEF
from aloha_contract.diagnostics import ERROR, OK, WARN, RateMeter, diagnostic_array
from aloha_contract.eef_gate import EndEffectorGate
from aloha_contract.node_main import run_node
from aloha_contract.peers import (
    DISCOVERY_WAIT_S,
    AnotherRobotError,
    NewcomerWatch,
    refusal_message,
    wait_for_other_robots,
)
from aloha_contract.reason_log import ReasonLog
from aloha_contract.ros import (
    MessageError,
    joint_state_to_vector,
    qos_profile,
    rgb_to_image,
    time_msg,
    vector_to_joint_state,
)
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import ResetEpisode

from . import protocol
from .worker_client import LiberoSetupError, LiberoWorker, LiberoWorkerError

MODES = ("lockstep", "realtime")
DIAGNOSTICS_PERIOD_S = 1.0
CONTRACT_FILE = "libero_contract.yaml"


class ParameterError(ValueError):
    """A node parameter out of its range (refused at start, one line, exit 1)."""


def shipped_contract(name: str = CONTRACT_FILE) -> Path:
    """A contract file shipped in this package (a link to config/ in the source tree)."""
    return Path(__file__).resolve().with_name(name)


class LiberoSimNode(Node):
    NODE_NAME = "libero_sim"
    CONTRACT = CONTRACT_FILE
    DEFAULT_SUITE = "libero_spatial"

    def __init__(self) -> None:
        super().__init__(self.NODE_NAME)
        discovery_started_s = time.monotonic()
        path = self._param("contract_file", "", "contract YAML ('' = the shipped config/libero_contract.yaml)")
        self.contract = c = load_contract(path or shipped_contract(self.CONTRACT))
        if c.command_space != DELTA_EEF:
            raise ContractError(f"{c.source}: command_space '{c.command_space}', expected {DELTA_EEF} (pass the LIBERO "
                                f"contract, not the ALOHA one)")
        self.mode = self._param("mode", "lockstep", "lockstep (one step per command) | realtime", choices=MODES)
        if self.mode == "lockstep" and self.get_parameter("use_sim_time").value:
            raise ParameterError("parameter use_sim_time:=true with mode:=lockstep: the lockstep simulator publishes "
                                 "/clock and must not follow it")
        suite = self._param("suite", self.DEFAULT_SUITE, "suite of the first episode")
        task_id = self._param("task_id", 0, "task id of the first episode", lo=0)
        init_index = self._param("init_index", 0, "init-state index of the first episode", lo=0)
        self.camera_every = self._param("camera_every_steps", 1, "render the cameras every N episode steps "
                                        "(16 for evaluation with 16-step chunks; 1 = every step)", lo=1)
        height = self._param("image_height", c.image_height, "camera height (px)", lo=16)
        width = self._param("image_width", c.image_width, "camera width (px)", lo=16)
        flip = self._param("flip_images", True, "publish frames upright (LIBERO renders upside down)")
        jpeg = self._param("jpeg_quality", protocol.JPEG_QUALITY, "JPEG round trip of each frame (0: off)", lo=0)
        python = self._param("libero_python", "", "the LIBERO venv's Python ('' = $LIBERO_PYTHON or .venv-libero)")
        peer_check_s = self._param("peer_check_s", DISCOVERY_WAIT_S, "seconds discovery gets to find another "
                                   "simulator on this ROS domain before this one starts", lo=0.0)
        if jpeg > 100:
            raise ParameterError(f"parameter jpeg_quality:={jpeg}: expected 0 (off) to 100")
        self.period_s = c.control_period_s
        self.settle_steps = int(c.raw.get("episode", {}).get("settle_steps", protocol.SETTLE_STEPS))
        self.gate = EndEffectorGate(c)
        self.gate.reset()
        self.refusals = ReasonLog()
        self.reports = ReasonLog()
        self.rates = RateMeter("joint_states", "camera")
        self.last_fault = ""
        self.clock_steps = 0  # steps since start (episodes and settle steps): /clock never runs backwards
        self.step_seconds: list[float] = []

        sources = dict(c.raw["cameras"].get("sources", {}))
        self.cameras = list(c.cameras)
        self.worker = self.start_worker({cam: sources.get(cam, cam) for cam in self.cameras}, (height, width),
                                        flip, jpeg, python)
        self.task = (suite, task_id, init_index)
        self.task_text = ""
        self.episode_step = 0
        self.best_score = 0.0
        self.success = False
        obs = self._reset(suite, task_id, init_index)
        self.refuse_if_another_robot(peer_check_s, discovery_started_s)

        self.pub_state = self.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        self.pub_images = {cam: self.create_publisher(Image, c.camera_topic(cam), qos_profile(c, "images"))
                           for cam in self.cameras}
        self.pub_score = self.create_publisher(StageScore, c.topic("stage_score"), qos_profile(c, "stage_score"))
        self.pub_clock = (self.create_publisher(Clock, c.topic("clock"), qos_profile(c, "clock"))
                          if self.mode == "lockstep" else None)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, c.topic("diagnostics"), 10)
        self.create_subscription(JointState, c.topic("joint_commands"), self.on_command, qos_profile(c, "joint_commands"))
        self.create_service(ResetEpisode, c.service("reset_episode"), self.on_reset)
        self.steady = RosClock(clock_type=ClockType.STEADY_TIME)
        self.pending: np.ndarray | None = None
        if self.mode == "realtime":
            self.create_timer(self.period_s, self.on_tick, clock=self.steady)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics, clock=self.steady)
        # discovery may still be under way: a second robot seen just after start-up means this one is the newcomer
        self.newcomer_watch = NewcomerWatch(self, c.topic("joint_states"), peer_check_s, "simulator",
                                            clock=self.steady)
        self.publish_observation(obs)
        self.get_logger().info(
            f"LIBERO sim ready: {protocol.format_reset_task(suite, task_id)} init {init_index} "
            f"'{self.task_text}' mode={self.mode} cameras={self.cameras} {height}x{width} every "
            f"{self.camera_every} step(s), control {c.control_rate_hz:g} Hz (worker {self.worker.python})")

    # ---- set-up ----
    def _param(self, name: str, default, description: str, *, lo=None, choices=None):
        value = self.declare_parameter(name, default, ParameterDescriptor(description=description)).value
        if choices is not None and value not in choices:
            raise ParameterError(f"parameter {name}:={value!r}: expected one of {list(choices)} ({description})")
        if lo is not None and value < lo:
            raise ParameterError(f"parameter {name}:={value!r}: expected >= {lo} ({description})")
        return value

    def start_worker(self, cameras: dict[str, str], hw, flip: bool, jpeg: int, python: str) -> LiberoWorker:
        return LiberoWorker(cameras, hw, flip=flip, jpeg_quality=jpeg, python=python, stderr=None)

    def refuse_if_another_robot(self, wait_s: float, since_s: float) -> None:
        c = self.contract
        topics = [c.topic("joint_states")] + ([c.topic("clock")] if self.mode == "lockstep" else [])
        found = wait_for_other_robots(self, wait_s, since_s, services=[c.service("reset_episode")], topics=topics)
        if found:
            raise AnotherRobotError(refusal_message(self, "simulator", found))

    # ---- episodes ----
    def _reset(self, suite: str, task_id: int, init_index: int):
        obs = self.worker.reset(suite, task_id, init_index, settle_steps=self.settle_steps,
                                settle_command=self.gate.hold_command, render=True)
        self.task = (suite, task_id, init_index)
        self.task_text = str((obs.task or {}).get("language", ""))
        self.clock_steps += self.settle_steps
        self.episode_step = 0
        self.success = obs.success
        self.best_score = 100.0 if obs.success else 0.0
        self.gate.reset()
        self.pending = None
        return obs

    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        try:
            suite, task_id, init_index = protocol.parse_reset_task(
                request.task or protocol.format_reset_task(*self.task[:2]), request.seed)
            obs = self._reset(suite, task_id, init_index)
        except (protocol.TrialSpecError, LiberoWorkerError) as exc:
            response.success = False
            response.message = f"reset refused: {exc}"
            self.get_logger().warning(response.message)
            return response
        self.publish_observation(obs)
        response.success = True
        response.message = f"{protocol.format_reset_task(suite, task_id)} init state {init_index}"
        response.task_description = self.task_text
        response.episode_steps = protocol.max_steps(suite)
        self.get_logger().info(f"episode reset: {response.message}: '{self.task_text}'")
        return response

    # ---- commands ----
    def on_command(self, msg: JointState) -> None:
        if self.mode == "lockstep":
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if abs(stamp_s - self.sim_time_s) > 0.25 * self.period_s:
                if self.reports.record("stale_stamp", time.monotonic()) is not None:
                    self.get_logger().warning(f"lockstep: ignoring a command stamped t={stamp_s:.3f} s, sim time is "
                                              f"{self.sim_time_s:.3f} s (stamp commands with the observation they "
                                              f"answer)")
                return
            self.step(self.checked(msg))
        else:
            self.pending = self.checked(msg)

    def checked(self, msg: JointState) -> np.ndarray:
        """The command to execute: the message's if it passes the gate, else the hold command."""
        c = self.contract
        try:
            command = joint_state_to_vector(msg, c.joint_names, what=c.topic("joint_commands"))
        except MessageError as exc:
            return self.refuse("malformed", str(exc))
        violation = self.gate.check(command)
        if violation is not None:
            return self.refuse(violation.reason, violation.detail)
        return self.gate.safe_command(command)

    def refuse(self, reason: str, detail: str) -> np.ndarray:
        self.last_fault = f"refused command [{reason}]: {detail}"
        if self.refusals.record(reason, time.monotonic()) is not None:
            self.get_logger().warning(f"refused command [{reason}]: {detail}; holding still (refused so far: "
                                      f"{self.refusals.summary()})")
        return self.gate.last_safe_target.copy()

    def on_tick(self) -> None:
        command, self.pending = self.pending, None
        self.step(command if command is not None else self.gate.last_safe_target.copy())

    def step(self, command: np.ndarray) -> None:
        render = (self.episode_step + 1) % self.camera_every == 0
        start = time.perf_counter()
        try:
            obs = self.worker.step(command, render=render)
        except LiberoWorkerError as exc:
            self.last_fault = f"LIBERO worker: {exc}"
            self.get_logger().error(self.last_fault)
            if not self.worker.alive():  # no simulator left to serve: stop (status 1) rather than publish nothing
                raise SystemExit(1) from None
            return
        self.step_seconds = (self.step_seconds + [time.perf_counter() - start])[-200:]
        self.clock_steps += 1
        self.episode_step += 1
        self.success = obs.success
        if obs.success:
            self.best_score = 100.0
        self.publish_observation(obs)

    # ---- observations ----
    @property
    def sim_time_s(self) -> float:
        return self.clock_steps * self.period_s

    def publish_observation(self, obs) -> None:
        c = self.contract
        stamp = time_msg(self.sim_time_s) if self.mode == "lockstep" else self.get_clock().now().to_msg()
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=stamp))
        # frames first: a lockstep policy that sees this step's state finds its frames already sent
        for cam, rgb in obs.images.items():
            if cam in self.pub_images:
                self.pub_images[cam].publish(rgb_to_image(rgb, stamp, c.camera_frame_id(cam)))
        if obs.images:
            self.rates.count("camera")
        self.pub_state.publish(vector_to_joint_state(obs.proprio, c.state_names, stamp))
        self.rates.count("joint_states")
        msg = StageScore(task=self.task_text, episode_step=self.episode_step, score=float(self.best_score),
                         stage="success" if self.best_score >= 100 else "", success=bool(self.success),
                         stages_reached=["success"] if self.best_score >= 100 else [], source="sim")
        msg.header.stamp = stamp
        self.pub_score.publish(msg)

    def publish_diagnostics(self) -> None:
        rates = self.rates.rates_hz()
        if not self.worker.alive():
            level, message = ERROR, "the LIBERO worker exited"
        elif self.refusals.total or self.reports.counts.get("stale_stamp"):
            level, message = WARN, self.last_fault or "commands ignored"
        else:
            level, message = OK, "running"
        mean_step_ms = 1000 * float(np.mean(self.step_seconds)) if self.step_seconds else 0.0
        values = {"mode": self.mode, "task": protocol.format_reset_task(*self.task[:2]), "init_index": self.task[2],
                  "episode_step": self.episode_step, "sim_time_s": f"{self.sim_time_s:.3f}",
                  "joint_states_rate_hz": rates["joint_states"], "camera_rate_hz": rates["camera"],
                  "mean_step_ms": f"{mean_step_ms:.1f}", "refused_commands": self.refusals.total,
                  "stale_lockstep_commands": self.reports.counts.get("stale_stamp", 0), "last_fault": self.last_fault}
        self.pub_diagnostics.publish(diagnostic_array(self.NODE_NAME, self.contract.robot, level, message, values,
                                                      self.get_clock().now().to_msg()))

    def close(self) -> None:
        if hasattr(self, "worker"):
            self.worker.close()


SETUP_ERRORS = (ParameterError, ContractError, AnotherRobotError, LiberoSetupError, protocol.TrialSpecError,
                LiberoWorkerError, FileNotFoundError)


def main(args: list[str] | None = None) -> None:
    """0 on SIGINT/SIGTERM; 1 with one line on a bad parameter, a missing LIBERO venv or assets, or another
    simulator on this ROS domain."""
    sys.exit(run_node(LiberoSimNode.NODE_NAME, LiberoSimNode, setup_errors=SETUP_ERRORS, args=args))


if __name__ == "__main__":
    main()
