"""A policy served by a worker process in another Python environment: LeRobot's ACT for the baseline column.

The policy node lives in the main venv (ROS 2 wheels, torch 2.13 CPU); LeRobot 0.4.4 needs torch < 2.11 and its
torchvision, so it lives in ``.venv-lerobot`` (scripts/setup_lerobot.sh). `LeRobotBackend` starts
``lerobot_worker.py`` with that venv's Python and talks to it over stdin/stdout with the framing defined in
`lerobot_worker` (JSON header + raw numpy bytes, no pickle). It has the interface of `policy_backend.PolicyBackend`
(the same as `CosmosBackend` and the fake policies): ``prepare`` packs the observation (CPU, node side),
``infer`` sends it and waits for the chunk, ``warmup`` runs one chunk. ACT predicts no value: chunks carry NaN.

Which Python: ``python`` argument, else ``$LEROBOT_PYTHON``, else the first ``.venv-lerobot/bin/python`` found in
the current folder, above the checkpoint, or above this file (a --symlink-install build resolves to src/).
The worker's stderr goes to the node's (its log lines appear in the node's output); a worker that dies or
answers nothing within ``infer_timeout_s`` turns into an inference error for the goal (and is stopped); the next
request starts a fresh worker (``restarts`` counts them).
"""

from __future__ import annotations

import atexit
import os
import select
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .lerobot_worker import FramingError, decode_message, encode_message
from .policy_backend import ChunkResult, InferenceRequest

WORKER = Path(__file__).resolve().with_name("lerobot_worker.py")
VENV_NAME = ".venv-lerobot"


class ExternalPolicyError(RuntimeError):
    """The worker could not be started, died, timed out, or refused a request (its message is kept)."""


def find_lerobot_python(checkpoint: str | os.PathLike[str] = "", python: str = "") -> str:
    """The LeRobot venv's interpreter (see the module docstring for the search order)."""
    if python:
        return python
    if os.environ.get("LEROBOT_PYTHON"):
        return os.environ["LEROBOT_PYTHON"]
    starts = [Path.cwd()]
    if checkpoint:
        starts.append(Path(checkpoint).resolve())
    starts.append(Path(__file__).resolve().parent)
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / VENV_NAME / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    raise ExternalPolicyError(f"no {VENV_NAME}/bin/python found from {', '.join(map(str, starts))}: run "
                              f"./scripts/setup_lerobot.sh, or set LEROBOT_PYTHON")


def parse_spec(spec: str) -> str | None:
    """``lerobot:<dir>`` -> ``<dir>``; anything else -> None (not a LeRobot checkpoint spec)."""
    return spec[len("lerobot:"):] if spec.startswith("lerobot:") else None


class WorkerProcess:
    """A framed request/response channel to a worker subprocess, with timeouts on every read."""

    def __init__(self, argv: list[str], *, env: dict[str, str] | None = None, startup_timeout_s: float = 300.0,
                 stderr=None) -> None:
        self.argv = argv
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                         env=env, bufsize=0, start_new_session=True)
        except OSError as exc:
            raise ExternalPolicyError(f"cannot start {argv[0]}: {exc}") from None
        self.lock = threading.Lock()
        self._fd = self.proc.stdout.fileno()
        self._deadline = time.monotonic() + startup_timeout_s
        self.hello, _ = self._receive()
        if self.hello.get("op") != "ready":
            code = self._reap(5.0)
            raise ExternalPolicyError(f"worker failed to start: {self.hello.get('message', self.hello)}"
                                      + (f" (exit code {code})" if code is not None else ""))
        atexit.register(self.close)

    def _reap(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def _read_exact(self, n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            remaining = self._deadline - time.monotonic()
            if remaining <= 0:
                raise ExternalPolicyError(f"worker answered nothing in time ({self.argv[1] if len(self.argv) > 1 else ''}"
                                          f"); it is stopped")
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(self._fd, n - got)
            if not data:
                code = self._reap(2.0)
                raise ExternalPolicyError(f"worker exited (code {code}); see its messages above in the log")
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)

    def _receive(self) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            return decode_message(self._read_exact)
        except ExternalPolicyError:
            self.kill()
            raise
        except FramingError as exc:
            self.kill()
            raise ExternalPolicyError(f"worker protocol error: {exc}") from None

    def request(self, header: dict, arrays: dict[str, np.ndarray] | None = None, *,
                timeout_s: float = 120.0) -> tuple[dict, dict[str, np.ndarray]]:
        payload = encode_message(header, arrays)
        with self.lock:
            if self.proc.poll() is not None:
                raise ExternalPolicyError(f"worker is not running (exit code {self.proc.returncode})")
            try:
                self.proc.stdin.write(payload)
                self.proc.stdin.flush()
            except (BrokenPipeError, OSError) as exc:
                code = self._reap(2.0)
                raise ExternalPolicyError(f"worker pipe closed ({exc}; exit code {code})") from None
            self._deadline = time.monotonic() + timeout_s
            reply, arrays_out = self._receive()
        if reply.get("op") == "error":
            raise ExternalPolicyError(f"worker: {reply.get('message')}")
        return reply, arrays_out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self._reap(5.0)

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write(encode_message({"op": "shutdown"}))
                self.proc.stdin.flush()
                self.proc.stdin.close()
            except (BrokenPipeError, OSError, ValueError):
                pass
            if self._reap(timeout_s) is None:
                self.kill()
        for stream in (self.proc.stdin, self.proc.stdout):
            try:
                stream.close()
            except (OSError, ValueError):
                pass


def worker_env(python: str) -> dict[str, str]:
    """The node's environment minus what belongs to the main venv and ROS (their site-packages would shadow
    the LeRobot venv's numpy and torch), with no hub access."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "AMENT_PREFIX_PATH", "CMAKE_PREFIX_PATH",
                        "COLCON_PREFIX_PATH", "LD_PRELOAD")}
    venv = Path(python).parent.parent
    env["VIRTUAL_ENV"] = str(venv)
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONNOUSERSITE"] = "1"
    env["PYTHONUNBUFFERED"] = "1"
    return env


class LeRobotBackend:
    """A LeRobot policy checkpoint (ACT) behind the node's interface, run in `.venv-lerobot` by a worker.

    Args:
        checkpoint: LeRobot ``pretrained_model`` folder, training output, or folder of per-task training outputs
            (see `lerobot_worker`).
        python: the LeRobot venv's interpreter ("" = search, see the module docstring).
        device: torch device in the worker ("cpu", "cuda").
        camera_hw_check: "strict" insists on the training resolution; "resize" lets the worker resize frames.
        startup_timeout_s: loading the model(s) may take this long.
        infer_timeout_s: one chunk may take this long before the worker is declared hung (and stopped).
        threads: torch threads in the worker (0: torch's default).
    """

    def __init__(self, checkpoint: str, *, python: str = "", device: str = "cpu", camera_hw_check: str = "strict",
                 startup_timeout_s: float = 300.0, infer_timeout_s: float = 120.0, threads: int = 0,
                 stderr=None) -> None:
        if camera_hw_check not in ("strict", "resize"):
            raise ValueError(f"camera_hw_check={camera_hw_check!r}: expected 'strict' or 'resize'")
        if not Path(checkpoint).is_dir():
            raise ValueError(f"LeRobot checkpoint {checkpoint}: folder not found")
        try:  # start-up failures are ValueErrors: the node turns them into one line and exit status 1
            self.python = find_lerobot_python(checkpoint, python)
            argv = [self.python, str(WORKER), "--checkpoint", str(Path(checkpoint).resolve()), "--device", device]
            if camera_hw_check == "resize":
                argv.append("--resize")
            if threads > 0:
                argv += ["--threads", str(threads)]
            self._argv, self._stderr, self.startup_timeout_s = argv, stderr, startup_timeout_s
            self.worker = WorkerProcess(argv, env=worker_env(self.python), startup_timeout_s=startup_timeout_s,
                                        stderr=stderr)
        except ExternalPolicyError as exc:
            raise ValueError(f"LeRobot checkpoint {checkpoint}: {exc}") from None
        self.restarts = 0
        hello = self.worker.hello
        self.infer_timeout_s = infer_timeout_s
        self.cameras: list[str] = list(hello["cameras"])
        self.camera_hw = None if camera_hw_check == "resize" else tuple(int(v) for v in hello["camera_hw"])
        self.chunk_length = int(hello["chunk_length"])
        self.execute_steps = int(hello["execute_steps"])
        self.control_hz = float(hello.get("control_hz") or 50.0)
        self.action_steps = 1  # no denoising steps in ACT
        self.max_joint_jump_rad = None
        self.has_planning = False
        self.state_dim = int(hello.get("state_dim", 14))
        self.models = list(hello.get("models", []))
        self.description = hello.get("description", f"LeRobot {checkpoint}")
        self._next_id = 0

    def known_tasks(self) -> list[str]:
        return [t for m in self.models for t in m.get("tasks", [])]

    def prepare(self, request: InferenceRequest) -> Any:
        if request.planning:
            raise ValueError("planning mode needs a planning checkpoint; a LeRobot policy has none")
        obs = request.observation
        arrays: dict[str, np.ndarray] = {"qpos": np.asarray(obs.qpos, dtype=np.float64)}
        for cam in self.cameras:
            if cam not in obs.images:
                raise ValueError(f"observation lacks camera {cam!r} (has {sorted(obs.images)})")
            arrays[f"image.{cam}"] = np.ascontiguousarray(obs.images[cam], dtype=np.uint8)
        return arrays

    def infer(self, request: InferenceRequest, prepared: Any) -> ChunkResult:
        start = time.perf_counter()
        if self.worker.proc.poll() is not None:
            # the chunk that found it dead or hung already failed its goal; a later request gets a fresh worker
            self.worker.close()
            self.restarts += 1
            self.worker = WorkerProcess(self._argv, env=worker_env(self.python),
                                        startup_timeout_s=self.startup_timeout_s, stderr=self._stderr)
        self._next_id += 1
        header = {"op": "infer", "id": self._next_id, "task": request.task, "seed": request.seed}
        reply, arrays = self.worker.request(header, prepared, timeout_s=self.infer_timeout_s)
        if reply.get("op") != "chunk" or reply.get("id") != self._next_id or "actions" not in arrays:
            raise ExternalPolicyError(f"worker answered {reply} to request {self._next_id}")
        actions = np.asarray(arrays["actions"], dtype=np.float32)
        if actions.ndim != 2 or actions.shape[1] != self.state_dim:
            raise ExternalPolicyError(f"worker chunk has shape {actions.shape}, expected (K, {self.state_dim})")
        return ChunkResult(actions, float("nan"), time.perf_counter() - start)

    def warmup(self, task: str | None) -> float:
        """One chunk from a black observation at the training size; returns its latency (s)."""
        from .observation import Observation

        h, w = self.camera_hw or tuple(self.worker.hello["camera_hw"])
        obs = Observation(images={cam: np.zeros((h, w, 3), np.uint8) for cam in self.cameras},
                          qpos=np.zeros(self.state_dim), stamp_s=0.0, image_stamps_s={})
        tasks = [task] if task else [None]
        if not task:  # warm every model once (each serves its own tasks)
            tasks = [m["tasks"][0] if m.get("tasks") else None for m in self.models] or [None]
        latency = 0.0
        for t in tasks:
            request = InferenceRequest(observation=obs, task=t or "", seed=0)
            latency = self.infer(request, self.prepare(request)).latency_s
        return latency

    def close(self) -> None:
        self.worker.close()
