"""Timing and scoring for replaying recordings into live topics. Plain Python (no rclpy, no rosbags).

- :func:`with_clock_ticks` / :class:`PlaybackClock`: a bag's messages in bag-time order with ``/clock`` ticks
  between them, and when (wall clock) each is due at a rate factor: what ``rollout_recorder replay`` does.
- :func:`episode_stamps_ns` / :func:`rebase_ns`: the recorded stamps of an episode's rows moved to now (and
  stretched by 1 / rate), so that a policy node sees fresh, consistent stamps: ``episode-to-topics``.
- :class:`ChunkScorer`: the per-chunk action L1 of a policy's chunks against an episode's recorded actions.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np


class PlaybackError(ValueError):
    """A rate, clock period or chunk that cannot be played or scored."""


@dataclass(frozen=True)
class PlaybackEvent:
    """A message to publish (``topic`` and serialised ``data``), or a ``/clock`` tick (``topic`` None)."""

    bag_time_ns: int
    topic: str | None = None
    data: bytes | None = None


def with_clock_ticks(messages: Iterable[tuple[str, int, bytes]], clock_period_ns: int) -> Iterator[PlaybackEvent]:
    """``(topic, bag_time_ns, data)`` in time order -> the same as events, with a clock tick at the first message
    and every ``clock_period_ns`` of bag time after it (also through gaps), each before the messages it precedes."""
    if clock_period_ns <= 0:
        raise PlaybackError(f"clock period {clock_period_ns} ns: expected > 0")
    next_tick: int | None = None
    for topic, t, data in messages:
        if next_tick is None:
            next_tick = t
        while next_tick <= t:
            yield PlaybackEvent(next_tick)
            next_tick += clock_period_ns
        yield PlaybackEvent(t, topic, data)


@dataclass
class PlaybackClock:
    """Bag time -> wall time (``time.monotonic`` seconds) at ``rate`` x the recorded speed.

    Args:
        rate: speed factor (2.0: twice as fast, 0.5: half speed).
        start_bag_ns: bag time of the first event.
        start_wall_s: wall time at which it is due.
    """

    rate: float
    start_bag_ns: int
    start_wall_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.rate) and self.rate > 0):
            raise PlaybackError(f"rate {self.rate}: expected a positive factor (1.0 = recorded speed)")

    def due_s(self, bag_time_ns: int) -> float:
        return self.start_wall_s + (bag_time_ns - self.start_bag_ns) * 1e-9 / self.rate


def episode_stamps_ns(stamp_ns: np.ndarray | None, num_steps: int, period_s: float) -> np.ndarray:
    """The stamp of each row: the episode's ``/observations/stamp_ns`` when it has usable ones (strictly
    increasing), else ``step x period`` (episodes written whole, e.g. scripted sim demos)."""
    if stamp_ns is not None:
        stamps = np.asarray(stamp_ns, dtype=np.int64)
        if stamps.shape == (num_steps,) and num_steps and (num_steps == 1 or np.all(np.diff(stamps) > 0)):
            return stamps
    return np.round(np.arange(num_steps) * period_s * 1e9).astype(np.int64)


def rebase_ns(recorded_ns: int, first_recorded_ns: int, now_ns: int, rate: float) -> int:
    """A recorded stamp moved so that the first row is stamped ``now_ns`` and spacing stretches by 1 / rate."""
    return int(now_ns + round((recorded_ns - first_recorded_ns) / rate))


def chunk_from_multiarray(data: Sequence[float], dims: Sequence[tuple[str, int]], action_dim: int) -> np.ndarray:
    """A std_msgs/Float32MultiArray chunk (layout ``steps`` x ``joints``) -> (steps, joints) array.

    Without a layout the rows are assumed ``action_dim`` wide.
    """
    flat = np.asarray(data, dtype=np.float32)
    if len(dims) >= 2:
        steps, joints = int(dims[0][1]), int(dims[1][1])
    else:
        joints = action_dim
        steps = flat.size // joints if joints else 0
    if steps * joints != flat.size or joints <= 0:
        raise PlaybackError(f"chunk: {flat.size} values do not fill the layout {list(dims)} "
                            f"(expected steps x {action_dim})")
    return flat.reshape(steps, joints)


@dataclass
class ChunkScore:
    """One chunk against the recording.

    ``on_air_step``: the newest episode row published when the chunk arrived (the policy's observation was at
    most that new); ``l1``: mean |chunk - recorded action| over the rows that overlap the episode from that
    step on; ``best_step`` / ``best_l1``: the alignment in ``[on_air_step - lookback, on_air_step]`` with the
    lowest L1 (inference latency makes the true observation step unknown from the topic alone).
    """

    index: int
    on_air_step: int
    rows: int
    l1: float
    best_step: int
    best_l1: float
    per_joint_l1: list[float] = field(default_factory=list)


class ChunkScorer:
    """Scores each policy chunk against the recorded actions of the episode being replayed.

    Args:
        actions: (T, D) recorded actions of the episode.
        lookback_steps: how many rows before the on-air one an alignment may start (covers inference latency).
        joint_names: names of the D columns, for the report.
    """

    def __init__(self, actions: np.ndarray, lookback_steps: int = 25, joint_names: Sequence[str] | None = None):
        self.actions = np.asarray(actions, dtype=np.float64)
        if self.actions.ndim != 2:
            raise PlaybackError(f"recorded actions have shape {self.actions.shape}, expected (T, D)")
        self.lookback_steps = max(0, int(lookback_steps))
        self.joint_names = list(joint_names) if joint_names is not None else None
        self.scores: list[ChunkScore] = []
        self.ignored: list[str] = []

    def _l1(self, chunk: np.ndarray, step: int) -> tuple[float, int, np.ndarray]:
        rows = min(len(chunk), len(self.actions) - step)
        diff = np.abs(chunk[:rows].astype(np.float64) - self.actions[step:step + rows])
        return float(diff.mean()), rows, diff.mean(axis=0)

    def add(self, chunk: np.ndarray, on_air_step: int) -> ChunkScore | None:
        """Score a chunk received while row ``on_air_step`` was the newest published; None if it cannot be."""
        index = len(self.scores) + len(self.ignored)
        chunk = np.asarray(chunk)
        if chunk.ndim != 2 or chunk.shape[1] != self.actions.shape[1]:
            self.ignored.append(f"chunk {index}: shape {chunk.shape}, expected (steps, {self.actions.shape[1]})")
            return None
        if not 0 <= on_air_step < len(self.actions) or len(chunk) == 0:
            self.ignored.append(f"chunk {index}: arrived at step {on_air_step}, outside the episode's "
                                f"0..{len(self.actions) - 1}")
            return None
        l1, rows, per_joint = self._l1(chunk, on_air_step)
        best_step, best_l1 = on_air_step, l1
        for step in range(max(0, on_air_step - self.lookback_steps), on_air_step):
            candidate = self._l1(chunk, step)[0]
            if candidate < best_l1:
                best_step, best_l1 = step, candidate
        score = ChunkScore(index, on_air_step, rows, l1, best_step, best_l1, per_joint.tolist())
        self.scores.append(score)
        return score

    def report(self) -> dict:
        """Plain data for the JSON report: per-chunk scores and their summary."""
        l1 = np.array([s.l1 for s in self.scores])
        best = np.array([s.best_l1 for s in self.scores])
        summary = {"chunks": len(self.scores), "ignored": len(self.ignored)}
        if len(l1):
            per_joint = np.mean([s.per_joint_l1 for s in self.scores], axis=0).tolist()
            summary.update(l1_mean=float(l1.mean()), l1_median=float(np.median(l1)), l1_max=float(l1.max()),
                           best_l1_mean=float(best.mean()),
                           per_joint_l1_mean=(dict(zip(self.joint_names, per_joint, strict=True)) if self.joint_names
                                              and len(self.joint_names) == len(per_joint) else per_joint))
        return {"summary": summary, "lookback_steps": self.lookback_steps,
                "chunks": [asdict(s) for s in self.scores], "ignored": self.ignored}
