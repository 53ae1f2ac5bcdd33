"""Checks on 14-D joint commands, shared by every driver (real robot and simulators).

The safe answer to a bad command is to refuse it and keep holding the last valid target, so the
check raises with a message that says which joint is wrong and why; callers log it and hold.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .contract import Contract


class InvalidCommand(ValueError):
    """A joint command that must not reach the motors."""


def accepted_command_range(contract: Contract) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint (lower, upper) of a command :func:`check_joint_command` accepts: joint limits + margin (rad),
    the normalised gripper range for grippers. In the contract's joint order."""
    margin = contract.joint_margin_rad
    per_arm = len(contract.arm_joints) + 1
    grippers = set(contract.gripper_indices)
    lower, upper = [], []
    for i in range(len(contract.joint_names)):
        if i in grippers:
            lo, hi = contract.gripper_command_range
        else:
            lo, hi = contract.joint_limits_rad[i % per_arm]
            lo, hi = lo - margin, hi + margin
        lower.append(lo)
        upper.append(hi)
    return np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)


def check_joint_command(command: Sequence[float] | np.ndarray, contract: Contract,
                        current: Sequence[float] | np.ndarray | None = None) -> np.ndarray:
    """Return the command as a float64 array, or raise :class:`InvalidCommand` naming the problem.

    Refuses: a wrong length, non-finite values, joints beyond limit + margin, grippers outside the
    accepted normalised range, and (when ``current`` is given) a jump larger than the per-step limit
    in either direction.
    """
    try:
        cmd = np.asarray(command, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidCommand(f"joint command is not numeric: {exc}") from None
    names = contract.joint_names
    if cmd.shape != (len(names),):
        raise InvalidCommand(f"joint command has shape {cmd.shape}, expected ({len(names)},) in the order {names}")
    bad = [names[i] for i in np.flatnonzero(~np.isfinite(cmd))]
    if bad:
        raise InvalidCommand(f"joint command has NaN/inf for {bad}")
    margin = contract.joint_margin_rad
    grippers = set(contract.gripper_indices)
    per_arm = len(contract.arm_joints) + 1
    lower, upper = accepted_command_range(contract)
    for i, value in enumerate(cmd):
        if lower[i] <= value <= upper[i]:
            continue
        if i in grippers:
            raise InvalidCommand(f"{names[i]}={value:.3f} outside the normalised gripper range "
                                 f"[{lower[i]:g}, {upper[i]:g}] (0 closed, 1 open)")
        lo, hi = contract.joint_limits_rad[i % per_arm]
        raise InvalidCommand(f"{names[i]}={value:.3f} rad outside joint limits [{lo:.3f}, {hi:.3f}] "
                             f"+ margin {margin} rad")
    if current is not None:
        cur = np.asarray(current, dtype=np.float64)
        step = np.abs(cmd - cur)  # absolute: a jump is dangerous in either direction
        step[list(grippers)] = 0.0
        worst = int(np.argmax(step))
        if step[worst] > contract.max_joint_step_rad:
            raise InvalidCommand(f"{names[worst]} would jump {step[worst]:.3f} rad in one step "
                                 f"(limit {contract.max_joint_step_rad} rad): refusing, holding position")
    return cmd
