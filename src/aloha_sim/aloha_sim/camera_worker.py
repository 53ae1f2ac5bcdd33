"""Camera rendering in a thread of its own, so that physics and joint states keep the control rate.

Rendering three cameras costs 10-100x a physics step on a CPU, and MuJoCo releases the GIL while it
renders, so a separate thread lets the 50 Hz loop run on while images are drawn. The physics thread
hands over a copy of the state (double-buffered, copied between steps, never while the renderer
reads it); the worker renders the newest state it has and drops older ones, as a real camera would.
The GL context is created inside the worker thread, because an EGL context belongs to one thread.

If rendering or publishing fails, the worker records the exception in :attr:`CameraWorker.error`, wakes
every waiter and ends: the owner must notice (``failed``) and stop publishing observations without images.
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
                 publish: PublishImages, on_error: Callable[[BaseException], None] | None = None) -> None:
        self.model = model
        self.cameras = list(cameras)
        self.image_size = image_size
        self.publish = publish
        self.on_error = on_error
        self._back = mujoco.MjData(model)    # written by the physics thread
        self._front = mujoco.MjData(model)   # read by the renderer
        self._cv = threading.Condition()
        self._pending_stamp: Any = None
        self._has_pending = False
        self._submitted = 0
        self._published = 0
        self.frames_published = 0  # rendered and published states (for rates in diagnostics)
        self.dropped = 0
        self._stop = False
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="camera_worker", daemon=True)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def start(self, timeout_s: float = 30.0) -> None:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise RuntimeError(f"camera renderer did not start within {timeout_s} s")
        if self.error is not None:
            raise self.error

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
        """Block until the last submitted state has been rendered and published (lockstep mode).

        False on timeout or when the worker failed or was stopped."""
        with self._cv:
            target = self._submitted
            self._cv.wait_for(lambda: self._published >= target or self._stop or self.error is not None,
                              timeout=timeout_s)
            return self._published >= target

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Ask the worker to end and wait for it; True once the thread is gone (no publish after this)."""
        with self._cv:
            self._stop = True
            self._cv.notify_all()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout=timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            renderer = CameraRenderer(self.model, self.cameras, self.image_size)
        except BaseException as exc:  # surfaced by start() in the caller's thread
            self.error = exc
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
                with self._cv:
                    if self._stop:
                        return  # stopping: the publishers may already be gone
                self.publish(images, stamp)
                with self._cv:
                    self._published = number
                    self.frames_published += 1
                    self._cv.notify_all()
        except Exception as exc:  # noqa: BLE001 - reported to the owner, which stops
            with self._cv:
                self.error = exc
                self._cv.notify_all()
            if self.on_error is not None:
                self.on_error(exc)
        finally:
            renderer.close()
