"""Camera rendering in a thread of its own, so that physics and joint states keep the control rate.

Rendering three cameras costs 10-100x a physics step on a CPU, and MuJoCo releases the GIL while it
renders, so a separate thread lets the 50 Hz loop run on while images are drawn. The physics thread
hands over a copy of the state (double-buffered, copied between steps, never while the renderer
reads it); the worker renders the newest state it has and drops older ones, as a real camera would.
The GL context is created inside the worker thread, because an EGL context belongs to one thread.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import mujoco
import numpy as np

from .scene import CameraRenderer

PublishImages = Callable[[dict[str, np.ndarray], Any], None]


class CameraWorker:
    def __init__(self, model: mujoco.MjModel, cameras: list[str], image_size: tuple[int, int],
                 publish: PublishImages) -> None:
        self.model = model
        self.cameras = list(cameras)
        self.image_size = image_size
        self.publish = publish
        self._back = mujoco.MjData(model)    # written by the physics thread
        self._front = mujoco.MjData(model)   # read by the renderer
        self._cv = threading.Condition()
        self._pending_stamp: Any = None
        self._has_pending = False
        self._submitted = 0
        self._published = 0
        self.dropped = 0
        self._stop = False
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera_worker", daemon=True)

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"camera renderer did not start within {timeout_s} s")
        if self._error is not None:
            raise self._error

    def submit(self, data: mujoco.MjData, stamp: Any) -> None:
        """Hand over the current state (call from the physics thread, between steps)."""
        with self._cv:
            if self._has_pending:
                self.dropped += 1  # the renderer is behind: the newer state replaces the unrendered one
            mujoco.mj_copyData(self._back, self.model, data)
            self._pending_stamp = stamp
            self._has_pending = True
            self._submitted += 1
            self._cv.notify_all()

    def wait_published(self, timeout_s: float = 10.0) -> bool:
        """Block until the last submitted state has been rendered and published (lockstep mode)."""
        with self._cv:
            target = self._submitted
            return self._cv.wait_for(lambda: self._published >= target or self._stop, timeout=timeout_s)

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        try:
            renderer = CameraRenderer(self.model, self.cameras, self.image_size)
        except BaseException as exc:  # surfaced by start() in the caller's thread
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            while True:
                with self._cv:
                    self._cv.wait_for(lambda: self._has_pending or self._stop)
                    if self._stop:
                        return
                    self._front, self._back = self._back, self._front
                    stamp, self._has_pending = self._pending_stamp, False
                    number = self._submitted
                images = renderer.render(self._front)
                self.publish(images, stamp)
                with self._cv:
                    self._published = number
                    self._cv.notify_all()
        finally:
            renderer.close()
