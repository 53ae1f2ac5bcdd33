"""The safety gate of an end-effector contract (LIBERO, RoboCasa): 7-D delta commands, no joint targets.

A delta command has no measured counterpart to track and no previous target to step from (each command is a
motion of its own), so the joint gate's step and tracking bounds do not apply. What does: the vector's length,
NaN/inf, and the contract's box (``command_limits.low/high``; within ``margin`` beyond it a command is clipped,
further out refused). Holding must stop the arm: the hold command is the contract's ``hold`` (zero deltas) with
the gripper of the last safe command, never a repeat of the last delta. Plain Python, no ROS: the policy node and
the LIBERO sim node share it. Same interface as :class:`aloha_contract.safety.SafetyGate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .contract import Contract
from .safety import SafetyViolation


class EndEffectorGate:
    """Checks each delta command against the contract's box; remembers what to send to hold still."""

    def __init__(self, contract: Contract) -> None:
        limits = contract.raw["command_limits"]
        self.names = contract.joint_names
        self.low = np.asarray(limits["low"], dtype=np.float64)
        self.high = np.asarray(limits["high"], dtype=np.float64)
        self.margin = float(limits.get("margin", 0.0))
        self.hold_command = np.asarray(limits["hold"], dtype=np.float64)
        self.gripper_indices = list(contract.gripper_indices)
        self.limits = None  # no joint step/tracking limits: callers skip seam ramps and command shaping
        self.last_safe_target: np.ndarray | None = None

    def reset(self, measured: Sequence[float] | np.ndarray | None = None) -> None:
        """A new run: holding means the contract's hold command (the measured state is not a command)."""
        self.last_safe_target = self.hold_command.copy()

    def check(self, target: Sequence[float] | np.ndarray,
              measured: Sequence[float] | np.ndarray | None = None) -> SafetyViolation | None:
        """None if `target` may be sent (clipped into the box when within the margin), else the violation."""
        cmd = np.asarray(target, dtype=np.float64).reshape(-1)
        if cmd.shape != self.low.shape:
            return SafetyViolation("invalid", f"command has {cmd.size} values, the contract's command_names are "
                                              f"{self.names} ({self.low.size})")
        bad = [n for n, v in zip(self.names, cmd) if not np.isfinite(v)]
        if bad:
            return SafetyViolation("invalid", f"NaN/inf in {bad}")
        excess = np.maximum(self.low - self.margin - cmd, cmd - self.high - self.margin)
        worst = int(np.argmax(excess))
        if excess[worst] > 0:
            return SafetyViolation("invalid", f"{self.names[worst]} {cmd[worst]:.3f} outside "
                                              f"[{self.low[worst]:g}, {self.high[worst]:g}] + margin {self.margin:g}")
        cmd = np.clip(cmd, self.low, self.high)
        hold = self.hold_command.copy()
        hold[self.gripper_indices] = cmd[self.gripper_indices]
        self.last_safe_target = hold
        return None

    def safe_command(self, target: Sequence[float] | np.ndarray) -> np.ndarray:
        """The command actually sent for a target that passed `check` (clipped into the box)."""
        return np.clip(np.asarray(target, dtype=np.float64), self.low, self.high)
