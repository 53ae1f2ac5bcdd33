"""Message-stamp synchronisation at the control rate: one episode row per control tick.

Plain Python (no ROS): the recorder node feeds it stamped messages; it hands back finished rows.

A tick is one joint-state message (the robot's state at the control rate, stamp ``s``). Its row holds:
- per camera, the frame whose stamp falls in the tick's window ``(s - period/2, s + period/2]`` (the
  closest one if several do), or ``None`` when no frame does: a dropped frame, recorded as such;
- the command in force during the tick: the latest command stamped in ``[s - period/4, s + 3 period/4)``
  (lockstep nodes stamp a command with the state it answers, realtime nodes a little later), else the
  previous tick's command, else the measured position (nothing commanded yet: hold).
A row is released once every stream has moved past its window, or once the joint state is ``max_wait_s``
ahead (a camera that stopped must not stall recording).

A joint state stamped more than CLOCK_RESTART_S before the latest one means the clock restarted: a lockstep
simulator's reset sets its time back to 0. Measured: under load, the previous episode's last messages reached
a new recording first, every state of the new episode then looked "older", and 9 of 160 rollouts were
recorded as 1-7 rows. Within the first CLOCK_RESTART_S of released rows, the synchronizer starts over on the
new clock (``restarts`` counts it) and ignores frames and commands still stamped on the old one. Later, the
back-jump is the next episode's reset arriving before this recording stopped: its messages are ignored.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import numpy as np


@dataclass
class TickRow:
    """One control tick of an episode."""

    stamp_s: float
    qpos: np.ndarray
    qvel: np.ndarray | None
    effort: np.ndarray | None
    action: np.ndarray
    images: dict[str, np.ndarray | None]
    commanded: bool  # False when no command was stamped in this tick (the action repeats or holds)


@dataclass
class CameraRate:
    """Frames received from one camera and the rate they amount to."""

    frames: int = 0
    first_s: float | None = None
    last_s: float | None = None

    def add(self, stamp_s: float) -> None:
        self.frames += 1
        self.first_s = stamp_s if self.first_s is None else min(self.first_s, stamp_s)
        self.last_s = stamp_s if self.last_s is None else max(self.last_s, stamp_s)


CLOCK_RESTART_S = 1.0  # a joint state this much older than the latest: the clock restarted (a lockstep reset)


@dataclass
class TickSynchronizer:
    """Buffers stamped messages of one episode and releases :class:`TickRow` s in stamp order.

    Args:
        cameras: camera names every row holds.
        period_s: the control period (the contract's 1 / rate_hz).
        max_wait_s: how far the joint state may run ahead before a row is released with what it has.
    """

    cameras: list[str]
    period_s: float
    max_wait_s: float = 0.1
    _states: deque = field(default_factory=deque)
    _frames: dict[str, deque] = field(default_factory=dict)
    _commands: deque = field(default_factory=deque)
    _last_action: np.ndarray | None = None
    _commanding: bool = False
    _latest_state_s: float = -np.inf
    _released_s: float = -np.inf
    _first_released_s: float | None = None
    rates: dict[str, CameraRate] = field(default_factory=dict)
    late_frames: dict[str, int] = field(default_factory=dict)
    surplus_frames: dict[str, int] = field(default_factory=dict)
    restarts: int = 0  # times the clock went back (see the module docstring)

    def __post_init__(self) -> None:
        if self.period_s <= 0:
            raise ValueError(f"period_s={self.period_s}: expected > 0 (the control period)")
        self._frames = {cam: deque() for cam in self.cameras}
        self.rates = {cam: CameraRate() for cam in self.cameras}
        self.late_frames = {cam: 0 for cam in self.cameras}
        self.surplus_frames = {cam: 0 for cam in self.cameras}

    def _restart(self) -> None:
        """The clock went back: what is buffered belongs to the old clock, and so do the rates."""
        self.restarts += 1
        self._states.clear()
        self._commands.clear()
        for queue in self._frames.values():
            queue.clear()
        self._last_action, self._commanding = None, False
        self._latest_state_s = self._released_s = -np.inf
        self._first_released_s = None
        self.rates = {cam: CameraRate() for cam in self.cameras}

    def _on_old_clock(self, stamp_s: float) -> bool:
        """A frame or command stamped well after the latest state: sent before the clock restarted."""
        return stamp_s > self._latest_state_s + CLOCK_RESTART_S > -np.inf

    def add_state(self, stamp_s: float, qpos, qvel=None, effort=None) -> list[TickRow]:
        if stamp_s < self._latest_state_s - CLOCK_RESTART_S:
            released_s = 0.0 if self._first_released_s is None else self._released_s - self._first_released_s
            if released_s >= CLOCK_RESTART_S:
                return []  # the next episode's clock: this recording's episode is over
            self._restart()
        if stamp_s <= self._latest_state_s:
            return []  # a repeated or out-of-order state is not a new tick
        self._latest_state_s = stamp_s
        self._states.append((stamp_s, np.asarray(qpos, np.float32),
                             None if qvel is None else np.asarray(qvel, np.float32),
                             None if effort is None else np.asarray(effort, np.float32)))
        return self.ready_rows()

    def add_frame(self, camera: str, stamp_s: float, rgb: np.ndarray) -> list[TickRow]:
        if camera not in self._frames:
            return []
        if self._on_old_clock(stamp_s):
            self.late_frames[camera] += 1
            return []
        self.rates[camera].add(stamp_s)
        if stamp_s <= self._released_s + self.period_s / 2:
            self.late_frames[camera] += 1  # its tick is already on disk: counted, not used
            return []
        self._frames[camera].append((stamp_s, rgb))
        return self.ready_rows()

    def add_command(self, stamp_s: float, action) -> list[TickRow]:
        if self._on_old_clock(stamp_s):
            return []
        self._commanding = True
        self._commands.append((stamp_s, np.asarray(action, np.float32)))
        return self.ready_rows()

    def _ready(self, stamp_s: float) -> bool:
        if self._latest_state_s >= stamp_s + self.max_wait_s:
            return True
        half = self.period_s / 2
        frames_past = all(q and q[-1][0] > stamp_s + half for q in self._frames.values())
        command_past = bool(self._commands) and self._commands[-1][0] >= stamp_s + 0.75 * self.period_s
        # once commands flow, wait for this tick's; otherwise the next state closes the tick
        return frames_past and (command_past if self._commanding else self._latest_state_s > stamp_s)

    def ready_rows(self) -> list[TickRow]:
        rows = []
        while self._states and self._ready(self._states[0][0]):
            rows.append(self._release())
        return rows

    def flush(self) -> list[TickRow]:
        """Every buffered tick as a row now (the episode ends)."""
        rows = []
        while self._states:
            rows.append(self._release())
        return rows

    def _release(self) -> TickRow:
        stamp_s, qpos, qvel, effort = self._states.popleft()
        half = self.period_s / 2
        images: dict[str, np.ndarray | None] = {}
        for cam, queue in self._frames.items():
            while queue and queue[0][0] <= stamp_s - half:
                queue.popleft()  # belonged to a tick that is gone (or to none)
                self.surplus_frames[cam] += 1
            in_window = []
            while queue and queue[0][0] <= stamp_s + half:
                in_window.append(queue.popleft())
            if in_window:
                best = min(in_window, key=lambda sf: abs(sf[0] - stamp_s))
                self.surplus_frames[cam] += len(in_window) - 1
                images[cam] = best[1]
            else:
                images[cam] = None
        action, commanded = None, False
        lo, hi = stamp_s - 0.25 * self.period_s, stamp_s + 0.75 * self.period_s
        while self._commands and self._commands[0][0] < hi:
            cmd_s, cmd = self._commands.popleft()
            if cmd_s >= lo:
                action, commanded = cmd, True
            else:
                self._last_action = cmd  # stamped before this tick: it was in force, but not issued now
        if action is None:
            action = self._last_action if self._last_action is not None else qpos
        if self._commanding:
            self._last_action = action
        self._released_s = stamp_s
        if self._first_released_s is None:
            self._first_released_s = stamp_s
        return TickRow(stamp_s, qpos, qvel, effort, action, images, commanded)

    def camera_rates_hz(self, duration_s: float) -> dict[str, float]:
        """Frames per second each camera delivered over an episode of ``duration_s``."""
        if duration_s <= 0:
            return {cam: 0.0 for cam in self.cameras}
        return {cam: self.rates[cam].frames / duration_s for cam in self.cameras}


def low_rate_cameras(rates_hz: dict[str, float], min_rate_hz: float) -> list[str]:
    """Cameras whose rate fell below the contract's threshold."""
    return [cam for cam, rate in rates_hz.items() if rate < min_rate_hz]
