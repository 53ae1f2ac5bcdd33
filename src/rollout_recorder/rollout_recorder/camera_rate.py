"""The live camera rate of a recording: frames per second of each camera over the last second (no ROS).

The episode's own rate (``sync.TickSynchronizer.camera_rates_hz``) is known only at its end; an operator
recording a demonstration needs to know now that a camera slowed down (USB bandwidth, exposure, a loaded
CPU), while the episode can still be re-recorded. Time is the message stamps, so the monitor works on the
wall clock and on a simulator's clock alike: "now" is the newest stamp of any stream, so a camera that stops
shows its rate falling to 0 while the joint states go on.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable


class LiveCameraRates:
    """Per-camera frame rate over a sliding window of stamp time.

    Args:
        cameras: the cameras to monitor.
        window_s: the window the rate is counted over; a rate is :attr:`settled` once this much time has passed.
    """

    def __init__(self, cameras: Iterable[str], window_s: float = 1.0) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s={window_s}: expected > 0")
        self.window_s = float(window_s)
        self._frames: dict[str, deque[float]] = {cam: deque() for cam in cameras}
        self.first_s: float | None = None
        self.now_s: float | None = None

    def add_frame(self, camera: str, stamp_s: float) -> None:
        if camera in self._frames:
            self._frames[camera].append(stamp_s)
        self.add_time(stamp_s)

    def add_time(self, stamp_s: float) -> None:
        """A stamp of any stream (the joint states): time goes on even when no frame comes."""
        self.first_s = stamp_s if self.first_s is None else min(self.first_s, stamp_s)
        self.now_s = stamp_s if self.now_s is None else max(self.now_s, stamp_s)
        for stamps in self._frames.values():
            while stamps and stamps[0] <= self.now_s - self.window_s:
                stamps.popleft()

    @property
    def settled(self) -> bool:
        """A full window has passed: the rates are not estimates from a few frames."""
        return self.first_s is not None and self.now_s - self.first_s >= self.window_s

    def rates_hz(self) -> dict[str, float]:
        """Frames per second per camera over the window (over the time so far while not settled)."""
        if self.now_s is None:
            return {cam: 0.0 for cam in self._frames}
        span_s = min(self.window_s, self.now_s - self.first_s)
        if span_s <= 0:
            return {cam: 0.0 for cam in self._frames}
        # the queues hold only the window's frames (add_time drops older ones)
        return {cam: len(stamps) / span_s for cam, stamps in self._frames.items()}

    def low(self, min_rate_hz: float) -> list[str]:
        """Cameras below ``min_rate_hz`` now; none until the window has filled (a start is not a fault)."""
        if not self.settled:
            return []
        return [cam for cam, rate in self.rates_hz().items() if rate < min_rate_hz]
