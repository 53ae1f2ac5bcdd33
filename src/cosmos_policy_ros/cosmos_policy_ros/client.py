"""A small façade over the ``aloha_interfaces/RunPolicy`` action for evaluators, the recorder and tests.

In the spirit of nav2_simple_commander: ``send_goal`` -> ``is_done`` / ``feedback`` -> ``wait_for_result``
(with a timeout) or ``cancel``, and one blocking ``run``. The result comes back as a plain
:class:`RunResult` with a :class:`RunStatus` (how the run ended for the caller) and the server's
:class:`EndReason`.

The top of this module is plain Python (classification, formatting): it imports no ROS package, so it
is tested without ROS; :class:`RunPolicyClient` imports rclpy when it is constructed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import Any, Literal

SERVER_GONE_S = 3.0  # an action server missing from the graph this long during a run has died


class EndReason(IntEnum):
    """``RunPolicy.Result.END_*``: why the policy node ended a run (values mirror the action file)."""

    SUCCEEDED = 0
    MAX_STEPS = 1
    MAX_DURATION = 2
    CANCELED = 3
    PREEMPTED = 4
    STALE_SENSOR = 5
    UNSAFE_COMMAND = 6
    INFERENCE_ERROR = 7

    @property
    def is_fault(self) -> bool:
        """The robot holds: a sensor stopped, a command was refused, the model failed."""
        return self in (EndReason.STALE_SENSOR, EndReason.UNSAFE_COMMAND, EndReason.INFERENCE_ERROR)

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: int | str) -> EndReason:
        """From the message's number or a name such as ``"stale_sensor"``; errors list the names."""
        if isinstance(value, str) and not value.isdigit():
            try:
                return cls[value.strip().upper()]
            except KeyError:
                raise ValueError(f"end reason '{value}' unknown (known: {[r.label for r in cls]})") from None
        return cls(int(value))


class GoalStatus(IntEnum):
    """``action_msgs/GoalStatus`` values (copied so that this module needs no ROS import)."""

    UNKNOWN = 0
    ACCEPTED = 1
    EXECUTING = 2
    CANCELING = 3
    SUCCEEDED = 4
    CANCELED = 5
    ABORTED = 6


class RunStatus(Enum):
    """How a policy run ended, seen by the client. Only ``COMPLETED`` is a run that went as asked."""

    COMPLETED = "completed"    # the episode ran to its end: max steps, max duration, or the task succeeded
    CANCELED = "canceled"      # cancelled (by us, or by another client)
    PREEMPTED = "preempted"    # a newer goal took over the robot
    FAULT = "fault"            # stale sensor or inference error: the graph failed, the robot holds
    REFUSED = "refused"        # the safety gate refused the policy's target: the policy failed, the robot holds
    REJECTED = "rejected"      # the server refused the goal
    NO_SERVER = "no_server"    # no action server answered
    TIMED_OUT = "timed_out"    # no result within the client's timeout (the goal was cancelled)
    LOST = "lost"              # the server ended the goal without a usable end reason

    @property
    def failed(self) -> bool:
        """The graph failed (as opposed to a policy that simply scored low, or a deliberate cancel)."""
        return self in (RunStatus.FAULT, RunStatus.REJECTED, RunStatus.NO_SERVER, RunStatus.TIMED_OUT,
                        RunStatus.LOST)


def classify(end_reason: int | None, goal_status: int | None = None) -> RunStatus:
    """The :class:`RunStatus` of a finished goal from the result's end reason and the goal's status.

    The end reason decides; the goal status only catches what the reason cannot say: a goal aborted
    with the default (zero) reason has no usable reason, a cancelled goal may carry a stale one.
    """
    try:
        reason = None if end_reason is None else EndReason(int(end_reason))
    except ValueError:
        return RunStatus.LOST
    if reason is None:
        return RunStatus.LOST
    if reason is EndReason.UNSAFE_COMMAND:
        return RunStatus.REFUSED  # the gate did its job; the policy's output was the problem
    if reason.is_fault:
        return RunStatus.FAULT
    if reason is EndReason.PREEMPTED:
        return RunStatus.PREEMPTED
    if reason is EndReason.CANCELED or goal_status == GoalStatus.CANCELED:
        return RunStatus.CANCELED
    if goal_status == GoalStatus.ABORTED and reason is EndReason.SUCCEEDED:
        return RunStatus.LOST
    return RunStatus.COMPLETED


def _floats(values: Any) -> list[float]:
    return [float(v) for v in (values if values is not None else [])]


def _values_or_none(values: Any) -> list[float | None]:
    """Floats, with None where the node sent NaN (a planning fallback's chunk has no value or spread)."""
    return [float(v) if math.isfinite(float(v)) else None for v in (values if values is not None else [])]


def _score_or_none(value: Any) -> float | None:
    """Stage scores are negative (or NaN) when no score source exists."""
    if value is None:
        return None
    value = float(value)
    return None if not math.isfinite(value) or value < 0 else value


@dataclass
class RunResult:
    """A finished (or failed) policy run, as plain data.

    ``final_stage_score`` is None when the node had no score source. Timing arrays come from the node:
    per chunk ``chunk_latency_ms`` (observation taken -> chunk ready) and ``obs_to_command_ms``
    (observation stamp -> first command of that chunk), per executed step ``tick_period_ms``. Per inferred
    chunk, ``chunk_values`` and ``chunk_value_spreads`` (None for a planning fallback, which ran unscored).
    """

    status: RunStatus
    end_reason: EndReason | None = None
    end_detail: str = ""
    steps_executed: int = 0
    chunks_executed: int = 0
    final_stage_score: float | None = None
    final_value: float | None = None
    chunk_latency_ms: list[float] = field(default_factory=list)
    chunk_values: list[float | None] = field(default_factory=list)
    chunk_value_spreads: list[float | None] = field(default_factory=list)
    obs_to_command_ms: list[float] = field(default_factory=list)
    tick_period_ms: list[float] = field(default_factory=list)
    stall_ticks: int = 0
    planning_fallbacks: int = 0
    wall_s: float = 0.0

    @property
    def failed(self) -> bool:
        return self.status.failed

    @classmethod
    def from_message(cls, result: Any, goal_status: int | None = None, wall_s: float = 0.0) -> RunResult:
        """From a ``RunPolicy.Result`` (or any object with its fields) and the goal's final status."""
        reason_value = getattr(result, "end_reason", None)
        try:
            reason = EndReason(int(reason_value)) if reason_value is not None else None
        except ValueError:
            reason = None
        status = classify(reason_value, goal_status)
        detail = str(getattr(result, "end_detail", ""))
        if reason is None and reason_value is not None:
            detail = f"unknown end reason {reason_value}" + (f": {detail}" if detail else "")
        value = getattr(result, "final_value", None)
        return cls(status=status, end_reason=reason, end_detail=detail,
                   steps_executed=int(getattr(result, "steps_executed", 0)),
                   chunks_executed=int(getattr(result, "chunks_executed", 0)),
                   final_stage_score=_score_or_none(getattr(result, "final_stage_score", None)),
                   final_value=None if value is None or not math.isfinite(float(value)) else float(value),
                   chunk_latency_ms=_floats(getattr(result, "chunk_latency_ms", None)),
                   chunk_values=_values_or_none(getattr(result, "chunk_values", None)),
                   chunk_value_spreads=_values_or_none(getattr(result, "chunk_value_spreads", None)),
                   obs_to_command_ms=_floats(getattr(result, "obs_to_command_ms", None)),
                   tick_period_ms=_floats(getattr(result, "tick_period_ms", None)),
                   stall_ticks=int(getattr(result, "stall_ticks", 0)),
                   planning_fallbacks=int(getattr(result, "planning_fallbacks", 0)), wall_s=float(wall_s))

    @classmethod
    def failure(cls, status: RunStatus, detail: str, wall_s: float = 0.0) -> RunResult:
        """A run that never produced a server result (rejected, no server, timed out)."""
        return cls(status=status, end_detail=detail, wall_s=wall_s)


@dataclass
class Progress:
    """One feedback message of a run, as plain data (stage score None when unknown)."""

    step: int
    chunk_index: int
    chunk_latency_ms: float
    predicted_value: float
    value_spread: float = 0.0
    stage_score: float | None = None

    @classmethod
    def from_message(cls, feedback: Any) -> Progress:
        return cls(step=int(feedback.step), chunk_index=int(feedback.chunk_index),
                   chunk_latency_ms=float(feedback.chunk_latency_ms),
                   predicted_value=float(feedback.predicted_value),
                   value_spread=float(getattr(feedback, "value_spread", 0.0)),
                   stage_score=_score_or_none(getattr(feedback, "stage_score", None)))


def format_progress(progress: Progress, max_steps: int = 0, width: int = 20) -> str:
    """One line: ``[#####-----] step 200/400 chunk 4 | 64 ms | value 0.71 | stage 50``."""
    if max_steps > 0:
        filled = min(width, int(round(width * progress.step / max_steps)))
        bar = "[" + "#" * filled + "-" * (width - filled) + "] "
        steps = f"step {progress.step}/{max_steps}"
    else:
        bar, steps = "", f"step {progress.step}"
    value = f"value {progress.predicted_value:.2f}"
    if progress.value_spread > 0:
        value += f" (spread {progress.value_spread:.2f})"
    stage = "stage -" if progress.stage_score is None else f"stage {progress.stage_score:.0f}"
    return f"{bar}{steps} chunk {progress.chunk_index} | {progress.chunk_latency_ms:.0f} ms | {value} | {stage}"


def format_result(result: RunResult) -> str:
    """One line: ``stage score 75/100 | max_steps | 400 steps, 8 chunks, 9.1 s``; faults say why."""
    score = "stage score -" if result.final_stage_score is None else f"stage score {result.final_stage_score:.0f}/100"
    reason = result.end_reason.label if result.end_reason is not None else result.status.value
    text = f"{score} | {reason}"
    if result.status is not RunStatus.COMPLETED:
        text += f" ({result.status.value.upper().replace('_', ' ')})"
    if result.end_detail and (result.status is not RunStatus.COMPLETED or result.end_reason is EndReason.MAX_DURATION):
        text += f": {result.end_detail}"
    fallbacks = f" ({result.planning_fallbacks} unplanned: out of time)" if result.planning_fallbacks else ""
    return (text + f" | {result.steps_executed} steps, {result.chunks_executed} chunks{fallbacks}, "
            f"{result.wall_s:.1f} s")


PolicyMode = Literal["direct", "planning"]
POLICY_MODES: tuple[str, ...] = ("direct", "planning")


@dataclass
class GoalSpec:
    """The fields of a ``RunPolicy.Goal`` (zeros mean "the node's default", see the action file)."""

    task: str
    mode: PolicyMode = "direct"
    max_steps: int = 0
    max_duration_s: float = 0.0
    num_candidates: int = 0
    action_steps: int = 0
    seed: int = -1

    def __post_init__(self) -> None:
        if not self.task.strip():
            raise ValueError("goal task is empty: give the task text (or a task name from config/tasks.yaml)")
        if self.mode not in POLICY_MODES:
            raise ValueError(f"policy mode '{self.mode}' must be one of {POLICY_MODES}")
        for name in ("max_steps", "num_candidates", "action_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"goal {name}={getattr(self, name)} must be >= 0 (0 = the node's default)")
        if self.max_duration_s < 0:
            raise ValueError(f"goal max_duration_s={self.max_duration_s} must be >= 0 (0 = no limit)")

    def to_message(self):
        from aloha_interfaces.action import RunPolicy

        mode = RunPolicy.Goal.MODE_PLANNING if self.mode == "planning" else RunPolicy.Goal.MODE_DIRECT
        return RunPolicy.Goal(task=self.task, mode=mode, max_steps=int(self.max_steps),
                              max_duration_s=float(self.max_duration_s), num_candidates=int(self.num_candidates),
                              action_steps=int(self.action_steps), seed=int(self.seed))


class RunPolicyClient:
    """Client of the contract's RunPolicy action on ``node`` (one goal at a time).

    Args:
        node: the caller's rclpy node.
        contract: the robot contract (names the action); loaded from the default file if None.
        spin: True when nothing else spins ``node``: the waits spin it. False when an executor already
            spins it in another thread: the waits only poll.
    """

    RESEND_AFTER_S = 4.0

    def __init__(self, node, contract=None, spin: bool = True):
        from rclpy.action import ActionClient

        from aloha_contract import fully_qualified, load_contract
        from aloha_interfaces.action import RunPolicy

        self.node = node
        self.contract = contract or load_contract()
        # the contract's name is relative: resolved in the client's namespace (one namespace per robot)
        self.action_name = fully_qualified(self.contract.action("run_policy"), node.get_namespace())
        self.spin = spin
        self._client = ActionClient(node, RunPolicy, self.action_name)
        self._goal_handle = None
        self._result_future = None
        self._sent_s = 0.0
        self.feedback: Progress | None = None
        self._feedback_callback: Callable[[Progress], None] | None = None

    # ---- waiting ----
    def _wait(self, done: Callable[[], bool], timeout_s: float | None) -> bool:
        import rclpy

        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while not done():
            if not rclpy.ok(context=self.node.context):
                return done()
            if deadline is not None and time.monotonic() >= deadline:
                return done()
            if self.spin:
                rclpy.spin_once(self.node, timeout_sec=0.05)
            else:
                time.sleep(0.01)
        return True

    def wait_for_server(self, timeout_s: float = 10.0) -> bool:
        if self.spin:
            # discovery needs the node spun in some versions; poll the server's readiness while spinning
            return self._wait(self._client.server_is_ready, timeout_s)
        return self._client.wait_for_server(timeout_sec=timeout_s)

    # ---- goal ----
    def send_goal(self, goal: GoalSpec | Any, feedback_callback: Callable[[Progress], None] | None = None,
                  timeout_s: float = 10.0) -> RunResult | None:
        """Send ``goal``; None once accepted, else the failed :class:`RunResult` (rejected, no server)."""
        if self.is_running():
            raise RuntimeError("a goal is still running: cancel it or wait for its result first")
        message = goal.to_message() if isinstance(goal, GoalSpec) else goal
        self._goal_handle, self._result_future, self.feedback = None, None, None
        self._feedback_callback = feedback_callback
        if not self._client.server_is_ready() and not self.wait_for_server(timeout_s):
            return RunResult.failure(RunStatus.NO_SERVER, f"no action server at {self.action_name} "
                                     f"(is the policy node running?)")
        self._sent_s = time.monotonic()
        deadline = self._sent_s + timeout_s
        while True:
            # Right after discovery a DDS service reply can be lost (the server's reply writer has not yet
            # matched our reader), so a goal whose answer does not come is sent again. If the first one did
            # start, the second preempts it: either way exactly one goal runs.
            future = self._client.send_goal_async(message, feedback_callback=self._on_feedback)
            wait_s = min(self.RESEND_AFTER_S, deadline - time.monotonic())
            if self._wait(future.done, max(wait_s, 0.0)):
                break
            if time.monotonic() >= deadline:
                return RunResult.failure(RunStatus.NO_SERVER, f"{self.action_name}: no answer to the goal "
                                         f"within {timeout_s:.0f} s", time.monotonic() - self._sent_s)
            self.node.get_logger().warning(f"{self.action_name}: no answer to the goal yet; sending it again")
        handle = future.result()
        if handle is None or not handle.accepted:
            return RunResult.failure(RunStatus.REJECTED, f"{self.action_name} rejected the goal (task "
                                     f"'{getattr(message, 'task', '')}'): see the policy node's log",
                                     time.monotonic() - self._sent_s)
        self._goal_handle = handle
        self._result_future = handle.get_result_async()
        return None

    def _on_feedback(self, message) -> None:
        self.feedback = Progress.from_message(message.feedback)
        if self._feedback_callback is not None:
            self._feedback_callback(self.feedback)

    def is_running(self) -> bool:
        return self._result_future is not None and not self._result_future.done()

    def is_done(self) -> bool:
        return self._result_future is not None and self._result_future.done()

    def wait_for_result(self, timeout_s: float | None = None) -> RunResult | None:
        """The result once the run ends (spinning meanwhile); None if ``timeout_s`` passed first."""
        if self._result_future is None:
            raise RuntimeError("no goal was accepted: call send_goal first")
        gone_since: list[float] = []

        def ended() -> bool:
            # a server that died mid-run never answers: notice it instead of waiting out the timeout
            if self._result_future.done():
                return True
            if self._client.server_is_ready():
                gone_since.clear()
            elif not gone_since:
                gone_since.append(time.monotonic())
            return bool(gone_since) and time.monotonic() - gone_since[0] > SERVER_GONE_S

        if not self._wait(ended, timeout_s):
            return None
        wall_s = time.monotonic() - self._sent_s
        if not self._result_future.done():
            self._result_future = None
            return RunResult.failure(RunStatus.LOST, f"the action server {self.action_name} went away during the "
                                     f"run (did the policy node crash? see its log)", wall_s)
        wrapped = self._result_future.result()
        if wrapped is None:
            return RunResult.failure(RunStatus.LOST, "the action server returned no result", wall_s)
        return RunResult.from_message(wrapped.result, wrapped.status, wall_s)

    def cancel(self, timeout_s: float = 5.0) -> RunResult | None:
        """Cancel the running goal and return its final result (None if the server did not answer)."""
        if not self.is_running():
            return self.wait_for_result(0.0) if self.is_done() else None
        future = self._goal_handle.cancel_goal_async()
        self._wait(future.done, timeout_s)
        return self.wait_for_result(timeout_s)

    def run(self, goal: GoalSpec | Any, feedback_callback: Callable[[Progress], None] | None = None,
            timeout_s: float | None = None, accept_timeout_s: float = 10.0) -> RunResult:
        """Send ``goal`` and wait for its result; past ``timeout_s`` the goal is cancelled (TIMED_OUT)."""
        failed = self.send_goal(goal, feedback_callback, accept_timeout_s)
        if failed is not None:
            return failed
        result = self.wait_for_result(timeout_s)
        if result is not None:
            return result
        final = self.cancel()
        detail = f"no result within {timeout_s:.0f} s: cancelled"
        if final is None:
            return RunResult.failure(RunStatus.TIMED_OUT, detail, time.monotonic() - self._sent_s)
        final.status, final.end_detail = RunStatus.TIMED_OUT, f"{detail} ({final.end_detail})"
        return final

    def destroy(self) -> None:
        self._client.destroy()


def end_reason_counts(results: Sequence[RunResult]) -> dict[str, int]:
    """``{"max_steps": 8, "stale_sensor": 1}``: how a batch of runs ended (status when no reason)."""
    counts: dict[str, int] = {}
    for r in results:
        key = r.end_reason.label if r.end_reason is not None else r.status.value
        counts[key] = counts.get(key, 0) + 1
    return counts
