"""The safety gate applied to every commanded step by every node that commands joints.

A command reaches the motors only if it passes, in this order: length, NaN/inf, joint and gripper limits
(``validation.check_joint_command``), the per-step velocity limit against the previous commanded target
(absolute, both directions), and the tracking bound against the measured position. The gate remembers the
last target that passed: on a violation the caller keeps commanding that target ("hold") and stops.

The velocity limit is a distance per time. A caller that passes the arrival time (``now_s``) gets the limit
over the time since the last accepted target, between one period and ``max_gap_periods`` periods: a command
that comes late after a slow sender tick, or after a newer one replaced it in the depth-1 command queue, may
move as far as the arm could have moved meanwhile. Without a time a step is one period (lockstep, where
every command is one simulator period by construction).
Plain Python, no ROS: the policy node, the simulator and the real-robot driver share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .contract import Contract, ContractError
from .validation import InvalidCommand, check_joint_command


@dataclass(frozen=True)
class SafetyViolation:
    """Why a target was refused: `reason` is a stable key (for log throttling and counters), `detail` says
    which joint and which values."""

    reason: str  # "invalid" | "step" | "tracking"
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True)
class SafetyLimits:
    """The numbers of the gate, per joint in the 14-D order (grippers in normalised units)."""

    max_step: np.ndarray  # largest |target_k - target_{k-1}| per control step
    max_tracking_error: np.ndarray  # largest |target - measured|; inf for grippers (they squeeze objects)
    max_gap_periods: float = 1.0  # a late command may move this many periods' worth at most

    @classmethod
    def from_contract(cls, contract: Contract, period_s: float | None = None) -> SafetyLimits:
        """Limits at the contract's control period, or at `period_s` (e.g. a policy run at 25 Hz)."""
        try:
            raw = contract.raw["safety"]
            velocity = raw["joint_velocity_limits_rad_s"]
            margin = float(raw["step_margin"])
            gripper_step = float(raw["gripper_step_max"])
            tracking = float(raw["max_tracking_error_rad"])
            # absent from older contracts: every message is one period, the strict reading
            gap_periods = float(raw.get("max_command_gap_periods", 1.0))
        except KeyError as exc:
            raise ContractError(f"{contract.source}: safety.{exc.args[0]} missing (see the shipped contract)") from None
        period = contract.control_period_s if period_s is None else float(period_s)
        if not period > 0:
            raise ValueError(f"period_s={period_s}: expected > 0")
        if not gap_periods >= 1.0:
            raise ContractError(f"{contract.source}: safety.max_command_gap_periods={gap_periods}: expected >= 1 "
                                f"(1: every command is one period)")
        per_arm_step = [float(velocity[j]) * period * margin for j in contract.arm_joints] + [gripper_step]
        per_arm_tracking = [tracking] * len(contract.arm_joints) + [np.inf]
        return cls(np.array(per_arm_step * len(contract.arms)), np.array(per_arm_tracking * len(contract.arms)),
                   gap_periods)


class SafetyGate:
    """Checks each commanded step; remembers the last safe target to hold on a violation.

    Args:
        contract: the robot contract (joint order, limits, safety section).
        period_s: the control period the targets are commanded at (default: the contract's).
    """

    def __init__(self, contract: Contract, period_s: float | None = None) -> None:
        self.contract = contract
        self.period_s = contract.control_period_s if period_s is None else float(period_s)
        self.limits = SafetyLimits.from_contract(contract, self.period_s)
        self.names = contract.joint_names
        self.last_safe_target: np.ndarray | None = None
        self.last_safe_s: float | None = None  # when the last safe target was accepted (callers passing now_s)

    def reset(self, measured: Sequence[float] | np.ndarray | None) -> None:
        """Start a new run from the measured position: the first target is compared against it (one period)."""
        self.last_safe_target = None if measured is None else np.asarray(measured, dtype=np.float64).copy()
        self.last_safe_s = None

    def step_limit(self, now_s: float | None = None) -> np.ndarray:
        """The largest step per joint for a target commanded at `now_s` (one period's worth without a time)."""
        if now_s is None or self.last_safe_s is None:
            return self.limits.max_step
        periods = min(max((now_s - self.last_safe_s) / self.period_s, 1.0), self.limits.max_gap_periods)
        return self.limits.max_step * periods

    def check(self, target: Sequence[float] | np.ndarray, measured: Sequence[float] | np.ndarray | None,
              now_s: float | None = None) -> SafetyViolation | None:
        """None if `target` may be commanded (it becomes the last safe target), else the violation.

        `now_s`: the command's time on a monotonic clock; the step limit then covers the time since the last
        safe target (see the module's docstring). Without it every command is one period.
        """
        try:
            cmd = check_joint_command(target, self.contract)
        except InvalidCommand as exc:
            return SafetyViolation("invalid", str(exc))
        if self.last_safe_target is not None:
            violation = self._exceeds(np.abs(cmd - self.last_safe_target), self.step_limit(now_s),
                                      "step", "moves {d:.3f} in one step from the previous target {p:.3f} to "
                                      "{t:.3f} (limit {lim:.3f} for this step: velocity limit x time since the "
                                      "last accepted target, at least one period, x margin)",
                                      self.last_safe_target, cmd)
            if violation:
                return violation
        if measured is not None:
            now = np.asarray(measured, dtype=np.float64)
            violation = self._exceeds(np.abs(cmd - now), self.limits.max_tracking_error, "tracking",
                                      "target {t:.3f} is {d:.3f} from the measured {p:.3f} (limit {lim:.3f})",
                                      now, cmd)
            if violation:
                return violation
        self.last_safe_target = cmd
        self.last_safe_s = now_s
        return None

    def _exceeds(self, distance: np.ndarray, limit: np.ndarray, reason: str, template: str,
                 reference: np.ndarray, cmd: np.ndarray) -> SafetyViolation | None:
        excess = distance - limit  # absolute distances: a jump is dangerous in either direction
        worst = int(np.argmax(excess))
        if excess[worst] <= 0:
            return None
        text = template.format(d=distance[worst], p=reference[worst], t=cmd[worst], lim=limit[worst])
        return SafetyViolation(reason, f"{self.names[worst]} {text}")
