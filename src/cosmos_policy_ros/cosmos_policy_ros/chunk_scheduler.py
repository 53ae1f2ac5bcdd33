"""Which action to command at control tick k, and when to ask for the next chunk. Plain Python, no ROS.

Ticks count control periods since the run started (wall clock in realtime, executed steps in lockstep).
A chunk computed from the observation of tick `obs_tick` holds the target for tick `obs_tick + i` at row i,
so a chunk that arrives late while the arm was moving is used from the row of the current tick: the steps
that elapsed during inference are skipped and the chunk stays aligned to time. A chunk observed while the
arm was holding (the first one, or one asked for after the previous ran out) starts from row 0 when it
arrives: the arm is still where it was observed, as with the release's blocking client. A chunk that
arrives wholly in the past of a moving arm is dropped and asked for again.

Prefetch: the next chunk is requested `lead_ticks` before the current one's switch tick
(`obs_tick + execute_steps`), from the observation of that moment, so that it is ready when the switch
comes; the lead follows the measured delay from request to arrival (inference plus queueing, in ticks). A
chunk that arrives after its switch tick finds the current chunk still running (rows past `execute_steps`
are valid targets too); the arm waits ("stall tick") only when no chunk has a row for the current tick.
A delay of `execute_steps` or more cannot be hidden by prefetch (the chunk would arrive after its own
rows): the lead ignores such delays, and when all recent ones are that slow it is 0 and the node runs as
the blocking client, holding while each chunk is computed.

Optional smoothing at the seam: `blend_steps` cross-fades from the old chunk to the new one; or ACT-style
temporal ensembling, where every chunk that covers a tick votes with weight exp(-coeff * age rank).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class Chunk:
    """An action chunk (K, d) in robot units, aligned to the tick of the observation it was computed from."""

    actions: np.ndarray
    obs_tick: int
    index: int = 0
    value: float = float("nan")
    latency_s: float = 0.0
    value_spread: float = 0.0
    planning_fallback: bool = False
    proposal_latency_s: float | None = None  # planning: what the base policy's proposals alone took

    def covers(self, tick: int) -> bool:
        return self.obs_tick <= tick < self.obs_tick + len(self.actions)

    def row(self, tick: int) -> np.ndarray:
        return self.actions[tick - self.obs_tick]


class ChunkScheduler:
    """Args:
        execute_steps: rows of each chunk executed before the next chunk takes over.
        period_s: control period, to turn inference latency into ticks.
        prefetch: request the next chunk early enough to be ready at the switch (False: at the switch, as
            the release's blocking client does; the arm then waits for every chunk).
        lead_margin_ticks: extra ticks of lead on top of the latency estimate (observation transport, jitter).
        blend_steps: ticks over which the old chunk fades into the new one after a switch (0: hard switch).
        temporal_ensemble_coeff: if set, ACT temporal ensembling over all chunks covering a tick (replaces
            blending); weights exp(-coeff * i), i = 0 for the oldest chunk.
        initial_latency_s: request-to-arrival delay assumed until one is measured (e.g. the warm-up latency).
        latency_window: number of recent request-to-arrival delays the lead estimate looks at (their maximum).
    """

    def __init__(self, execute_steps: int, period_s: float, *, prefetch: bool = True, lead_margin_ticks: int = 1,
                 blend_steps: int = 0, temporal_ensemble_coeff: float | None = None,
                 initial_latency_s: float = 0.0, latency_window: int = 5) -> None:
        if execute_steps < 1:
            raise ValueError(f"execute_steps={execute_steps}: expected >= 1")
        if not period_s > 0:
            raise ValueError(f"period_s={period_s}: expected > 0")
        if blend_steps < 0 or lead_margin_ticks < 0:
            raise ValueError(f"blend_steps={blend_steps}, lead_margin_ticks={lead_margin_ticks}: expected >= 0")
        self.execute_steps = int(execute_steps)
        self.period_s = float(period_s)
        self.prefetch = prefetch
        self.lead_margin_ticks = int(lead_margin_ticks)
        self.blend_steps = int(blend_steps)
        self.ensemble_coeff = temporal_ensemble_coeff
        self._delays_ticks: deque[int] = deque([math.ceil(float(initial_latency_s) / self.period_s)],
                                               maxlen=max(1, latency_window))
        self._requested_tick: int | None = None
        self.current: Chunk | None = None
        self.previous: Chunk | None = None  # the chunk the current one took over from (for blending)
        self.switch_tick: int | None = None  # tick at which the current chunk took over
        self.pending: Chunk | None = None  # arrived, waiting for the current chunk's switch tick
        self.active: list[Chunk] = []  # chunks that may still cover a tick (temporal ensembling)
        self.request_in_flight = False
        self.stall_ticks = 0
        self.chunks_started = 0
        self.chunks_dropped = 0  # arrived wholly in the past of a moving arm

    # ---- requests ----
    @property
    def lead_ticks(self) -> int:
        """Ticks before the switch at which the next chunk is requested."""
        if not self.prefetch:
            return 0
        # the largest recent delay that prefetch can hide; a delay of a chunk or more cannot be (the request
        # would see its own rows expire), so when all are that slow, ask at the switch instead
        hideable = [d + self.lead_margin_ticks for d in self._delays_ticks
                    if d + self.lead_margin_ticks < self.execute_steps]
        return max(hideable, default=0)

    def next_switch_tick(self) -> int | None:
        return None if self.current is None else self.current.obs_tick + self.execute_steps

    def should_request(self, tick: int) -> bool:
        """True when an observation taken now should be sent for the next chunk."""
        if self.request_in_flight or self.pending is not None:
            return False
        if self.current is None:
            return True
        return tick >= self.next_switch_tick() - self.lead_ticks

    def mark_requested(self, tick: int) -> None:
        self.request_in_flight = True
        self._requested_tick = tick

    def on_chunk(self, chunk: Chunk, tick: int) -> None:
        """A requested chunk arrived at `tick` (its delay since the request feeds the lead estimate).

        A planning chunk that fell back (its scoring did not fit before the current chunk ran out) counts with
        what its proposals took, not with its deadline-bound delay: once the window holds only fallbacks, the
        lead shrinks to a direct chunk's and the fallback chunks are fresh; a planned delay still in the
        window keeps the planning lead, so a passing slowdown does not end planning."""
        self.request_in_flight = False
        if chunk.planning_fallback and chunk.proposal_latency_s is not None:
            self._delays_ticks.append(math.ceil(chunk.proposal_latency_s / self.period_s))
        elif self._requested_tick is not None:
            self._delays_ticks.append(max(0, tick - self._requested_tick))
        self.pending = chunk

    def on_request_failed(self) -> None:
        self.request_in_flight = False

    # ---- commands ----
    def action_for(self, tick: int) -> np.ndarray | None:
        """The target to command at `tick`, or None when no chunk covers it (the caller holds; a stall)."""
        self._maybe_switch(tick)
        if self.ensemble_coeff is not None:
            target = self._ensembled(tick)
        else:
            target = self._blended(tick)
        if target is None and self.current is not None:
            self.stall_ticks += 1
        return target

    def _maybe_switch(self, tick: int) -> None:
        new = self.pending
        if new is None:
            return
        current = self.current
        due = current is None or tick >= current.obs_tick + self.execute_steps or not current.covers(tick)
        if not due:
            return
        self.pending = None
        if current is None or current.obs_tick + len(current.actions) <= new.obs_tick:
            new.obs_tick = max(new.obs_tick, tick)  # the arm held still since it was observed: start at row 0
        elif not new.covers(tick) and tick >= new.obs_tick:
            self.chunks_dropped += 1  # every row is in the past of a moving arm: useless, ask again
            return
        self.previous, self.current, self.switch_tick = current, new, tick
        self.chunks_started += 1
        self.active = [c for c in self.active + [new] if c.obs_tick + len(c.actions) > tick]

    def _blended(self, tick: int) -> np.ndarray | None:
        current = self.current
        if current is None or not current.covers(tick):
            return None
        target = current.row(tick).astype(np.float64)
        previous = self.previous
        since = tick - (self.switch_tick or 0)
        if self.blend_steps and previous is not None and since < self.blend_steps and previous.covers(tick):
            w = (since + 1) / (self.blend_steps + 1)  # weight of the new chunk rises to 1 over the blend
            target = (1 - w) * previous.row(tick) + w * target
        return target

    def _ensembled(self, tick: int) -> np.ndarray | None:
        covering = [c for c in self.active if c.covers(tick)]
        if not covering:
            return None
        weights = np.exp(-float(self.ensemble_coeff) * np.arange(len(covering)))  # oldest first, as ACT
        rows = np.stack([c.row(tick) for c in covering]).astype(np.float64)
        return (weights[:, None] * rows).sum(0) / weights.sum()


class SeamRamp:
    """Velocity-limited entry into a new chunk: at the first command of a run and at each chunk switch, the
    gap between the last commanded target and the new chunk's row is spread over as many ticks as the
    joint velocity limits need, then the chunk runs unchanged.

    A learned policy's first row is never exactly the robot's pose, and two chunks from different
    observations disagree a little where they meet; the servos must not jump that gap in one period. Only
    seams are ramped: inside a chunk the safety gate still refuses any step beyond the limit, and a seam
    wider than `max_seam` is refused outright (the caller aborts): a gap that large is a fault, not noise.

    Args:
        max_step: per-joint largest step per tick (the safety gate's `limits.max_step`).
        max_seam: per-joint largest gap a ramp may absorb.
        budget: fraction of `max_step` the ramp may use per tick (the rest is left for the chunk's own motion).
        names: joint names for the refusal message.
    """

    def __init__(self, max_step: np.ndarray, max_seam: np.ndarray, budget: float = 0.5,
                 names: list[str] | None = None) -> None:
        if not 0 < budget < 1:
            raise ValueError(f"budget={budget}: expected in (0, 1)")
        self.max_step = np.asarray(max_step, dtype=np.float64)
        self.max_seam = np.asarray(max_seam, dtype=np.float64)
        self.budget = budget
        self.names = names
        self._offset: np.ndarray | None = None
        self._ticks = 0
        self._done = 0

    def start(self, previous: np.ndarray | None, first_row: np.ndarray) -> str | None:
        """A new chunk (or run) begins with `first_row` after `previous` was commanded: plan the ramp.
        Returns why the seam is refused, or None."""
        self._offset, self._ticks, self._done = None, 0, 0
        if previous is None:
            return None
        gap = np.asarray(previous, dtype=np.float64) - np.asarray(first_row, dtype=np.float64)
        if not np.all(np.isfinite(gap)):
            return None  # NaN/inf is the safety gate's to refuse, with its own message
        excess = np.abs(gap) - self.max_seam
        worst = int(np.argmax(excess))
        if excess[worst] > 0:
            name = self.names[worst] if self.names else f"joint {worst}"
            return (f"{name}: the chunk starts {abs(gap[worst]):.3f} from the last target {previous[worst]:.3f} "
                    f"(a seam of at most {self.max_seam[worst]:.3f} is ramped)")
        ticks = int(np.ceil(np.max(np.abs(gap) / (self.budget * self.max_step))))
        if ticks > 1:
            self._offset, self._ticks = gap, ticks
        return None

    def apply(self, target: np.ndarray) -> np.ndarray:
        """The target to command this tick: the chunk's row plus what is left of the seam's gap."""
        if self._offset is None:
            return target
        self._done += 1
        remaining = 1.0 - self._done / self._ticks
        out = target + self._offset * max(0.0, remaining)
        if remaining <= 0:
            self._offset = None
        return out


def smooth_rows(actions: np.ndarray, window: int) -> np.ndarray:
    """Centred moving average of a chunk's rows over `window` steps (shrinking at the ends); 0 or 1 = as is.

    A small diffusion policy's rows carry independent noise from step to step (measured on the shipped CPU
    checkpoint: up to 0.2 rad between consecutive rows) that no servo can follow; the demonstrations are
    smooth, so averaging removes noise, not intent."""
    if window <= 1:
        return actions
    half = window // 2
    padded = np.concatenate([np.zeros((1, actions.shape[1])), np.cumsum(actions, axis=0)])
    idx = np.arange(len(actions))
    lo, hi = np.maximum(idx - half, 0), np.minimum(idx + half + 1, len(actions))
    return (padded[hi] - padded[lo]) / (hi - lo)[:, None]
