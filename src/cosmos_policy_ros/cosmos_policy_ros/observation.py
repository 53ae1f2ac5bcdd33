"""Observation assembly: one frame per camera and the joint state of the same moment. Plain Python.

Images and joint states arrive on separate topics at their own rates, and on a loaded computer one camera's
frames can reach the node a few periods after the others'. An observation is taken at the newest moment
every camera has covered (the oldest of the cameras' newest stamps): per camera the kept frame nearest to
it, plus the joint state nearest to those frames (joint states come at the control rate, so one lies within
a period of any frame). All of them must be within the sync tolerance of each other, and no stream's newest
message older than its staleness threshold. Every refusal says which stream and by how much.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

import numpy as np


class ObservationError(RuntimeError):
    """No usable observation. `reason` is "stale" (a stream stopped), "bad_input" (wrong size or encoding,
    non-finite joints) or "not_ready" (a stream has not arrived yet, or frames are out of sync)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


@dataclass
class Observation:
    """One observation: frames (H, W, 3) uint8 per camera, the 14-D joint state, and its stamp (s)."""

    images: dict[str, np.ndarray]
    qpos: np.ndarray
    stamp_s: float
    image_stamps_s: dict[str, float]


@dataclass
class _Frame:
    rgb: np.ndarray
    stamp_s: float
    received_s: float


class ObservationAssembler:
    """Args:
        cameras: camera names the policy needs.
        expected_hw: (height, width) every frame must have, or None to accept any size.
        encoding: the image encoding expected (frames of another encoding are refused, never converted).
        joint_stale_s / camera_stale_s: the newest message of a stream must be at most this old.
        sync_tolerance_s: largest stamp difference between any frame and the chosen joint state.
        joint_history: joint states kept to pair with frames that lag behind them.
        frame_history: frames kept per camera, so that a camera that lags behind the others still pairs.
            With the newest frames only, one lagging camera kept every observation out of sync: a CI run
            ended a goal on "cam_high: frame stamped 80 ms from the nearest joint state" for 2 s, after a
            burst of bad messages on that camera's topic (the lag itself was not measured).
    """

    def __init__(self, cameras: list[str], *, expected_hw: tuple[int, int] | None, encoding: str = "rgb8",
                 joint_stale_s: float, camera_stale_s: float, sync_tolerance_s: float,
                 joint_history: int = 100, frame_history: int = 10) -> None:
        self.cameras = list(cameras)
        self.expected_hw = tuple(expected_hw) if expected_hw else None
        self.encoding = encoding
        self.joint_stale_s = joint_stale_s
        self.camera_stale_s = camera_stale_s
        self.sync_tolerance_s = sync_tolerance_s
        self._frames: dict[str, deque[_Frame]] = {cam: deque(maxlen=frame_history) for cam in self.cameras}
        self._joint_stamps: deque[float] = deque(maxlen=joint_history)
        self._joint_values: deque[np.ndarray] = deque(maxlen=joint_history)
        self._joint_received_s = float("-inf")
        # per stream, the refused message that its next good message clears: a fault while it lasts
        self._bad: dict[str, str] = {}

    def clear(self) -> None:
        """Forget everything (e.g. after a simulator reset, whose clock may go back)."""
        for frames in self._frames.values():
            frames.clear()
        self._joint_stamps.clear()
        self._joint_values.clear()
        self._joint_received_s = float("-inf")
        self._bad.clear()

    # ---- inputs (called from subscription callbacks) ----
    def add_image(self, camera: str, height: int, width: int, encoding: str, data: bytes | memoryview,
                  stamp_s: float, received_s: float, step: int | None = None) -> None:
        """Store a frame; a frame of the wrong size or encoding is refused and remembered as bad input."""
        if camera not in self.cameras:
            return
        if encoding != self.encoding or (self.expected_hw and (height, width) != self.expected_hw):
            want = f"{self.expected_hw[0]}x{self.expected_hw[1]} " if self.expected_hw else ""
            self.refuse(camera, f"{camera}: got {height}x{width} {encoding}, expected {want}{self.encoding} "
                                f"(check the camera config, or the policy node's camera_hw_check)")
            return
        row = width * 3 if step is None else step
        buf = np.frombuffer(data, dtype=np.uint8)
        if buf.size < row * height or row < width * 3:
            self.refuse(camera, f"{camera}: image data of {buf.size} bytes with step {row} is too small for "
                                f"{height}x{width} {encoding}")
            return
        rgb = buf[: row * height].reshape(height, row)[:, : width * 3].reshape(height, width, 3)
        frames = self._frames[camera]
        if frames and stamp_s < frames[-1].stamp_s:
            frames.clear()  # the clock went back (a sim reset), as for joint states
        frames.append(_Frame(rgb, stamp_s, received_s))
        self._bad.pop(camera, None)

    def add_joint_state(self, qpos: np.ndarray, stamp_s: float, received_s: float) -> None:
        qpos = np.asarray(qpos, dtype=np.float64)
        if not np.all(np.isfinite(qpos)):
            self.refuse("joint_states", "joint_states: non-finite values at indices "
                                        f"{np.flatnonzero(~np.isfinite(qpos)).tolist()}")
            return
        if self._joint_stamps and stamp_s < self._joint_stamps[-1]:
            self._joint_stamps.clear()  # the clock went back (a sim reset): older history is meaningless
            self._joint_values.clear()
        self._joint_stamps.append(stamp_s)
        self._joint_values.append(qpos)
        self._joint_received_s = received_s
        self._bad.pop("joint_states", None)

    def refuse(self, stream: str, detail: str) -> None:
        """Remember a refused message of `stream`: checks report it until that stream's next good message."""
        self._bad.setdefault(stream, detail)

    @property
    def bad_input(self) -> str | None:
        """The refused input that makes the observation unusable now, if any."""
        return next(iter(self._bad.values()), None)

    # ---- queries ----
    def latest_joint_state(self) -> tuple[np.ndarray, float] | None:
        if not self._joint_stamps:
            return None
        return self._joint_values[-1], self._joint_stamps[-1]

    def check_fresh(self, now_s: float, *, use_receipt_time: bool = False, stale_after_s: float | None = None) -> None:
        """Raise ObservationError("stale" | "not_ready" | "bad_input") unless every stream is fresh.

        `now_s` is on the stamps' clock; with `use_receipt_time` it is compared with the local receipt times
        instead (lockstep: the sim's clock stands still while it waits, so only arrival can go stale).
        `stale_after_s` replaces both staleness limits (lockstep: the simulator also waits for inference).
        """
        joint_limit = self.joint_stale_s if stale_after_s is None else stale_after_s
        camera_limit = self.camera_stale_s if stale_after_s is None else stale_after_s
        if self.bad_input is not None:
            raise ObservationError("bad_input", self.bad_input)
        if not self._joint_stamps:
            raise ObservationError("not_ready", "joint_states: nothing received yet")
        joint_t = self._joint_received_s if use_receipt_time else self._joint_stamps[-1]
        if now_s - joint_t > joint_limit:
            raise ObservationError("stale", f"joint_states: no message for {now_s - joint_t:.2f} s "
                                            f"(limit {joint_limit} s)")
        for cam in self.cameras:
            if not self._frames[cam]:
                raise ObservationError("not_ready", f"{cam}: no image received yet")
            frame = self._frames[cam][-1]
            t = frame.received_s if use_receipt_time else frame.stamp_s
            if now_s - t > camera_limit:
                raise ObservationError("stale", f"{cam}: no image for {now_s - t:.2f} s (limit {camera_limit} s)")

    def snapshot(self, now_s: float, *, use_receipt_time: bool = False, latest_joint_state: bool = False,
                 stale_after_s: float | None = None) -> Observation:
        """The current observation, or ObservationError saying why there is none.

        latest_joint_state: pair the frames with the newest joint state instead of the nearest one (lockstep:
        the observation of the step the simulator waits on, whose frames may still be on their way)."""
        self.check_fresh(now_s, use_receipt_time=use_receipt_time, stale_after_s=stale_after_s)
        stamps = list(self._joint_stamps)
        if latest_joint_state:
            nearest = len(stamps) - 1
            chosen = {cam: self._nearest_frame(cam, stamps[nearest]) for cam in self.cameras}
        else:
            covered = min(self._frames[cam][-1].stamp_s for cam in self.cameras)
            chosen = {cam: self._nearest_frame(cam, covered) for cam in self.cameras}
            target = float(np.mean([frame.stamp_s for frame in chosen.values()]))
            i = bisect.bisect_left(stamps, target)
            nearest = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - target))
        image_stamps = {cam: frame.stamp_s for cam, frame in chosen.items()}
        joint_stamp = stamps[nearest]
        worst_cam = max(self.cameras, key=lambda c: abs(image_stamps[c] - joint_stamp))
        skew = abs(image_stamps[worst_cam] - joint_stamp)
        if skew > self.sync_tolerance_s:
            raise ObservationError("not_ready", f"{worst_cam}: frame stamped {skew * 1000:.0f} ms from the nearest "
                                                f"joint state (tolerance {self.sync_tolerance_s * 1000:.0f} ms)")
        images = {cam: frame.rgb for cam, frame in chosen.items()}
        return Observation(images, self._joint_values[nearest].copy(), joint_stamp, image_stamps)

    def _nearest_frame(self, camera: str, stamp_s: float) -> _Frame:
        return min(self._frames[camera], key=lambda frame: abs(frame.stamp_s - stamp_s))
