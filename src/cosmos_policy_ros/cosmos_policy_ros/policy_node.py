"""The policy node: observations in, action chunks executed at the control rate behind the safety gate.

Threads (the node owns only the wiring; the logic is in plain modules):
- the executor: sensor callbacks (store into the ObservationAssembler), the RunPolicy action server;
- the control thread: one tick per control period (wall clock in realtime, one per simulator step in
  lockstep): asks the ChunkScheduler for the target of this tick, passes it through the SafetyGate,
  publishes it, and hands observations to the inference thread early enough (prefetch);
- the inference thread: prepare + infer on the policy backend; never touches the control loop.

One goal runs at a time; a new goal preempts the running one. A stale sensor, an unsafe target or an
inference error stops commanding motion (the last safe target holds) and aborts the goal with the reason.
"""

from __future__ import annotations

import json
import math
import queue
import sys
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.action import ActionServer, CancelResponse, GoalResponse
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.clock import Clock, ClockType
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32, Float32MultiArray, MultiArrayDimension, String

from aloha_contract import load_contract
from aloha_contract.contract import JOINT_POSITION
from aloha_contract.eef_gate import EndEffectorGate
from aloha_contract.node_main import run_node
from aloha_contract.ros import MessageError, joint_state_to_vector, qos_profile, rgb_to_image, vector_to_joint_state
from aloha_contract.safety import SafetyGate
from aloha_contract.validation import accepted_command_range
from aloha_interfaces.action import RunPolicy
from aloha_interfaces.msg import StageScore

from .chunk_scheduler import Chunk, ChunkScheduler, SeamRamp, smooth_rows
from .command_shaping import CommandShaper, find_row_jump
from .observation import ObservationAssembler, ObservationError
from .policy_backend import ChunkResult, InferenceRequest

R = RunPolicy.Result
CLOCK_MODES = ("realtime", "lockstep")
LOCKSTEP_FRAME_WAIT_S = 1.0  # lockstep: how long to wait for a step's frames before holding one step
LOCKSTEP_HOLDS_FOR_FRAMES = 3  # ... and how many such holds before the cameras count as stale

# Python hands the GIL to a waiting thread only after this long (default 5 ms). This node's sensor callbacks,
# executor, control loop and inference share one GIL: a thread that wakes (the executor, a sensor callback)
# can wait that long while the inference thread runs, and at 200 sensor messages/s the callbacks fell behind
# by hundreds of ms
# (bench_policy_loop.py, 96x128, 2 cores, three runs each: at 5 ms all three goals ended within 63 steps on
# "joint_states: no message for 0.26-0.28 s" while the simulator published every 20-67 ms; at 1 ms none did,
# period error p99 60-220 ms against 244-340)
GIL_SWITCH_INTERVAL_S = 0.001


def stamp_seconds(stamp) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


@dataclass
class Run:
    """One goal being executed: its settings, its stop request and what it measured."""

    goal_id: str
    task: str
    max_steps: int
    max_duration_s: float
    planning: bool
    num_candidates: int
    action_steps: int | None
    seed: int | None
    stop_reason: int | None = None
    stop_detail: str = ""
    end_reason: int | None = None
    end_detail: str = ""
    steps: int = 0
    chunks: int = 0
    value: float = float("nan")
    chunk_latency_ms: list[float] = field(default_factory=list)
    chunk_values: list[float] = field(default_factory=list)  # per inferred chunk, NaN for a planning fallback
    chunk_value_spreads: list[float] = field(default_factory=list)
    obs_to_command_ms: list[float] = field(default_factory=list)
    tick_period_ms: list[float] = field(default_factory=list)
    stall_ticks: int = 0
    shaped_ticks: int = 0  # ticks whose target the command shaper changed (slowed down, or a gripper clamped)
    clamped_ticks: int = 0  # of those: ticks with a gripper target clamped onto the accepted range
    planning_fallbacks: int = 0  # planning chunks that ran out of time (a direct chunk ran instead)
    # lockstep: how long the last chunk kept the simulator waiting (it publishes nothing until our next command)
    last_inference_wait_s: float = 0.0
    done: threading.Event = field(default_factory=threading.Event)
    feedback: queue.Queue[RunPolicy.Feedback] = field(default_factory=queue.Queue)

    def request_stop(self, reason: int, detail: str) -> None:
        if self.stop_reason is None:
            self.stop_detail = detail
            self.stop_reason = reason  # set last: the control thread reads it without a lock


class _NoRamp:
    """SeamRamp's interface for delta commands: nothing to ramp."""

    def start(self, previous, first_row) -> None:
        return None

    def apply(self, target: np.ndarray) -> np.ndarray:
        return target


class PolicyNode(Node):
    def __init__(self) -> None:
        super().__init__("policy_node")
        # housekeeping timers run on a steady clock: with use_sim_time a lockstep sim holds ROS time still
        # until the first command, and the camera re-subscription must not wait for that
        self.steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.contract = c = load_contract(self._param("contract_file", "", "robot contract YAML ('' = shipped)") or None)
        self.clock_mode = self._param("clock_mode", "realtime", "realtime: wall-clock ticks; lockstep: one tick "
                                      "per simulator step", choices=CLOCK_MODES)
        self.backend = self._load_backend()
        control_hz = self._param("control_hz", 0.0, "control rate; 0 = the checkpoint's", minimum=0.0) \
            or self.backend.control_hz
        self.period_s = 1.0 / control_hz
        execute = self._param("execute_steps", 0, "chunk steps executed before the next chunk; 0 = checkpoint's",
                              minimum=0) or self.backend.execute_steps
        if not 1 <= execute <= self.backend.chunk_length:
            raise ValueError(f"parameter execute_steps:={execute} must be 1..{self.backend.chunk_length} "
                             f"(the chunk length)")
        self.execute_steps = execute
        self.default_action_steps = self._param("action_steps", 0, "denoising steps; 0 = checkpoint's", minimum=0) \
            or self.backend.action_steps
        self.prefetch = self._param("prefetch", True, "compute the next chunk while the current one runs")
        self.blend_steps = self._param("blend_steps", 0, "ticks to cross-fade old -> new chunk", minimum=0)
        self.smoothing_window = self._param("smoothing_window", 0, "moving average over a chunk's rows (0 = off)",
                                            minimum=0)
        coeff = self._param("temporal_ensemble_coeff", -1.0, "ACT temporal ensembling coefficient; < 0 = off")
        self.ensemble_coeff = coeff if coeff >= 0 else None
        self.lead_margin_ticks = self._param("lead_margin_ticks", 2, "extra prefetch lead (ticks)", minimum=0)
        self.default_candidates = self._param("num_candidates", 8, "planning proposals per chunk", minimum=1)
        self.planning_fallback = self._param(
            "planning_fallback", True, "realtime planning: when scoring would finish after the current chunk "
            "runs out, execute the base policy's first proposal instead of stalling the arm")
        self.default_max_steps = self._param("default_max_steps", 1000, "steps when the goal and task give none",
                                             minimum=1)
        self.stop_on_success = self._param("stop_on_success", False, "end the goal when the stage score says success")
        self.publish_predicted_images = self._param("publish_predicted_images", False,
                                                    "decode and publish predicted future images (costly)")
        self.predicted_images_period_s = self._param("predicted_images_period_s", 1.0,
                                                     "minimum time between predicted-image publications",
                                                     minimum=0.0)
        self.lockstep_timeout_s = self._param("lockstep_timeout_s", 10.0, "lockstep: abort when the simulator "
                                              "sends nothing for this long (s)", minimum=0.1)
        self.startup_timeout_s = self._param("startup_timeout_s", 3.0, "a goal waits this long for the first "
                                             "joint state before aborting (s)", minimum=0.0)
        hw_override = None if self.backend.camera_hw is None else tuple(self.backend.camera_hw)

        safety = c.raw["safety"]
        stale = safety["stale_after_s"]
        joint_stale_s = self._param("joint_stale_s", 0.0, "joint state staleness limit (s); 0 = the contract's",
                                    minimum=0.0) or float(stale["joint_states"])
        camera_stale_s = self._param("camera_stale_s", 0.0, "camera staleness limit (s); 0 = the contract's",
                                     minimum=0.0) or float(stale["camera"])
        self.assembler = ObservationAssembler(
            self.backend.cameras, expected_hw=hw_override, encoding=c.image_encoding,
            joint_stale_s=joint_stale_s, camera_stale_s=camera_stale_s,
            sync_tolerance_s=float(safety["observation_sync_tolerance_s"]) if self.clock_mode == "realtime" else 1e-6)
        # joint targets (ALOHA) pass the joint gate; end-effector deltas (LIBERO) only a box: no joint limits apply
        self.joint_commands = c.command_space == JOINT_POSITION
        self.gate = SafetyGate(c, self.period_s) if self.joint_commands else EndEffectorGate(c)
        if not self.joint_commands:
            self._check_checkpoint_fits_contract()
        if self.backend.max_joint_jump_rad is not None and self.joint_commands:  # the checkpoint may be stricter
            limits = self.gate.limits
            tighter = np.minimum(limits.max_tracking_error, self.backend.max_joint_jump_rad)
            self.gate.limits = replace(limits, max_tracking_error=tighter)
        max_seam_rad = self._param("max_seam_rad", 0.35, "largest gap between the last target and a new chunk "
                                   "(or the pose at a run's start) that is ramped at the velocity limit; a wider "
                                   "one aborts the goal", minimum=0.0)
        seam = np.array([max_seam_rad if i not in c.gripper_indices else 1.2 for i in range(len(c.joint_names))])
        self.seam_limits = seam
        self.shape_commands = self._param("shape_commands", True, "slow targets down to what the gate allows "
                                          "(velocity limit, tracking bound) instead of aborting on them")
        self.shaping_fraction = self._param("shaping_fraction", 0.9, "share of the gate's step and tracking "
                                            "limits that shaped targets may use", minimum=0.05, maximum=1.0)
        self.gripper_overshoot_tolerance = self._param(
            "gripper_overshoot_tolerance", 0.05, "a gripper target at most this far past the normalised range the "
            "gate accepts is clamped onto its edge (shaping only); further out it is refused", minimum=0.0,
            maximum=0.2)
        self.max_row_jump_rad = self._param("max_row_jump_rad", 0.5, "a chunk whose consecutive rows differ by "
                                            "more than this on an arm joint is a fault: refused, goal aborted",
                                            minimum=0.0)
        self.tasks = self._load_tasks()
        self.sensor_lock = threading.Lock()
        self.stage: StageScore | None = None

        self.sensors = sensors = ReentrantCallbackGroup()
        self.image_qos = self._param("image_qos", "auto", "camera subscriptions: auto (match the publishers), "
                                     "reliable or best_effort", choices=("auto", "reliable", "best_effort"))
        self.camera_subscriptions: dict[str, object] = {}
        self.camera_timer = None
        self._subscribe_cameras()
        if len(self.camera_subscriptions) < len(self.backend.cameras):
            self.camera_timer = self.create_timer(0.5, self._subscribe_cameras, clock=self.steady)
        self.create_subscription(JointState, c.topic("joint_states"), self.on_joint_state,
                                 qos_profile(c, "joint_states"), callback_group=sensors)
        self.create_subscription(StageScore, c.topic("stage_score"), self.on_stage_score,
                                 qos_profile(c, "stage_score"), callback_group=sensors)
        self.pub_command = self.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
        self.pub_value = self.create_publisher(Float32, c.topic("policy_value"), 10)
        # planning: the value of every candidate of each chunk (the chosen one is the highest), for plots
        self.pub_candidates = self.create_publisher(Float32MultiArray, c.topic("policy_candidate_values"), 10)
        self.pub_chunk = self.create_publisher(Float32MultiArray, c.topic("policy_chunk"), 10)
        self.pub_predicted = {cam: self.create_publisher(Image, c.topic("policy_predicted_image", camera=cam), 2)
                              for cam in self.backend.cameras} if self.publish_predicted_images else {}
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, c.topic("diagnostics"), 10)
        # what each goal runs, for the recorder's rollout attributes (the goal request is not on any topic)
        self.pub_run = self.create_publisher(String, c.topic("policy_run"), qos_profile(c, "policy_run"))
        self.last_predicted_publish_s = -math.inf

        self.new_joint_state = threading.Condition()
        self.inference_requests: queue.Queue[tuple[Run, InferenceRequest, int] | None] = queue.Queue()
        self.inference_results: queue.Queue[tuple[Run, InferenceRequest, int, ChunkResult | Exception]] = queue.Queue()
        self.runs: queue.Queue[Run | None] = queue.Queue()
        self.run_lock = threading.Lock()
        self.active: Run | None = None
        self.closing = threading.Event()
        self.counters = {"goals": 0, "refused_targets": 0, "stall_ticks": 0, "shaped_ticks": 0, "clamped_ticks": 0,
                         "faults": 0, "planning_fallbacks": 0}
        self.last_fault = ""
        self.last_latency_ms = float("nan")

        latency_s = self.backend.warmup(None)
        self.last_latency_ms = latency_s * 1000
        self.threads = [threading.Thread(target=self._inference_loop, name="inference", daemon=True),
                        threading.Thread(target=self._control_loop, name="control", daemon=True)]
        for t in self.threads:
            t.start()
        self.create_timer(1.0, self.publish_diagnostics, clock=self.steady)
        actions = ReentrantCallbackGroup()
        self.action_server = ActionServer(
            self, RunPolicy, c.action("run_policy"), execute_callback=self.execute,
            goal_callback=self.on_goal, handle_accepted_callback=self.on_accepted, cancel_callback=self.on_cancel,
            callback_group=actions)
        self.get_logger().info(
            f"policy ready: {self.backend.description}; warm-up chunk latency {latency_s * 1000:.0f} ms; "
            f"{control_hz:.0f} Hz, {self.execute_steps} of {self.backend.chunk_length} steps per chunk, "
            f"{self.default_action_steps} action steps, prefetch {'on' if self.prefetch else 'off'}, "
            f"smoothing window {self.smoothing_window}, temporal ensembling "
            f"{'off' if self.ensemble_coeff is None else self.ensemble_coeff}, clock {self.clock_mode}")

    # ---- set-up helpers ----
    def _param(self, name, default, description, *, choices=None, minimum=None, maximum=None):
        value = self.declare_parameter(name, default, ParameterDescriptor(description=description)).value
        if choices is not None and value not in choices:
            raise ValueError(f"parameter {name}:={value!r} must be one of {list(choices)}")
        if minimum is not None and value < minimum:
            raise ValueError(f"parameter {name}:={value!r} must be >= {minimum} ({description})")
        if maximum is not None and value > maximum:
            raise ValueError(f"parameter {name}:={value!r} must be <= {maximum} ({description})")
        return value

    def _load_backend(self):
        fake = self._param("fake_policy", "", "TEST DOUBLE spec, e.g. hold:latency_s=0.3 (never on a robot)")
        checkpoint = self._param("checkpoint", "", "checkpoint directory of the policy")
        planning = self._param("planning_checkpoint", "", "checkpoint scoring proposals in planning mode")
        device = self._param("device", "cpu", "torch device: cpu, cuda, cuda:1")
        threads = self._param("torch_threads", 0, "CPU threads for inference (0 = torch's default: every core)",
                              minimum=0)
        if threads and not fake:
            # fewer threads for the model leave cores to the driver or sim and to this node's callbacks (on 2
            # cores with every core for the model, realtime joint states arrived 0.3 s late: stale sensor)
            import torch
            torch.set_num_threads(threads)
        hw_check = self._param("camera_hw_check", "strict", "strict: frames must have the training size; "
                               "resize: any size", choices=("strict", "resize"))
        vae_base_dir = self._param("vae_base_dir", "", "diffusers base folder for the checkpoint's VAE on this machine")
        self.checkpoint_id = f"fake_policy:{fake}" if fake else checkpoint
        if fake:
            from .fake_policies import make_fake_policy
            self.get_logger().warning(f"fake_policy:={fake}: a test double, not a policy")
            return make_fake_policy(fake, self.contract.cameras, self.contract.control_rate_hz,
                                    tuple(self.contract.gripper_indices))
        if not checkpoint:
            raise ValueError("parameter checkpoint: empty; pass checkpoint:=<checkpoint directory> (the shipped "
                             "default is checkpoints/aloha_sim_default)")
        if checkpoint.startswith("lerobot:"):  # LeRobot (ACT) served from .venv-lerobot: docs/lerobot.md
            if planning:
                raise ValueError("parameter planning_checkpoint: not supported with a lerobot: checkpoint")
            from .external_backend import LeRobotBackend
            return LeRobotBackend(checkpoint[len("lerobot:"):], device=device, camera_hw_check=hw_check)
        from .policy_backend import CosmosBackend
        # the release's planning ensemble: 3 world-model samples x 5 value samples per candidate; depth > 1
        # re-plans from each predicted future state and keeps the last depth's value (a later release config)
        world_model_samples = self._param("world_model_samples", 3, "planning: future states per candidate",
                                          minimum=1)
        value_samples = self._param("value_samples", 5, "planning: value samples per future state", minimum=1)
        depth = self._param("planning_depth", 1, "planning: search depth (1 = best-of-N)", minimum=1)
        return CosmosBackend(checkpoint, planning_checkpoint=planning, device=device, camera_hw_check=hw_check,
                             vae_base_dir=vae_base_dir, world_model_samples=world_model_samples,
                             value_samples=value_samples, planning_depth=depth)

    def _check_checkpoint_fits_contract(self) -> None:
        """An end-effector robot (LIBERO, RoboCasa) takes only a checkpoint of its layout: cameras and action size."""
        c = self.contract
        layout = getattr(getattr(self.backend, "policy", None), "layout", None)
        unknown = [cam for cam in self.backend.cameras if cam not in c.cameras]
        dim = getattr(layout, "action_dim", len(c.joint_names))
        if unknown or dim != len(c.joint_names):
            name = getattr(layout, "name", "?")
            raise ValueError(f"checkpoint {self.checkpoint_id}: layout {name} (cameras {self.backend.cameras}, "
                             f"{dim}-D actions) does not fit the contract {c.source} (cameras {c.cameras}, "
                             f"{len(c.joint_names)}-D commands); pass a checkpoint of this robot's layout")

    def _load_tasks(self) -> dict[str, tuple[str, int]]:
        """task name -> (description, episode steps), from the tasks file the simulator uses."""
        try:
            from aloha_sim.tasks import load_tasks
            return {name: (spec.description, spec.episode_steps) for name, spec in load_tasks().items()}
        except Exception as exc:  # a robot computer may run without the sim's task file: names then pass through
            self.get_logger().warning(f"no task file ({exc}); goal task texts go to the policy unchanged")
            return {}

    def resolve_task(self, task: str) -> tuple[str, int | None]:
        if task in self.tasks:
            return self.tasks[task]
        for description, steps in self.tasks.values():
            if task == description:
                return description, steps
        return task, None

    # ---- sensors ----
    def _subscribe_cameras(self) -> None:
        """Subscribe each camera with a reliability its publishers can serve.

        A reliable subscription never matches a best-effort publisher (RealSense drivers may be set so), and a
        best-effort one over a reliable publisher drops fragments of large images on a loaded machine; so
        `auto` waits for the publisher and takes reliable unless a publisher is best effort."""
        depth = qos_profile(self.contract, "images").depth
        for cam in self.backend.cameras:
            if cam in self.camera_subscriptions:
                continue
            topic = self.contract.camera_topic(cam)
            reliability = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}.get(
                self.image_qos)
            if reliability is None:
                publishers = self.get_publishers_info_by_topic(topic)
                if not publishers:
                    continue
                best_effort = any(p.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for p in publishers)
                reliability = ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE
            self.camera_subscriptions[cam] = self.create_subscription(
                Image, topic, lambda msg, cam=cam: self.on_image(cam, msg),
                QoSProfile(depth=depth, reliability=reliability), callback_group=self.sensors)
            self.get_logger().info(f"{cam}: subscribed to {topic} ({reliability.name.lower()})")
        if len(self.camera_subscriptions) == len(self.backend.cameras) and self.camera_timer is not None:
            self.camera_timer.cancel()

    def on_image(self, camera: str, msg: Image) -> None:
        with self.sensor_lock:
            self.assembler.add_image(camera, msg.height, msg.width, msg.encoding, msg.data,
                                     stamp_seconds(msg.header.stamp), time.monotonic(), msg.step)

    def on_joint_state(self, msg: JointState) -> None:
        try:
            qpos = joint_state_to_vector(msg, self.contract.state_names)
        except MessageError as exc:
            with self.sensor_lock:
                self.assembler.refuse("joint_states", str(exc))
            return
        with self.sensor_lock:
            self.assembler.add_joint_state(qpos, stamp_seconds(msg.header.stamp), time.monotonic())
        with self.new_joint_state:
            self.new_joint_state.notify_all()

    def on_stage_score(self, msg: StageScore) -> None:
        self.stage = msg

    # ---- action server ----
    def on_goal(self, goal: RunPolicy.Goal) -> GoalResponse:
        if goal.mode == RunPolicy.Goal.MODE_PLANNING and not self.backend.has_planning:
            self.get_logger().error("goal refused: planning mode needs planning_checkpoint:=<dir>")
            return GoalResponse.REJECT
        if goal.mode not in (RunPolicy.Goal.MODE_DIRECT, RunPolicy.Goal.MODE_PLANNING):
            self.get_logger().error(f"goal refused: unknown mode {goal.mode}")
            return GoalResponse.REJECT
        return GoalResponse.ACCEPT

    def on_accepted(self, goal_handle) -> None:
        with self.run_lock:
            if self.active is not None:
                self.active.request_stop(R.END_PREEMPTED, "a newer goal took over the robot")
        goal_handle.execute()

    def on_cancel(self, goal_handle) -> CancelResponse:
        with self.run_lock:
            run = self.active
            if run is not None and run.goal_id == bytes(goal_handle.goal_id.uuid).hex():
                run.request_stop(R.END_CANCELED, "cancelled by the client")  # the next tick publishes nothing
        return CancelResponse.ACCEPT

    def execute(self, goal_handle) -> RunPolicy.Result:
        goal = goal_handle.request
        task, task_steps = self.resolve_task(goal.task)
        run = Run(goal_id=bytes(goal_handle.goal_id.uuid).hex(), task=task,
                  max_steps=goal.max_steps or task_steps or self.default_max_steps,
                  max_duration_s=goal.max_duration_s, planning=goal.mode == RunPolicy.Goal.MODE_PLANNING,
                  num_candidates=goal.num_candidates or self.default_candidates,
                  action_steps=goal.action_steps or self.default_action_steps,
                  seed=goal.seed if goal.seed >= 0 else None)
        with self.run_lock:
            if self.active is not None:
                self.active.request_stop(R.END_PREEMPTED, "a newer goal took over the robot")
            self.active = run
            self.counters["goals"] += 1
        if goal_handle.is_cancel_requested:
            run.request_stop(R.END_CANCELED, "cancelled by the client")
        self.pub_run.publish(String(data=json.dumps({
            "goal_id": run.goal_id, "task": run.task, "seed": goal.seed, "checkpoint": self.checkpoint_id,
            "mode": "planning" if run.planning else "direct", "max_steps": run.max_steps})))
        self.runs.put(run)
        while not run.done.wait(0.02):
            self._forward_feedback(goal_handle, run)
            if goal_handle.is_cancel_requested:
                run.request_stop(R.END_CANCELED, "cancelled by the client")
        self._forward_feedback(goal_handle, run)
        with self.run_lock:
            if self.active is run:
                self.active = None
        result = R(steps_executed=run.steps, chunks_executed=run.chunks, end_reason=run.end_reason,
                   end_detail=run.end_detail, final_value=float(run.value) if math.isfinite(run.value) else -1.0,
                   final_stage_score=float(self.stage.score) if self.stage is not None else -1.0,
                   chunk_latency_ms=run.chunk_latency_ms, chunk_values=run.chunk_values,
                   chunk_value_spreads=run.chunk_value_spreads, obs_to_command_ms=run.obs_to_command_ms,
                   tick_period_ms=run.tick_period_ms, stall_ticks=run.stall_ticks,
                   planning_fallbacks=run.planning_fallbacks)
        try:
            if run.end_reason == R.END_CANCELED and goal_handle.is_cancel_requested:
                goal_handle.canceled()
            elif run.end_reason in (R.END_SUCCEEDED, R.END_MAX_STEPS, R.END_MAX_DURATION):
                goal_handle.succeed()
            else:
                goal_handle.abort()
        except Exception:  # noqa: BLE001 - rclpy raises its C layer's RCLError here
            if rclpy.ok(context=self.context):
                raise
            # shutting down (Ctrl-C, SIGTERM): the action server's publishers are gone and nobody is left to
            # tell; the run has already stopped commanding motion
        return result

    def _forward_feedback(self, goal_handle, run: Run) -> None:
        while True:
            try:
                feedback = run.feedback.get_nowait()
            except queue.Empty:
                return
            if goal_handle.is_active:
                goal_handle.publish_feedback(feedback)

    # ---- inference thread ----
    def _inference_loop(self) -> None:
        while True:
            item = self.inference_requests.get()
            if item is None:
                return
            run, request, obs_tick = item
            if run.stop_reason is not None:
                continue
            try:
                prepared = self.backend.prepare(request)
                result: ChunkResult | Exception = self.backend.infer(request, prepared)
            except Exception as exc:  # reported to the goal as an inference error; the robot holds
                result = exc
            self.inference_results.put((run, request, obs_tick, result))

    # ---- control thread ----
    def _control_loop(self) -> None:
        while not self.closing.is_set():
            run = self.runs.get()
            if run is None:
                return
            try:
                self._execute_run(run)
            except Exception as exc:  # never leave a goal hanging: report and hold
                self._end(run, R.END_INFERENCE_ERROR, f"policy node error: {type(exc).__name__}: {exc}")
            finally:
                run.done.set()

    def _now_stamp_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _end(self, run: Run, reason: int, detail: str) -> None:
        if run.end_reason is None:
            run.end_reason, run.end_detail = reason, detail
            if reason in (R.END_STALE_SENSOR, R.END_UNSAFE_COMMAND, R.END_INFERENCE_ERROR):
                self.counters["faults"] += 1
                self.last_fault = detail
                self.get_logger().error(f"goal aborted, holding the last safe target: {detail}")

    def _execute_run(self, run: Run) -> None:
        lockstep = self.clock_mode == "lockstep"
        # lockstep: the observation of the switch tick itself, as the release's blocking client does
        scheduler = ChunkScheduler(self.execute_steps, self.period_s, prefetch=self.prefetch,
                                   lead_margin_ticks=0 if lockstep else self.lead_margin_ticks, blend_steps=self.blend_steps,
                                   temporal_ensemble_coeff=self.ensemble_coeff,
                                   initial_latency_s=0.0 if lockstep else self._expected_latency_s())
        latest = self._wait_first_joint_state(run)
        if latest is None:
            return self._end(run, run.stop_reason or R.END_STALE_SENSOR, run.stop_detail or
                             f"joint_states: nothing received in {self.startup_timeout_s:g} s; is the robot or sim up?")
        self.gate.reset(latest[0])
        if self.joint_commands:
            ramp = SeamRamp(self.gate.limits.max_step, self.seam_limits, names=self.contract.joint_names)
            shaper = CommandShaper(self.gate.limits.max_step, self.gate.limits.max_tracking_error,
                                   self.shaping_fraction, accepted=accepted_command_range(self.contract),
                                   grippers=self.contract.gripper_indices,
                                   gripper_tolerance=self.gripper_overshoot_tolerance) if self.shape_commands else None
        else:  # deltas have no seam to ramp nor a measured position to track: each command is a motion of its own
            ramp, shaper = _NoRamp(), None
        start_wall = time.monotonic()
        start_stamp = latest[1] if lockstep else self._now_stamp_s()
        last_publish = None
        not_ready_since = None
        answered_stamp = -math.inf
        chunk_first_tick: dict[int, float] = {}  # chunk index -> observation stamp, until its first command
        held_for_frames, hold_tick = 0, False
        first_pass_done = False
        tick = 0
        while True:
            # ---- wait for the tick ----
            if lockstep:
                stamp = self._wait_lockstep_state(answered_stamp, run)
                if stamp is None:
                    break
                answered_stamp = stamp
                tick = round((stamp - start_stamp) / self.period_s)
                now_stamp = stamp
            else:
                # every pass waits for its tick (also while no chunk is there yet: never spin on the CPU the
                # inference thread needs)
                next_deadline = start_wall + (tick + 1) * self.period_s if first_pass_done else start_wall
                first_pass_done = True
                delay = next_deadline - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                tick = int((time.monotonic() - start_wall) / self.period_s)  # late: skip, stay aligned to time
                now_stamp = self._now_stamp_s()
            if run.stop_reason is not None:
                return self._end(run, run.stop_reason, run.stop_detail)
            if run.max_duration_s and time.monotonic() - start_wall > run.max_duration_s:
                return self._end(run, R.END_MAX_DURATION, f"max_duration_s={run.max_duration_s:g} elapsed")
            if run.steps >= run.max_steps:
                break
            # ---- sensors ----
            with self.sensor_lock:
                try:
                    if lockstep:
                        self.assembler.check_fresh(time.monotonic(), use_receipt_time=True,
                                                   stale_after_s=self._lockstep_stale_after_s(run))
                    else:
                        self.assembler.check_fresh(now_stamp)
                except ObservationError as exc:
                    if exc.reason == "stale":
                        return self._end(run, R.END_STALE_SENSOR, exc.detail)
                    if exc.reason == "bad_input":
                        return self._end(run, R.END_INFERENCE_ERROR, exc.detail)
                measured = self.assembler.latest_joint_state()[0]
            # ---- chunks ----
            while scheduler.should_request(tick):
                with self.sensor_lock:
                    try:
                        obs = self.assembler.snapshot(time.monotonic() if lockstep else now_stamp,
                                                      use_receipt_time=lockstep, latest_joint_state=lockstep,
                                                      stale_after_s=self._lockstep_stale_after_s(run) if lockstep
                                                      else None)
                    except ObservationError as exc:
                        obs, waited = None, exc
                if obs is None:
                    if lockstep:  # the frames of this step are still on their way: the sim waits for us
                        if self._wait_lockstep_images(run, LOCKSTEP_FRAME_WAIT_S):
                            continue
                        if held_for_frames >= LOCKSTEP_HOLDS_FOR_FRAMES:
                            return self._end(run, R.END_STALE_SENSOR, str(waited))
                        # this step's frames went out before we subscribed: hold the measured pose for one step,
                        # so that the simulator steps and publishes a complete observation
                        held_for_frames += 1
                        self._publish(measured, now_stamp, lockstep)
                        run.steps += 1
                        hold_tick = True
                        break
                    not_ready_since = not_ready_since if not_ready_since is not None else time.monotonic()
                    # a run's first observation may wait for discovery (startup_timeout_s); later ones may not
                    limit_s = self.startup_timeout_s if scheduler.current is None else self.assembler.camera_stale_s
                    if time.monotonic() - not_ready_since > limit_s:
                        return self._end(run, R.END_STALE_SENSOR, str(waited))
                    break
                not_ready_since = None
                obs_tick = round((obs.stamp_s - start_stamp) / self.period_s)
                request = InferenceRequest(obs, run.task, None if run.seed is None else run.seed + run.chunks,
                                           run.planning, run.action_steps, run.num_candidates,
                                           self._want_predicted_images(),
                                           self._planning_deadline(run, scheduler, tick, lockstep))
                scheduler.mark_requested(tick)
                self.inference_requests.put((run, request, obs_tick))
                if lockstep:  # the simulator waits for this step's command: wait for the chunk here
                    if not self._wait_inference(run, scheduler, chunk_first_tick, tick):
                        self._hold(run, now_stamp, lockstep)  # a refused or failed chunk: hold, then end
                        return self._end(run, run.end_reason or R.END_INFERENCE_ERROR, run.end_detail)
                break
            if hold_tick:
                hold_tick = False
                continue
            if not lockstep and not self._collect_inference(run, scheduler, chunk_first_tick, tick, block=False):
                self._hold(run, now_stamp, lockstep)  # a refused or failed chunk: hold the last safe target
                return
            if run.end_reason is not None:
                return
            started_before = scheduler.chunks_started
            target = scheduler.action_for(tick)
            if scheduler.chunks_started != started_before:
                self._on_chunk_started(run, scheduler.current)
                if target is not None:
                    refusal = ramp.start(self.gate.last_safe_target, target)
                    if refusal is not None:
                        self.counters["refused_targets"] += 1
                        self._hold(run, now_stamp, lockstep)
                        return self._end(run, R.END_UNSAFE_COMMAND, f"unsafe chunk seam refused: {refusal}")
            if target is None:
                if scheduler.current is not None:
                    run.stall_ticks += 1
                    self.counters["stall_ticks"] += 1
                if lockstep and self.gate.last_safe_target is not None:
                    # the simulator steps only on a command: hold the last safe target for this step
                    self._publish(self.gate.last_safe_target, now_stamp, lockstep)
                    run.steps += 1
                continue
            # ---- safety, then command ----
            target = ramp.apply(target)
            if shaper is not None:
                shaped_before, clamped_before = shaper.shaped_ticks, shaper.clamped_ticks
                target = shaper.shape(target, self.gate.last_safe_target, measured)
                if shaper.shaped_ticks != shaped_before:
                    run.shaped_ticks += 1
                    self.counters["shaped_ticks"] += 1
                if shaper.clamped_ticks != clamped_before:
                    run.clamped_ticks += 1
                    self.counters["clamped_ticks"] += 1
            violation = self.gate.check(target, measured)
            if violation is not None:
                self.counters["refused_targets"] += 1
                self._hold(run, now_stamp, lockstep)
                return self._end(run, R.END_UNSAFE_COMMAND, f"unsafe target refused ({violation.reason}): {violation}")
            if run.stop_reason is not None:  # a cancel that arrived while this tick was computed
                return self._end(run, run.stop_reason, run.stop_detail)
            self._publish(target, now_stamp, lockstep)
            now_wall = time.monotonic()
            if last_publish is not None:
                run.tick_period_ms.append((now_wall - last_publish) * 1000)
            last_publish = now_wall
            first = chunk_first_tick.pop(scheduler.current.index, None)
            if first is not None:
                run.obs_to_command_ms.append(max(0.0, (self._now_stamp_s() - first) * 1000) if not lockstep else 0.0)
            run.steps += 1
            if self.stop_on_success and self.stage is not None and self.stage.success:
                return self._end(run, R.END_SUCCEEDED, f"stage score {self.stage.score:.0f}: {self.stage.stage}")
        if run.stop_reason is not None:
            return self._end(run, run.stop_reason, run.stop_detail)
        self._await_final_score(run, answered_stamp if lockstep else None)
        clamped = (f", {run.clamped_ticks} with a gripper target clamped onto the accepted range"
                   if run.clamped_ticks else "")
        shaped = (f" ({run.shaped_ticks} shaped: slowed to the velocity/tracking limits{clamped})"
                  if run.shaped_ticks else "")
        self._end(run, R.END_MAX_STEPS, f"{run.steps} steps executed{shaped}")

    def _wait_first_joint_state(self, run: Run) -> tuple[np.ndarray, float] | None:
        """The latest joint state, waiting up to startup_timeout_s for one (a goal may beat discovery)."""
        deadline = time.monotonic() + self.startup_timeout_s
        while run.stop_reason is None:
            with self.sensor_lock:
                latest = self.assembler.latest_joint_state()
            if latest is not None or time.monotonic() > deadline:
                return latest
            time.sleep(0.01)
        return None

    def _hold(self, run: Run, stamp_s: float, lockstep: bool) -> None:
        """Command the last safe target once more: the arm stays where it was safely sent."""
        hold = self.gate.last_safe_target
        if hold is not None and run.stop_reason is None:
            self._publish(hold, stamp_s, lockstep)

    def _expected_latency_s(self) -> float:
        return self.last_latency_ms / 1000 if math.isfinite(self.last_latency_ms) else self.period_s * 10

    def _want_predicted_images(self) -> bool:
        return bool(self.pub_predicted) and time.monotonic() - self.last_predicted_publish_s >= \
            self.predicted_images_period_s

    def _collect_inference(self, run: Run, scheduler: ChunkScheduler, firsts: dict, tick: int, block: bool,
                           timeout_s: float = 0.0) -> bool:
        """Move finished chunks of this run into the scheduler; False (and the run ended) on an error."""
        while True:
            try:
                owner, request, obs_tick, result = self.inference_results.get(block=block, timeout=timeout_s or None)
            except queue.Empty:
                return True
            if owner is not run:
                continue  # a chunk of a preempted run
            if isinstance(result, Exception):
                scheduler.on_request_failed()
                self._end(run, R.END_INFERENCE_ERROR, f"inference failed: {type(result).__name__}: {result}")
                return False
            index = run.chunks
            run.chunks += 1
            run.value = result.value
            run.chunk_latency_ms.append(result.latency_s * 1000)
            run.chunk_values.append(float(result.value))
            run.chunk_value_spreads.append(float(result.value_spread))
            self.last_latency_ms = result.latency_s * 1000
            actions = smooth_rows(np.asarray(result.actions, dtype=np.float64), self.smoothing_window)
            # checked after smoothing, on the rows that would be commanded: a small model's raw rows carry
            # single-row spikes that the smoothing removes; a jump that survives it is a fault
            jump = find_row_jump(actions, self.max_row_jump_rad, self.contract.joint_names,
                                 skip=self.contract.gripper_indices) if self.joint_commands else None
            if jump is not None:
                self.counters["refused_targets"] += 1
                self._end(run, R.END_UNSAFE_COMMAND, f"chunk {index} refused: {jump}")
                return False
            chunk = Chunk(actions, obs_tick, index, result.value,
                          result.latency_s, result.value_spread, result.planning_fallback,
                          result.proposal_latency_s)
            if result.planning_fallback:
                run.planning_fallbacks += 1
                self.counters["planning_fallbacks"] += 1
            scheduler.on_chunk(chunk, tick)
            firsts[index] = request.observation.stamp_s
            self._publish_live_view(result)
            if not block:
                continue
            return True

    def _planning_deadline(self, run: Run, scheduler: ChunkScheduler, tick: int, lockstep: bool) -> float | None:
        """When a planning chunk requested at `tick` must be ready (time.monotonic()): one tick before the
        current chunk runs out, so that it is collected in time. None: no limit (direct mode; lockstep, where
        the simulator waits for us; the first chunk, which the arm waits for anyway; the fallback turned off)."""
        current = scheduler.current
        if not run.planning or lockstep or current is None or not self.planning_fallback:
            return None
        ticks_left = current.obs_tick + len(current.actions) - tick - 1
        return time.monotonic() + max(0, ticks_left) * self.period_s

    def _wait_inference(self, run: Run, scheduler: ChunkScheduler, firsts: dict, tick: int) -> bool:
        """Lockstep: block until the requested chunk is in (False when the run ended meanwhile)."""
        start = time.monotonic()
        while run.stop_reason is None:
            before = run.chunks
            if not self._collect_inference(run, scheduler, firsts, tick, block=True, timeout_s=0.05):
                return False
            if run.chunks > before:
                run.last_inference_wait_s = time.monotonic() - start
                return True
        run.end_reason, run.end_detail = run.stop_reason, run.stop_detail
        return False

    def _lockstep_stale_after_s(self, run: Run) -> float:
        """Lockstep sensor age limit: lockstep_timeout_s, plus the time the last chunk kept the simulator waiting.

        A lockstep simulator publishes only in answer to a command, so while the node waits for its own chunk
        (a planning chunk on a loaded CPU can take longer than the limit) nothing arrives, and the newest frame
        ages by that wait. It is not the sensor's fault; a camera that stops is still caught, that much later.
        """
        return self.lockstep_timeout_s + run.last_inference_wait_s

    def _wait_lockstep_state(self, answered: float, run: Run) -> float | None:
        deadline = time.monotonic() + self.lockstep_timeout_s
        with self.new_joint_state:
            while run.stop_reason is None:
                with self.sensor_lock:
                    latest = self.assembler.latest_joint_state()
                if latest is not None and latest[1] > answered + 1e-9:
                    return latest[1]
                if time.monotonic() > deadline:
                    self._end(run, R.END_STALE_SENSOR, f"joint_states: nothing new from the simulator for "
                                                       f"{self.lockstep_timeout_s:g} s (lockstep)")
                    return None
                self.new_joint_state.wait(0.02)
        return answered + self.period_s  # stop requested: let the loop see it

    def _wait_lockstep_images(self, run: Run, timeout_s: float) -> bool:
        """True once the frames of the newest simulator step are here (or a stop was requested)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and run.stop_reason is None:
            time.sleep(0.002)
            with self.sensor_lock:
                try:
                    self.assembler.snapshot(time.monotonic(), use_receipt_time=True, latest_joint_state=True,
                                            stale_after_s=self.lockstep_timeout_s)
                    return True
                except ObservationError as exc:
                    if exc.reason != "not_ready":
                        return False
        return run.stop_reason is not None

    def _await_final_score(self, run: Run, answered_stamp: float | None) -> None:
        """The stage score of the last step arrives after its command: give it a few periods."""
        deadline = time.monotonic() + max(0.3, 5 * self.period_s)
        while time.monotonic() < deadline:
            stage = self.stage
            if stage is not None and stage.episode_step >= run.steps:
                return
            time.sleep(0.005)

    def _on_chunk_started(self, run: Run, chunk: Chunk) -> None:
        stage = self.stage
        run.feedback.put(RunPolicy.Feedback(
            step=run.steps, chunk_index=chunk.index, chunk_latency_ms=chunk.latency_s * 1000,
            predicted_value=float(chunk.value), value_spread=float(chunk.value_spread),
            stage_score=float(stage.score) if stage is not None else -1.0,
            planning_fallback=bool(chunk.planning_fallback)))
        msg = Float32MultiArray()
        msg.layout.dim = [MultiArrayDimension(label="steps", size=len(chunk.actions), stride=chunk.actions.size),
                          MultiArrayDimension(label="joints", size=chunk.actions.shape[1], stride=chunk.actions.shape[1])]
        msg.data = chunk.actions.astype(np.float32).ravel().tolist()
        self.pub_chunk.publish(msg)

    def _publish_live_view(self, result: ChunkResult) -> None:
        self.pub_value.publish(Float32(data=float(result.value)))
        if result.candidate_values:
            msg = Float32MultiArray()
            msg.layout.dim = [MultiArrayDimension(label="candidates", size=len(result.candidate_values), stride=1)]
            msg.data = [float(v) for v in result.candidate_values]
            self.pub_candidates.publish(msg)
        if result.future_images and self.pub_predicted:
            stamp = self.get_clock().now().to_msg()
            for cam, rgb in result.future_images.items():
                if cam in self.pub_predicted:
                    self.pub_predicted[cam].publish(rgb_to_image(rgb, stamp, self.contract.camera_frame_id(cam)))
            self.last_predicted_publish_s = time.monotonic()

    def _publish(self, target: np.ndarray, stamp_s: float, lockstep: bool) -> None:
        stamp = self._stamp_msg(stamp_s) if lockstep else self.get_clock().now().to_msg()
        self.pub_command.publish(vector_to_joint_state(target, self.contract.joint_names, stamp))

    @staticmethod
    def _stamp_msg(seconds: float):
        from aloha_contract.ros import time_msg
        return time_msg(seconds)

    # ---- diagnostics and shutdown ----
    def publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name="policy_node", hardware_id=self.contract.robot)
        status.level = DiagnosticStatus.WARN if self.last_fault else DiagnosticStatus.OK
        status.message = "running a goal" if self.active is not None else "idle"
        values = {**{k: str(v) for k, v in self.counters.items()}, "last_fault": self.last_fault,
                  "last_chunk_latency_ms": f"{self.last_latency_ms:.1f}"}
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self.pub_diagnostics.publish(msg)

    def close(self) -> None:
        """Stop the worker threads before the context goes away (no publishing into a dead context)."""
        self.closing.set()
        stop_inference = getattr(self.backend, "stop", None)
        if stop_inference is not None:  # a planning chunk would outlast the join below (tens of seconds on a CPU)
            stop_inference()
        with self.run_lock:
            if self.active is not None:
                self.active.request_stop(R.END_CANCELED, "the policy node is shutting down")
        self.runs.put(None)
        self.inference_requests.put(None)
        for t in self.threads:
            t.join(timeout=5.0)


def main(args: list[str] | None = None) -> None:
    # several threads: sensor callbacks and the action server's execute callbacks run side by side
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
    sys.exit(run_node("policy_node", PolicyNode, setup_errors=(ValueError, FileNotFoundError), args=args,
                      make_executor=lambda: MultiThreadedExecutor(num_threads=4)))


if __name__ == "__main__":
    main()
