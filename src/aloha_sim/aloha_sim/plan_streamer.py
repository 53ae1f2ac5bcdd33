"""Streaming a planned joint trajectory to the simulator over ROS, as a controller would.

Shared by the scripted driver and ``aloha_eval`` (scripted upper bound, open-loop demo replay):
reset an episode through the simulator's service, stream a (T, 14) command plan on the contract's
command topic at the control rate (realtime) or one command per observation (lockstep), and read the
episode's final stage score.

``PlanPacer`` decides which command goes out at which event and is plain Python; ``PlanStreamer``
wires it to a caller's node (publisher, joint-state subscription, timer) and spins that node.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np

ClockMode = Literal["realtime", "lockstep"]
CLOCK_MODES: tuple[str, ...] = ("realtime", "lockstep")
SETTLE_S = 0.3             # realtime: after the last command, let the final stage score arrive
FINAL_SCORE_TIMEOUT_S = 5.0
LOCKSTEP_RESEND_S = 1.0    # lockstep: no new observation for this long -> send the pending command again
NS_PER_S = 1_000_000_000


class PlanPacer:
    """Which step of a plan to command, on a realtime tick or on a lockstep observation.

    Lockstep: the simulator sits at t = 0 after a reset and advances one control period per command
    stamped with its current time, then publishes the next observation. The pacer sends step 0 at
    t = 0 and answers each newer observation with the next step, stamped like that observation.
    An observation more than ~1.5 periods after the last answered one cannot belong to this episode
    (the previous episode's last messages can still be queued), so it is ignored.

    Args:
        mode: ``"realtime"`` (one command per timer tick) or ``"lockstep"`` (one per observation).
        period_s: the control period; lockstep uses it to recognise the next observation's stamp.
    """

    def __init__(self, mode: ClockMode, period_s: float):
        if mode not in CLOCK_MODES:
            raise ValueError(f"clock mode '{mode}' must be one of {CLOCK_MODES}")
        self.mode = mode
        self.period_ns = int(round(period_s * NS_PER_S))
        self.plan: np.ndarray | None = None
        self.step = 0
        self.answered_stamp_ns = -1
        self.pending: tuple[np.ndarray, int] | None = None  # the last lockstep command sent and its stamp

    @property
    def total(self) -> int:
        return 0 if self.plan is None else len(self.plan)

    @property
    def done(self) -> bool:
        return self.plan is None or self.step >= len(self.plan)

    def start(self, plan: np.ndarray) -> tuple[np.ndarray, int] | None:
        """Begin a plan; in lockstep returns the first command and its stamp (ns) to send now."""
        plan = np.asarray(plan, dtype=np.float64)
        if plan.ndim != 2 or len(plan) == 0:
            raise ValueError(f"plan has shape {plan.shape}, expected (T >= 1, joints)")
        self.plan, self.step, self.pending = plan, 0, None
        if self.mode != "lockstep":
            return None
        self.answered_stamp_ns = 0
        return self._emit(0)

    def stop(self) -> None:
        self.plan, self.pending = None, None

    def on_tick(self) -> np.ndarray | None:
        """Realtime: the command for this tick, or None when no plan is running."""
        if self.mode != "realtime" or self.done:
            return None
        command = self.plan[self.step]
        self.step += 1
        return command

    def on_observation(self, stamp_ns: int) -> tuple[np.ndarray, int] | None:
        """Lockstep: the command answering an observation stamped ``stamp_ns``, or None to ignore it."""
        if self.mode != "lockstep" or self.done:
            return None
        if stamp_ns <= self.answered_stamp_ns or stamp_ns > self.answered_stamp_ns + 3 * self.period_ns // 2:
            return None
        self.answered_stamp_ns = stamp_ns
        return self._emit(stamp_ns)

    def _emit(self, stamp_ns: int) -> tuple[np.ndarray, int]:
        command = self.plan[self.step]
        self.step += 1
        self.pending = (command, stamp_ns)
        return self.pending


class StageScoreTracker:
    """The simulator's latest stage score for the current episode.

    The topic is transient-local and keeps publishing between episodes, so messages of the previous
    episode can arrive after a reset. ``begin_episode(expect_reset=True)`` ignores everything until
    the message the simulator publishes on reset (episode step 0, or 1 if a realtime tick got first).
    """

    def __init__(self, node, contract):
        from aloha_contract.ros import qos_profile
        from aloha_interfaces.msg import StageScore

        self.latest = None
        self._armed = True
        self.subscription = node.create_subscription(StageScore, contract.topic("stage_score"), self._on_score,
                                                     qos_profile(contract, "stage_score"))

    def begin_episode(self, expect_reset: bool = True) -> None:
        """Call before the reset request is sent."""
        self.latest = None
        self._armed = not expect_reset

    def _on_score(self, msg) -> None:
        if not self._armed:
            if msg.episode_step > 1:
                return
            self._armed = True
        self.latest = msg

    def reached_step(self, step: int, task: str | None = None) -> bool:
        m = self.latest
        return m is not None and m.episode_step >= step and (task is None or m.task == task)


def spin_until(node, predicate: Callable[[], bool], timeout_s: float | None, poll_s: float = 0.05) -> bool:
    """Spin ``node`` until ``predicate()`` holds; False on timeout (None = no timeout) or shutdown."""
    import rclpy

    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    while not predicate():
        if not rclpy.ok(context=node.context) or (deadline is not None and time.monotonic() >= deadline):
            return predicate()
        rclpy.spin_once(node, timeout_sec=poll_s)
    return True


def object_poses_from_reset(response) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """ResetEpisode response -> {object: (position xyz, quaternion wxyz)}, as plan_episode takes them."""
    return {name: (np.array([p.position.x, p.position.y, p.position.z]),
                   np.array([p.orientation.w, p.orientation.x, p.orientation.y, p.orientation.z]))
            for name, p in zip(response.object_names, response.object_poses)}


class ResetError(RuntimeError):
    """The simulator did not reset the episode (unknown task, no answer)."""


class SimEpisodes:
    """Resets simulated episodes through the contract's ResetEpisode service, tracking the stage score."""

    def __init__(self, node, contract):
        from aloha_interfaces.srv import ResetEpisode

        self.node = node
        self.contract = contract
        self.service_name = contract.service("reset_episode")
        self.client = node.create_client(ResetEpisode, self.service_name)
        self.scores = StageScoreTracker(node, contract)

    def wait_for_service(self, timeout_s: float) -> bool:
        return self.client.wait_for_service(timeout_sec=timeout_s)

    def reset(self, task: str, seed: int, timeout_s: float = 30.0):
        """Reset the simulator to ``task`` with ``seed``; the response (description, steps, poses)."""
        from aloha_interfaces.srv import ResetEpisode

        self.scores.begin_episode(expect_reset=True)
        future = self.client.call_async(ResetEpisode.Request(task=task, seed=int(seed)))
        spin_until(self.node, future.done, timeout_s)
        response = future.result() if future.done() else None
        if response is None:
            raise ResetError(f"reset of {task} seed {seed}: no answer from {self.service_name} within "
                             f"{timeout_s:.0f} s (is the sim node running?)")
        if not response.success:
            raise ResetError(f"reset of {task} seed {seed} refused: {response.message}")
        return response

    def final_score(self, task: str, steps: int, mode: ClockMode, timeout_s: float = FINAL_SCORE_TIMEOUT_S):
        """The stage score at the end of an episode of ``steps`` commands (None if none arrived).

        Lockstep: the simulator publishes nothing more after the last step, so wait for that step's
        score. Realtime: the simulator keeps stepping; let it settle briefly, then take the latest.
        """
        if mode == "lockstep":
            spin_until(self.node, lambda: self.scores.reached_step(steps, task), timeout_s)
        else:
            settle_until = time.monotonic() + SETTLE_S
            spin_until(self.node, lambda: time.monotonic() >= settle_until, None)
            spin_until(self.node, lambda: self.scores.reached_step(1, task), timeout_s)
        latest = self.scores.latest
        return latest if latest is not None and latest.task == task else None


class PlanStreamer:
    """Streams (T, 14) command plans on the contract's command topic from ``node``, paced by ``mode``.

    Args:
        node: the caller's node; the streamer adds a publisher, a joint-state subscription (lockstep)
            and a control-rate timer (realtime) to it, and spins it in ``play``.
        contract: the robot contract (topics, QoS, joint names, control period).
        mode: the simulator's clock mode.
    """

    def __init__(self, node, contract, mode: ClockMode):
        from sensor_msgs.msg import JointState

        from aloha_contract.ros import qos_profile

        self.node = node
        self.contract = contract
        self.pacer = PlanPacer(mode, contract.control_period_s)
        self.publisher = node.create_publisher(JointState, contract.topic("joint_commands"),
                                               qos_profile(contract, "joint_commands"))
        self.subscription = None
        self.timer = None
        if mode == "lockstep":
            self.subscription = node.create_subscription(JointState, contract.topic("joint_states"), self._on_state,
                                                         qos_profile(contract, "joint_states"))
        else:
            self.timer = node.create_timer(contract.control_period_s, self._on_tick)
        self._last_progress_s = time.monotonic()

    @property
    def mode(self) -> str:
        return self.pacer.mode

    @property
    def done(self) -> bool:
        return self.pacer.done

    @property
    def steps_sent(self) -> int:
        return self.pacer.step

    def start(self, plan: np.ndarray) -> None:
        first = self.pacer.start(plan)
        self._last_progress_s = time.monotonic()
        if first is not None:
            self._send(*first)

    def stop(self) -> None:
        self.pacer.stop()

    def play(self, plan: np.ndarray, timeout_s: float | None = None,
             on_step: Callable[[int, int], None] | None = None) -> bool:
        """Stream ``plan`` to the end (spinning the node); False on timeout or shutdown.

        ``on_step(steps_sent, total)`` is called as the plan progresses (for progress displays).
        """
        self.start(plan)
        reported = -1
        deadline = None if timeout_s is None else time.monotonic() + timeout_s

        def finished() -> bool:
            nonlocal reported
            if on_step is not None and self.pacer.step != reported:
                reported = self.pacer.step
                on_step(reported, self.pacer.total)
            if self.mode == "lockstep" and time.monotonic() - self._last_progress_s > LOCKSTEP_RESEND_S:
                self._resend()
            return self.done or (deadline is not None and time.monotonic() > deadline)

        spin_until(self.node, finished, None)
        completed = self.done
        if not completed:
            self.stop()
        return completed

    def _send(self, command: np.ndarray, stamp_ns: int | None) -> None:
        """Publish ``command`` stamped with sim time ``stamp_ns`` (lockstep) or now (realtime)."""
        from builtin_interfaces.msg import Time

        from aloha_contract.ros import vector_to_joint_state

        if stamp_ns is None:
            stamp = self.node.get_clock().now().to_msg()
        else:
            stamp = Time(sec=stamp_ns // NS_PER_S, nanosec=stamp_ns % NS_PER_S)
        self.publisher.publish(vector_to_joint_state(command, self.contract.joint_names, stamp))

    def _resend(self) -> None:
        # a lost command would stall lockstep for good; the sim ignores a copy it has already applied
        self._last_progress_s = time.monotonic()
        if self.pacer.pending is not None:
            self._send(*self.pacer.pending)

    def _on_tick(self) -> None:
        command = self.pacer.on_tick()
        if command is not None:
            self._send(command, None)

    def _on_state(self, msg) -> None:
        answer = self.pacer.on_observation(msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec)
        if answer is not None:
            self._last_progress_s = time.monotonic()
            self._send(*answer)
