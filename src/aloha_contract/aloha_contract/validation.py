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
    g_lo, g_hi = contract.gripper_command_range
    per_arm = len(contract.arm_joints) + 1
    for i, value in enumerate(cmd):
        if i in grippers:
            if not g_lo <= value <= g_hi:
                raise InvalidCommand(f"{names[i]}={value:.3f} outside the normalised gripper range "
                                     f"[{g_lo}, {g_hi}] (0 closed, 1 open)")
            continue
        lo, hi = contract.joint_limits_rad[i % per_arm]
        if not lo - margin <= value <= hi + margin:
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
