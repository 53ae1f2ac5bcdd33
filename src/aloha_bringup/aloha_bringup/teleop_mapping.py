"""Teleoperation: the leader arms' joint states -> the 14-D follower command, behind the safety gate (no ROS).

The leaders (``leader_robots`` of the contract, WidowX arms moved by hand) publish the Interbotix layout on the
same per-arm template as the followers (``{arm_robot}/joint_states``, 9 names). Per arm the command takes the
six arm joints as they are, and the gripper from the leader's gripper *joint* normalised with the leader
calibration (0 closed, 1 open); the driver or the simulator then turns that normalised value into the follower
gripper joint with the follower calibration (``aloha_contract.gripper``).

:class:`Teleoperation` decides what to command each control tick, like the policy node does for a policy:
- motion faster than the followers may move (an operator's quick gesture, a tick that came late) is slowed
  down, not refused: each target moves at most ``SHAPING_FRACTION`` of the safety gate's per-step limit from
  the previous one and stays within that share of the tracking bound around the measured follower, so the
  arm follows at up to its velocity limit;
- a fault holds the arm at the last safe target: a leader that is stale, malformed or NaN, a follower state
  that stopped, or a target the gate refuses (a joint beyond its limit);
- after a hold (and at the start) the arm is taken over only once the leaders are back at the followers'
  pose, every arm joint within the gate's tracking bound, so it never sets off by itself towards where the
  leader went meanwhile.
The safety gate stays behind all of it as the last check of every command.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from aloha_contract import Contract, ContractError
from aloha_contract.contract import GripperCalibration
from aloha_contract.gripper import leader_command_from_positions
from aloha_contract.safety import SafetyGate

from .interbotix_bridge import FollowerStateError, positions_by_name

# Hold reasons, stable keys for log throttling and /diagnostics counters
NO_FOLLOWER = "no_follower"          # the followers' 14-D joint state never came or stopped
STALE_LEADER = "stale_leader"        # a leader's joint states never came or stopped
INVALID_LEADER = "invalid_leader"    # a leader message without the Interbotix names, or with NaN/inf
NOT_MATCHED = "not_matched"          # after a hold or at the start: the leaders are not at the followers' pose
SHAPING_FRACTION = 0.9  # share of the gate's step and tracking limits a shaped target may use (the policy node's)


class LeaderStateError(ValueError):
    """A leader joint_states message that cannot be used (names missing, NaN/inf, lengths that disagree)."""


def leader_robot(contract: Contract, arm: str) -> str:
    """The leader arm's robot name (its Interbotix namespace), e.g. ``leader_left``."""
    try:
        return str(contract.raw["leader_robots"][arm])
    except (KeyError, TypeError):
        raise ContractError(f"{contract.source}: leader_robots.{arm} missing: teleoperation needs the leader arm of "
                            f"each of {contract.arms} (e.g. leader_robots: {{left: leader_left, right: leader_right}})"
                            ) from None


def leader_joint_states_topic(contract: Contract, arm: str) -> str:
    """The leader's joint_states: xs_sdk publishes leaders and followers on the same per-arm template."""
    return contract.topic("follower_joint_states", arm_robot=leader_robot(contract, arm))


def leader_joint_names(contract: Contract) -> list[str]:
    """What teleoperation reads of a leader message: the six arm joints, then the gripper joint."""
    return [*contract.arm_joints, str(contract.raw["gripper_joint"])]


def leader_arm_positions(contract: Contract, names: Sequence[str], positions: Sequence[float],
                         what: str = "leader joint_states") -> np.ndarray:
    """One leader message (parallel name/position lists, any order) -> (7,): arm joints, then the gripper joint."""
    try:
        return positions_by_name(names, positions, leader_joint_names(contract), what)
    except FollowerStateError as exc:
        raise LeaderStateError(str(exc)) from None


def command_from_leaders(contract: Contract, arm_positions: Sequence[np.ndarray],
                         calibration: GripperCalibration) -> np.ndarray:
    """Per-arm leader positions (:func:`leader_arm_positions`, arms in contract order) -> 14-D command.

    The normalised gripper is clipped to [0, 1]: a leader gripper squeezed or opened past its calibration points
    means fully closed or open, not a command to refuse. NaN stays NaN, for the gate to refuse.
    """
    command = leader_command_from_positions(contract, arm_positions, calibration)
    grippers = contract.gripper_indices
    command[grippers] = np.clip(command[grippers], 0.0, 1.0)
    return command


@dataclass(frozen=True)
class TeleopStep:
    """What one control tick commands."""

    command: np.ndarray | None  # the 14-D target to publish; None before the first engagement (nothing to hold)
    following: bool             # True: the command follows the leaders; False: the arm holds
    reason: str = ""            # why it holds: NO_FOLLOWER, STALE_LEADER, INVALID_LEADER, NOT_MATCHED, the gate's
    detail: str = ""            # which arm or joint, and the values
    slowed: bool = False        # following, but slower than the leaders move (catching up at the velocity limit)


@dataclass
class _Sample:
    positions: np.ndarray | None  # None: the latest message was unusable
    received_s: float
    error: str = ""


class Teleoperation:
    """The leaders -> follower command decision, one call of :meth:`tick` per control period.

    Args:
        contract: joint order, leader robots, limits and the safety gate's numbers.
        calibration: the gripper calibration profile of the leaders (``real`` hardware, ``sim`` simulator).
        stale_after_s: a leader or follower state older than this holds the arm (the contract's joint_states
            staleness).
        period_s: the control period the commands go out at (default: the contract's).
    """

    def __init__(self, contract: Contract, calibration: GripperCalibration, stale_after_s: float,
                 period_s: float | None = None) -> None:
        if not stale_after_s > 0:
            raise ValueError(f"stale_after_s={stale_after_s}: expected > 0 (the contract's safety.stale_after_s)")
        self.contract = contract
        self.calibration = calibration
        self.stale_after_s = float(stale_after_s)
        self.period_s = contract.control_period_s if period_s is None else float(period_s)
        self.gate = SafetyGate(contract, self.period_s)
        self.leaders: dict[str, _Sample] = {}
        self.measured: np.ndarray | None = None
        self.measured_s = -np.inf
        self.hold_target: np.ndarray | None = None
        self.following = False

    def update_leader(self, arm: str, names: Sequence[str], positions: Sequence[float], received_s: float) -> None:
        """Store one leader message of ``arm``; an unusable one is remembered as such (and holds the arm)."""
        what = leader_joint_states_topic(self.contract, arm)
        try:
            self.leaders[arm] = _Sample(leader_arm_positions(self.contract, names, positions, what), received_s)
        except LeaderStateError as exc:
            self.leaders[arm] = _Sample(None, received_s, str(exc))
            raise

    def update_follower(self, qpos: Sequence[float], received_s: float) -> None:
        """The followers' measured 14-D state (the contract's joint_states)."""
        self.measured = np.asarray(qpos, dtype=np.float64)
        self.measured_s = float(received_s)

    def leader_target(self, now_s: float) -> tuple[np.ndarray | None, str, str]:
        """(the 14-D command the leaders ask for, '', '') or (None, hold reason, detail)."""
        stale, invalid = [], []
        for arm in self.contract.arms:
            sample = self.leaders.get(arm)
            if sample is None or now_s - sample.received_s > self.stale_after_s:
                stale.append(leader_robot(self.contract, arm))
            elif sample.positions is None:
                invalid.append(sample.error)
        if stale:
            return None, STALE_LEADER, (f"no joint states from {stale} for {self.stale_after_s} s (is the leaders' "
                                        f"driver running, on this ROS domain and namespace?)")
        if invalid:
            return None, INVALID_LEADER, "; ".join(invalid)
        positions = [self.leaders[arm].positions for arm in self.contract.arms]
        return command_from_leaders(self.contract, positions, self.calibration), "", ""

    def tick(self, now_s: float) -> TeleopStep:
        """The command of this control tick (`now_s` on a monotonic clock)."""
        if self.measured is None or now_s - self.measured_s > self.stale_after_s:
            return self._hold(NO_FOLLOWER, f"no follower joint state ({self.contract.topic('joint_states')}) for "
                                           f"{self.stale_after_s} s (is the robot driver or the simulator running?)")
        target, reason, detail = self.leader_target(now_s)
        if target is None:
            return self._hold(reason, detail)
        if not self.following:
            mismatch = self._mismatch(target)
            if mismatch:
                return self._hold(NOT_MATCHED, mismatch)
            start = self.measured.copy()
            if self.hold_target is not None:
                # grippers squeezing an object never reach their target: go on from what was commanded
                grippers = self.contract.gripper_indices
                start[grippers] = self.hold_target[grippers]
            self.gate.reset(start)
        shaped = self._shape(target, now_s)
        violation = self.gate.check(shaped, self.measured, now_s)
        if violation is not None:
            return self._hold(violation.reason, violation.detail)
        self.following = True
        self.hold_target = shaped
        return TeleopStep(shaped, True, slowed=not np.array_equal(shaped, target))

    def _mismatch(self, target: np.ndarray) -> str:
        """'' when every arm joint of the leaders is within the tracking bound of the followers, else the worst one."""
        limit = self.gate.limits.max_tracking_error
        distance = np.abs(target - self.measured)
        excess = np.where(np.isfinite(limit), distance - limit, -np.inf)
        worst = int(np.argmax(excess))
        if not excess[worst] > 0:
            return ""
        return (f"the leaders are not at the followers' pose: {self.contract.joint_names[worst]} leader "
                f"{target[worst]:.3f}, follower {self.measured[worst]:.3f} ({distance[worst]:.3f} apart, at most "
                f"{limit[worst]:.3f} to take over): bring the leaders to the followers' pose")

    def _shape(self, target: np.ndarray, now_s: float) -> np.ndarray:
        """The target slowed to the followers' velocity limit and kept near the measured position; NaN passes.

        A late tick may move as far as the leaders moved meanwhile: the gate's step limit covers the time since
        the last target (up to the contract's safety.max_command_gap_periods), as the receiving driver's does.
        """
        if not np.all(np.isfinite(target)):
            return target  # for the gate to refuse
        limits = self.gate.limits
        track = limits.max_tracking_error * SHAPING_FRACTION
        out = np.clip(target, self.measured - track, self.measured + track)
        # the slew limit last: a target never moves faster than the velocity limit, even to catch up
        last = self.gate.last_safe_target
        step = self.gate.step_limit(now_s) * SHAPING_FRACTION
        return np.clip(out, last - step, last + step)

    def _hold(self, reason: str, detail: str) -> TeleopStep:
        self.following = False
        return TeleopStep(None if self.hold_target is None else self.hold_target.copy(), False, reason, detail)
