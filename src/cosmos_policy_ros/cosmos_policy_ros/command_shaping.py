"""Command shaping: follow the policy as fast as the robot safely can, refuse what is a fault.

Three kinds of unsafe output come out of a learned policy, and they deserve different answers:

- motion a little faster than the servos follow (a chunk that leads the arm, a wrist that lags under
  load). Refusing it would end nearly every episode of a small policy at a safety stop; the answer is
  to slow it down. `CommandShaper` moves each target at most `fraction` x the safety gate's per-step limit
  from the previous target, and keeps it within `fraction` x the gate's tracking bound of the measured
  position. The arm then moves toward the policy's target at up to its velocity limit and waits for the
  servos when they lag.
- a gripper target a little past the range the robot accepts (1.12 where "open" is accepted up to 1.1:
  measured on ACT, whose outputs are not clamped to the range it was trained on). Given the accepted range,
  `CommandShaper` clamps a gripper overshoot of up to `gripper_tolerance` onto the range's edge. Arm joints
  are never clamped (their limits already carry a margin, and an arm pushing past one is a fault), nor is a
  gripper target further out: the gate refuses those.
- a fault: a chunk whose consecutive rows jump by more than any demonstrator moves in one step (a
  diverged sample, a corrupted tensor). `find_row_jump` refuses such a chunk when it arrives, before any
  of it is commanded.

The safety gate stays behind all three as the last check: NaN/inf, joint limits, and the same step and
tracking limits, which shaped targets are inside by construction.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


class CommandShaper:
    """Slew- and tracking-limits targets to `fraction` of the safety gate's limits.

    Args:
        max_step: per-joint largest step per tick (the gate's `limits.max_step`).
        max_tracking: per-joint largest |target - measured| (the gate's `limits.max_tracking_error`; inf for
            grippers, which squeeze objects and never reach their target).
        fraction: share of each limit the shaper may use, in (0, 1]: below 1 leaves the gate a margin.
        accepted: per-joint (lower, upper) the gate accepts (`validation.accepted_command_range`); None: no
            gripper clamp.
        grippers: the gripper columns, the only ones clamped onto `accepted`.
        gripper_tolerance: the largest gripper overshoot past `accepted` (normalised) that is clamped onto the
            edge; a target further out passes unchanged, for the gate to refuse.
    """

    def __init__(self, max_step: np.ndarray, max_tracking: np.ndarray, fraction: float = 0.9,
                 accepted: tuple[np.ndarray, np.ndarray] | None = None, grippers: Sequence[int] = (),
                 gripper_tolerance: float = 0.05) -> None:
        if not 0 < fraction <= 1:
            raise ValueError(f"shaping fraction={fraction}: expected in (0, 1]")
        if not gripper_tolerance >= 0:
            raise ValueError(f"gripper_tolerance={gripper_tolerance}: expected >= 0")
        self.max_step = np.asarray(max_step, dtype=np.float64) * fraction
        self.max_tracking = np.asarray(max_tracking, dtype=np.float64) * fraction
        self.grippers = list(grippers)
        # the grippers' accepted (lower, upper), sliced once: clamp_grippers runs every control tick
        self.gripper_range = (None if accepted is None or not self.grippers else
                              tuple(np.asarray(bound, dtype=np.float64)[self.grippers] for bound in accepted))
        self.gripper_tolerance = float(gripper_tolerance)
        self.shaped_ticks = 0  # ticks whose target was changed, for diagnostics
        self.clamped_ticks = 0  # of those: ticks with a gripper target clamped onto the accepted range

    def clamp_grippers(self, target: np.ndarray) -> np.ndarray:
        """`target` with gripper overshoots of at most `gripper_tolerance` past the accepted range moved onto
        its edge; arm joints and larger overshoots unchanged."""
        if self.gripper_range is None:
            return target
        lower, upper = self.gripper_range
        tol = self.gripper_tolerance
        g = target[self.grippers]
        clamped = np.where((g > upper) & (g <= upper + tol), upper, g)
        clamped = np.where((clamped < lower) & (clamped >= lower - tol), lower, clamped)
        if np.array_equal(clamped, g):
            return target
        self.clamped_ticks += 1
        out = target.copy()
        out[self.grippers] = clamped
        return out

    def shape(self, target: np.ndarray, previous: np.ndarray | None, measured: np.ndarray | None) -> np.ndarray:
        """The target to command this tick. NaN/inf pass through unchanged for the safety gate to refuse."""
        target = np.asarray(target, dtype=np.float64)
        if not np.all(np.isfinite(target)):
            return target
        out = self.clamp_grippers(target)
        if measured is not None:
            now = np.asarray(measured, dtype=np.float64)
            out = np.clip(out, now - self.max_tracking, now + self.max_tracking)
        if previous is not None:
            # the slew limit last: a target may never move faster than the velocity limit, even to catch up
            # with a measured position that is itself far away (then the gate's tracking check decides)
            last = np.asarray(previous, dtype=np.float64)
            out = np.clip(out, last - self.max_step, last + self.max_step)
        if not np.array_equal(out, target):
            self.shaped_ticks += 1
        return out


def find_row_jump(actions: np.ndarray, max_jump: float, names: Sequence[str] | None = None,
                  skip: Sequence[int] = ()) -> str | None:
    """Why the chunk `actions` (T x D) is a fault, or None: consecutive rows that differ by more than
    `max_jump` on some joint (columns in `skip`, e.g. grippers, are not checked). NaN is left to the gate."""
    actions = np.asarray(actions, dtype=np.float64)
    if len(actions) < 2 or not np.isfinite(max_jump):
        return None
    steps = np.abs(np.diff(actions, axis=0))
    steps[:, list(skip)] = 0.0
    steps = np.where(np.isfinite(steps), steps, 0.0)
    row, joint = np.unravel_index(int(np.argmax(steps)), steps.shape)
    if steps[row, joint] <= max_jump:
        return None
    name = names[joint] if names is not None else f"joint {joint}"
    return (f"{name} jumps {steps[row, joint]:.3f} rad between rows {row} and {row + 1} of the chunk "
            f"({actions[row, joint]:.3f} -> {actions[row + 1, joint]:.3f}; max_row_jump_rad {max_jump:g})")
