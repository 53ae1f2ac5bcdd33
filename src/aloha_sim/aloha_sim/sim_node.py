"""ROS node exposing the MuJoCo ALOHA simulator through the robot contract, as the real robot would.

Publishes the 14-D joint state, each follower arm's Interbotix joint_states, the three RealSense-style
camera topics, the stage score and ``/diagnostics``; takes 14-D joint commands; resets episodes through
a service.

Two clocks:
- ``realtime`` (default): physics follows the wall clock at the contract's 50 Hz; cameras render at
  ``camera_rate_hz`` when the CPU allows it (a real camera is not synchronous with the arms either).
  When the loop falls further behind than it can catch up, the missed periods are dropped and counted.
- ``lockstep``: for batch evaluation. The simulator advances exactly one control period per command
  stamped with the current sim time, publishes /clock, and runs as fast as the controller answers. A
  command with another stamp is ignored and reported (throttled warning, counted in /diagnostics).

Every command passes the shared safety gate (:class:`aloha_contract.safety.SafetyGate`), as on the robot:
joint limits, consecutive targets within velocity limit x period, and the target within the tracking bound
of the measured position. A refused command is logged (throttled per reason), counted, and the arms hold
their last safe target. If the camera worker dies, the node reports it on /diagnostics and in the log and
stops: it never publishes joint states without images.

One simulator per ROS domain: at start the node gives discovery ``peer_check_s`` to find another simulator or
robot there (a node of its name, the reset service served, the joint states published) and refuses to start
if it finds one, before it publishes or serves anything: two on one domain reset and command each other.
"""

from __future__ import annotations

import sys
import time

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Pose
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, ParameterType
from rclpy.clock import Clock as RosClock
from rclpy.clock import ClockType
from rclpy.duration import Duration
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from aloha_contract import ContractError, load_contract
from aloha_contract.diagnostics import ERROR, OK, WARN, RateMeter, diagnostic_array
from aloha_contract.peers import (
    DISCOVERY_WAIT_S,
    AnotherRobotError,
    NewcomerWatch,
    domain_id,
    refusal_message,
    second_publisher,
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
from aloha_contract.safety import SafetyGate
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import ResetEpisode

from .camera_worker import CameraWorker
from .env import AlohaSimEnv
from .tasks import TaskError, load_tasks

MODES = ("realtime", "lockstep")
MAX_CATCH_UP_STEPS = 5  # realtime: physics steps per tick when the loop fell behind the wall clock
DIAGNOSTICS_PERIOD_S = 1.0
PEER_WATCH_PERIOD_S = 2.0  # after start-up: how often the graph is checked for a second publisher of joint states
LOG_INTERVAL_S = 1.0  # repeats of one reason (refusal, stale stamp, dropped steps) are logged at most this often


class ParameterError(ValueError):
    """A node parameter out of its range or of the wrong type (refused at start, one line, exit 1)."""


class CameraFault(RuntimeError):
    """The camera render worker died: the node stops rather than publish joint states without images."""


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("aloha_sim")
        discovery_started_s = time.monotonic()  # discovery runs while the scene loads
        contract_file = self._param("contract_file", "", "robot contract YAML; empty: $ALOHA_CONTRACT or the shipped one")
        self.contract = load_contract(contract_file or None)
        c = self.contract
        self.known_tasks = load_tasks()
        self.task = self._param("task", "transfer_cube", "task of config/tasks.yaml", choices=sorted(self.known_tasks))
        seed = self._param("seed", 0, "object pose seed of the first episode", lo=0, hi=2**31 - 1)
        height = self._param("image_height", c.image_height, "camera image height (pixels)", lo=16, hi=4096)
        width = self._param("image_width", c.image_width, "camera image width (pixels)", lo=16, hi=4096)
        self.cameras = self._param("cameras", list(c.cameras), "cameras to render (names from the contract)")
        self.mode = self._param("mode", "realtime", "realtime (wall clock) | lockstep (one step per command)",
                                choices=MODES)
        self.camera_rate_hz = self._param("camera_rate_hz", float(c.control_rate_hz),
                                          "cameras render at most this often (Hz); default: the contract's "
                                          "control rate", lo=0.1, hi=1000.0)
        peer_check_s = self._param("peer_check_s", DISCOVERY_WAIT_S, "seconds discovery gets to find another "
                                   "simulator or robot on this ROS domain before this one starts (0: look once)",
                                   lo=0.0, hi=60.0)
        self.check_clock_parameters()
        unknown = [cam for cam in self.cameras if cam not in c.cameras]
        if unknown or not self.cameras:
            raise ParameterError(f"parameter cameras:={self.cameras}: expected a non-empty list of the contract's "
                                 f"cameras {c.cameras}")

        self.image_size = (height, width)
        self.period_s = c.control_period_s
        self.steady = RosClock(clock_type=ClockType.STEADY_TIME)  # timers on the wall clock whatever use_sim_time
        self.refusals = ReasonLog()   # refused commands per reason key
        self.reports = ReasonLog()    # other throttled reports: stale lockstep stamps, dropped catch-up steps
        self.dropped_steps = 0
        self.last_fault = ""
        self.rates = RateMeter("joint_states", "camera")
        self.other_robot = ""  # after start-up: another publisher of joint states that the start-up check missed
        self.camera_fault: BaseException | None = None
        self.fault_reported = False

        self.env = AlohaSimEnv(self.task, cameras=self.cameras, image_size=self.image_size, render=False, contract=c)
        self.env.reset(seed)
        self.gate = SafetyGate(c)
        self.gate.reset(self.env.qpos())
        self.target = self.env.start_command()
        # before this node publishes or serves anything: the other run must not see a second robot either
        self.refuse_if_another_robot(peer_check_s, discovery_started_s)

        self.pub_state = self.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        self.pub_follower = {arm: self.create_publisher(JointState, c.follower_joint_states_topic(arm),
                                                        qos_profile(c, "joint_states")) for arm in c.arms}
        self.pub_images = {cam: self.create_publisher(Image, c.camera_topic(cam), qos_profile(c, "images"))
                           for cam in self.cameras}
        self.pub_score = self.create_publisher(StageScore, c.topic("stage_score"), qos_profile(c, "stage_score"))
        self.pub_clock = (self.create_publisher(Clock, c.topic("clock"), qos_profile(c, "clock"))
                          if self.mode == "lockstep" else None)
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, c.topic("diagnostics"), 10)
        self.camera_worker = self.start_camera_worker()
        self.create_subscription(JointState, c.topic("joint_commands"), self.on_command, qos_profile(c, "joint_commands"))
        self.create_service(ResetEpisode, c.service("reset_episode"), self.on_reset)

        self.last_render_s = -1.0
        if self.mode == "realtime":
            self.t0 = time.monotonic()
            self.steps_since_t0 = 0
            self.create_timer(self.period_s, self.on_tick, clock=self.steady)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics, clock=self.steady)
        self.create_timer(PEER_WATCH_PERIOD_S, self.watch_for_another_robot, clock=self.steady)
        # discovery may still be under way: a second robot seen just after start-up means this one is the newcomer
        self.newcomer_watch = NewcomerWatch(self, c.topic("joint_states"), peer_check_s, "simulator or robot",
                                            clock=self.steady)
        # lockstep: /clock is global, so a lockstep sim in another namespace is a second robot too (the start-up
        # check looks for it; a CI run once missed it there, and the joint-state watch cannot see another namespace)
        self.clock_watch = (NewcomerWatch(self, c.topic("clock"), peer_check_s, "simulator or robot",
                                          clock=self.steady) if self.pub_clock is not None else None)
        self.publish_observation(render=True)
        self.get_logger().info(
            f"ALOHA sim ready: task={self.task} seed={seed} mode={self.mode} cameras={self.cameras} "
            f"{height}x{width} control {c.control_rate_hz:.0f} Hz")

    # ---- parameters ----
    def _param(self, name: str, default, description: str, *, lo=None, hi=None, choices=None):
        """Declare a parameter with its descriptor (type, range); a wrong value raises ParameterError naming it."""
        descriptor = ParameterDescriptor(description=description)
        if isinstance(default, bool):
            kind = "true or false"
        elif isinstance(default, int):
            kind = "an integer"
            if lo is not None:
                descriptor.integer_range = [IntegerRange(from_value=int(lo), to_value=int(hi), step=1)]
        elif isinstance(default, float):
            kind = "a number with a decimal point (e.g. 5.0)"
            if lo is not None:
                descriptor.floating_point_range = [FloatingPointRange(from_value=float(lo), to_value=float(hi), step=0.0)]
        elif isinstance(default, list):
            kind, descriptor.type = "a list of strings", ParameterType.PARAMETER_STRING_ARRAY
        else:
            kind = "a string"
        if lo is not None:
            kind += f" in [{lo}, {hi}]"
        if choices is not None:
            kind += f", one of {list(choices)}"
            descriptor.additional_constraints = f"one of {list(choices)}"
        try:
            value = self.declare_parameter(name, default, descriptor).value
        except (InvalidParameterTypeException, InvalidParameterValueException) as exc:
            raise ParameterError(f"parameter {name}: {exc}; expected {kind} ({description})") from None
        if choices is not None and value not in choices:
            raise ParameterError(f"parameter {name}:={value!r}: expected {kind} ({description})")
        if lo is not None and not lo <= value <= hi:  # the descriptor's range, for rclpy versions that skip it
            raise ParameterError(f"parameter {name}:={value!r} out of range: expected {kind} ({description})")
        return list(value) if isinstance(default, list) else value

    def check_clock_parameters(self) -> None:
        """The lockstep sim is the clock (/clock): following a clock itself would stall it at time 0."""
        if self.mode == "lockstep" and self.get_parameter("use_sim_time").value:
            raise ParameterError("parameter use_sim_time:=true with mode:=lockstep: the lockstep simulator publishes "
                                 "/clock and must not follow it; leave use_sim_time false for aloha_sim (the other "
                                 "nodes of the graph take use_sim_time:=true)")

    def refuse_if_another_robot(self, wait_s: float, since_s: float) -> None:
        """Raise AnotherRobotError when another simulator or robot is already on this ROS domain."""
        c = self.contract
        topics = [c.topic("joint_states")] + ([c.topic("clock")] if self.mode == "lockstep" else [])
        found = wait_for_other_robots(self, wait_s, since_s, services=[c.service("reset_episode")], topics=topics)
        if found:
            raise AnotherRobotError(refusal_message(self, "simulator or robot", found))

    def watch_for_another_robot(self) -> None:
        """Report (not stop: which one is wrong is unknown) a second robot that discovery hid at start-up."""
        other = second_publisher(self, self.contract.topic("joint_states")) or ""
        if other and not self.other_robot:
            self.last_fault = (f"{other}: another simulator or robot runs on ROS domain {domain_id(self)} and the two "
                               f"command and reset each other; stop one of them, or give each run its own "
                               f"ROS_DOMAIN_ID")
            self.get_logger().error(self.last_fault)
        self.other_robot = other

    def start_camera_worker(self) -> CameraWorker:
        worker = CameraWorker(self.env.model, self.cameras, self.image_size, self.publish_images,
                              on_error=self.on_camera_error)
        worker.start()
        return worker

    # ---- commands ----
    def on_command(self, msg: JointState) -> None:
        self.check_camera()
        lockstep_now = False
        if self.mode == "lockstep":
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if abs(stamp_s - self.env.sim_time_s) > 0.25 * self.period_s:
                more = self.reports.record("stale_stamp", time.monotonic())
                if more is not None:
                    self.get_logger().warning(
                        f"lockstep: ignoring a command stamped t={stamp_s:.3f} s, sim time is {self.env.sim_time_s:.3f} s "
                        f"(stamp commands with the observation they answer; ignored so far: "
                        f"{self.reports.counts['stale_stamp']})")
                return
            lockstep_now = True
        try:
            command = joint_state_to_vector(msg, self.contract.joint_names, what=self.contract.topic("joint_commands"))
        except MessageError as exc:
            self.refuse("malformed", str(exc))
        else:
            # realtime: the step limit covers the wall time since the last accepted command (a late or replaced
            # message); lockstep: every command is one simulator period
            violation = self.gate.check(command, self.env.qpos(), now_s=None if lockstep_now else time.monotonic())
            if violation is None:
                self.target = command
            else:
                self.refuse(violation.reason, violation.detail)
        if lockstep_now:
            # one period per command stamped now, with the new target or, if refused, holding the last safe one
            self.env.step(self.target, render=False)
            self.publish_observation(render=True)

    def refuse(self, reason: str, detail: str) -> None:
        self.last_fault = f"refused command [{reason}]: {detail}"
        more = self.refusals.record(reason, time.monotonic())
        if more is None:
            return
        also = f", {more} more like it since the last report" if more else ""
        self.get_logger().warning(f"refused joint command [{reason}]: {detail}; holding the last safe target "
                                  f"(refused so far: {self.refusals.summary()}{also})")

    def on_tick(self) -> None:
        self.check_camera()
        due = int((time.monotonic() - self.t0) / self.period_s) - self.steps_since_t0
        if due <= 0:
            return  # an early tick: physics is already level with the wall clock
        for _ in range(min(due, MAX_CATCH_UP_STEPS)):
            self.env.step(self.target, render=False)
        # further behind than we can catch up: drop the missed periods instead of spiralling
        self.steps_since_t0 += due
        dropped = due - MAX_CATCH_UP_STEPS
        if dropped > 0:
            self.dropped_steps += dropped
            more = self.reports.record("dropped_steps", time.monotonic(), count=dropped)
            if more is not None:
                self.get_logger().warning(
                    f"realtime: {due} control periods behind the wall clock, dropped {dropped} (sim time now lags "
                    f"the wall clock; {self.dropped_steps} dropped so far): the CPU is overloaded")
        render = (self.env.sim_time_s - self.last_render_s) >= 1.0 / self.camera_rate_hz - 1e-6
        self.publish_observation(render=render)

    # ---- observations ----
    def stamp(self) -> Time:
        if self.mode == "lockstep":
            return time_msg(self.env.sim_time_s)
        return self.get_clock().now().to_msg()

    def publish_observation(self, render: bool) -> None:
        self.check_camera()
        c = self.contract
        stamp = self.stamp()
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=stamp))
        self.pub_state.publish(vector_to_joint_state(self.env.qpos(), c.joint_names, stamp,
                                                     velocity=self.env.qvel(), effort=self.env.effort()))
        self.rates.count("joint_states")
        for arm, state in self.env.follower_joint_states().items():
            msg = vector_to_joint_state(state.position, state.names, stamp, velocity=state.velocity, effort=state.effort)
            self.pub_follower[arm].publish(msg)
        if render:
            self.last_render_s = self.env.sim_time_s
            self.camera_worker.submit(self.env.data, stamp)
            if self.mode == "lockstep" and not self.camera_worker.wait_published():
                self.check_camera()
                self.get_logger().error("camera rendering stalled for 10 s")
        # the score of the state just published: episode_step is the number of steps simulated in this episode
        score = self.env.stage_score()
        msg = StageScore(task=self.task, episode_step=self.env.step_count, score=float(score.score),
                         stage=score.stage or "", stages_reached=list(score.reached), success=score.success,
                         source="sim")
        msg.header.stamp = stamp
        self.pub_score.publish(msg)

    def publish_images(self, images: dict, stamp: Time) -> None:
        """Called from the camera worker thread (rclpy publishers are thread-safe)."""
        for cam, rgb in images.items():
            try:
                self.pub_images[cam].publish(rgb_to_image(rgb, stamp, self.contract.camera_frame_id(cam)))
            except Exception:
                if not self.context.ok():
                    return  # shutting down (SIGTERM): the context went away under the worker
                raise
        self.rates.count("camera")

    # ---- faults and diagnostics ----
    def on_camera_error(self, exc: BaseException) -> None:
        """Camera worker thread: remember the fault; the executor thread reports it and stops the node."""
        self.camera_fault = exc

    def check_camera(self) -> None:
        """Raise CameraFault (ends spin) once the camera worker has died, after reporting it."""
        exc = self.camera_worker.error if hasattr(self, "camera_worker") else None
        if exc is None:
            return
        if not self.fault_reported:
            self.fault_reported = True
            self.last_fault = f"camera render worker died: {type(exc).__name__}: {exc}"
            self.get_logger().error(f"{self.last_fault}; stopping the simulator (no joint states without images)")
            self.publish_diagnostics()
            try:  # the process ends next: let subscribers have the report first
                self.pub_diagnostics.wait_for_all_acked(Duration(seconds=1.0))
            except Exception:  # noqa: BLE001 - best effort; the log line is already out
                pass
        raise CameraFault(self.last_fault)

    def publish_diagnostics(self) -> None:
        worker = getattr(self, "camera_worker", None)
        rates = self.rates.rates_hz()
        if self.fault_reported:
            level, message = ERROR, self.last_fault
        elif self.other_robot:
            level, message = ERROR, f"another simulator or robot on this ROS domain: {self.other_robot}"
        elif self.refusals.total or self.dropped_steps or self.reports.counts.get("stale_stamp"):
            level, message = WARN, self.last_fault or "commands ignored or steps dropped"
        else:
            level, message = OK, "running"
        values = {
            "mode": self.mode, "task": self.task, "episode_step": self.env.step_count,
            "sim_time_s": f"{self.env.sim_time_s:.3f}",
            "joint_states_rate_hz": rates["joint_states"],
            "camera_rate_hz": rates["camera"],
            "camera_frames_skipped": worker.dropped if worker is not None else 0,
            "refused_commands": self.refusals.total,
            **{f"refused_{reason}": n for reason, n in sorted(self.refusals.counts.items())},
            "stale_lockstep_commands": self.reports.counts.get("stale_stamp", 0),
            "dropped_catch_up_steps": self.dropped_steps,
            "last_fault": self.last_fault,
        }
        self.pub_diagnostics.publish(diagnostic_array("aloha_sim", self.contract.robot, level, message, values,
                                                      self.get_clock().now().to_msg()))

    # ---- episodes ----
    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        self.check_camera()
        task = request.task or self.task
        if task not in self.known_tasks:
            response.success = False
            response.message = f"unknown task '{task}' (known: {sorted(self.known_tasks)})"
            return response
        try:
            if task != self.task:
                self.camera_worker.stop()
                self.env.close()
                self.env = AlohaSimEnv(task, cameras=self.cameras, image_size=self.image_size, render=False,
                                       contract=self.contract)
                self.camera_worker = self.start_camera_worker()
                self.task = task
            self.env.reset(int(request.seed))
        except (TaskError, KeyError, ValueError) as exc:
            response.success = False
            response.message = f"reset failed: {exc}"
            return response
        self.target = self.env.start_command()
        self.gate.reset(self.env.qpos())  # a new episode starts from the measured start pose
        if self.mode == "realtime":
            self.t0, self.steps_since_t0 = time.monotonic(), 0
        self.publish_observation(render=True)
        response.success = True
        response.message = f"{task} seed {request.seed}"
        response.task_description = self.env.task.description
        response.episode_steps = self.env.episode_steps
        for name, (pos, quat) in self.env.object_poses().items():
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
            pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in quat)
            response.object_names.append(name)
            response.object_poses.append(pose)
        self.get_logger().info(f"episode reset: {response.message}")
        return response

    def close(self) -> None:
        """Stop the camera worker (no publishing into a dead context), then release the renderer."""
        if hasattr(self, "camera_worker"):
            self.camera_worker.stop()
        if hasattr(self, "env"):
            self.env.close()

    def destroy_node(self) -> None:
        self.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the node; 0 on SIGINT/SIGTERM, 1 (one line, no traceback) on a bad parameter, another simulator on
    this ROS domain, or a camera fault."""
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SimNode()
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ParameterError, ContractError, TaskError, AnotherRobotError) as exc:
        if rclpy.ok():  # else a signal stopped the start-up
            print(f"[aloha_sim] error: {exc}", file=sys.stderr, flush=True)
            status = 1
    except CameraFault:
        status = 1  # already reported on /diagnostics and in the log
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.close()  # worker threads end before the context does
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
