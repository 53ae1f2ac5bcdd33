"""A LeRobot policy (ACT) served over stdin/stdout, for the policy node's `external_backend`.

The policy node lives in the main venv (ROS, torch 2.13 CPU); LeRobot 0.4.4 needs its own torch and lives in
``.venv-lerobot``. The node starts this file with that venv's Python::

    .venv-lerobot/bin/python src/cosmos_policy_ros/cosmos_policy_ros/lerobot_worker.py --checkpoint DIR

Imports: numpy at module level (so that the node side can import the framing below), torch and lerobot only
inside the worker; never rclpy or anything of this product.

Framing (both directions; no pickle): one message =
    4 bytes magic b"LRW1" | 4 bytes big-endian length N | N bytes UTF-8 JSON header | raw array bytes
The header's "arrays" lists {"name", "dtype", "shape"} in order; the raw bytes of those arrays (C order,
little-endian, dtypes from ALLOWED_DTYPES only) follow the header back to back.

Messages:
- worker -> node on start: ``{"op": "ready", "cameras", "camera_hw", "chunk_length", "execute_steps",
  "control_hz", "state_dim", "models": [{"path", "tasks", "task_names"}], "description"}``;
- ``{"op": "infer", "id", "task", "seed"}`` + arrays ``qpos`` (D,) and ``image.<cam>`` (H, W, 3) uint8
  -> ``{"op": "chunk", "id", "latency_s", "model"}`` + array ``actions`` (K, D) float32 (robot units);
- ``{"op": "ping"}`` -> ``{"op": "pong"}``; ``{"op": "shutdown"}`` (or end of stdin) -> exit 0;
- any failure of a request -> ``{"op": "error", "id", "message"}``; the worker keeps serving.

A checkpoint (``--checkpoint``) is a LeRobot ``pretrained_model`` folder (config.json, model.safetensors,
processor files), a training output folder (its ``checkpoints/last/pretrained_model`` is taken), or a folder
of such training outputs, one per task (``runs/act/transfer_cube``, ``runs/act/insertion``): ACT has no text
input, so each model serves the tasks it was trained on (``aloha_tasks.json`` beside its weights, written by
scripts/train_act.sh); a request for another task is an error. With one model that has no task list, every
task goes to it.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"LRW1"
MAX_HEADER_BYTES = 1 << 20
MAX_ARRAY_BYTES = 1 << 30
ALLOWED_DTYPES = ("uint8", "float32", "float64", "int64", "int32", "bool")
TASKS_FILE = "aloha_tasks.json"


class FramingError(RuntimeError):
    """A malformed message, or the peer closed the pipe."""


# ---------------------------------------------------------------- framing (node and worker)
def encode_message(header: dict, arrays: dict[str, np.ndarray] | None = None) -> bytes:
    """One message: magic, header length, JSON header (with the array table) and the raw array bytes."""
    arrays = arrays or {}
    table, blobs = [], []
    for name, value in arrays.items():
        arr = np.asarray(value)
        dtype = arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype
        if dtype.name not in ALLOWED_DTYPES:
            raise FramingError(f"array {name!r}: dtype {arr.dtype} not in {ALLOWED_DTYPES}")
        arr = np.ascontiguousarray(arr, dtype=dtype.newbyteorder("<"))
        table.append({"name": name, "dtype": dtype.name, "shape": list(arr.shape)})
        blobs.append(arr.tobytes())
    head = json.dumps({**header, "arrays": table}).encode()
    if len(head) > MAX_HEADER_BYTES:
        raise FramingError(f"header of {len(head)} bytes exceeds {MAX_HEADER_BYTES}")
    return b"".join([MAGIC, struct.pack(">I", len(head)), head, *blobs])


def decode_message(read_exact) -> tuple[dict, dict[str, np.ndarray]]:
    """Read one message with ``read_exact(n) -> bytes`` (exactly n bytes, or raise FramingError)."""
    prefix = read_exact(8)
    if prefix[:4] != MAGIC:
        raise FramingError(f"bad magic {prefix[:4]!r} (expected {MAGIC!r}): the stream is out of step, or "
                           f"something else wrote to the worker's stdout")
    (length,) = struct.unpack(">I", prefix[4:])
    if length > MAX_HEADER_BYTES:
        raise FramingError(f"header length {length} exceeds {MAX_HEADER_BYTES}")
    try:
        header = json.loads(read_exact(length).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FramingError(f"header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FramingError("header is not a JSON object")
    arrays: dict[str, np.ndarray] = {}
    for spec in header.pop("arrays", []):
        dtype_name = spec.get("dtype")
        if dtype_name not in ALLOWED_DTYPES:
            raise FramingError(f"array {spec.get('name')!r}: dtype {dtype_name!r} not allowed")
        dtype = np.dtype(dtype_name).newbyteorder("<")
        shape = tuple(int(s) for s in spec.get("shape", ()))
        if any(s < 0 for s in shape):
            raise FramingError(f"array {spec.get('name')!r}: negative shape {shape}")
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > MAX_ARRAY_BYTES:
            raise FramingError(f"array {spec.get('name')!r}: {nbytes} bytes exceeds {MAX_ARRAY_BYTES}")
        # bytearray: a writable array (torch.from_numpy warns on read-only buffers)
        arrays[str(spec["name"])] = np.frombuffer(bytearray(read_exact(nbytes)), dtype=dtype).reshape(shape).astype(
            dtype.newbyteorder("="), copy=False)
    return header, arrays


def stream_reader(stream: BinaryIO):
    """``read_exact`` over a blocking binary stream (EOF raises FramingError)."""
    def read_exact(n: int) -> bytes:
        chunks, got = [], 0
        while got < n:
            data = stream.read(n - got)
            if not data:
                raise FramingError(f"end of stream after {got} of {n} bytes (the peer exited or closed the pipe)")
            chunks.append(data)
            got += len(data)
        return b"".join(chunks)
    return read_exact


# ---------------------------------------------------------------- the worker (LeRobot venv only)
def find_models(checkpoint: str | os.PathLike[str]) -> list[Path]:
    """The ``pretrained_model`` folders a checkpoint argument names (see the module docstring)."""
    root = Path(checkpoint)

    def resolve(d: Path) -> Path | None:
        if (d / "config.json").is_file() and (d / "model.safetensors").is_file():
            return d
        for candidate in (d / "pretrained_model", d / "checkpoints" / "last" / "pretrained_model"):
            if (candidate / "config.json").is_file():
                return candidate
        return None

    if not root.is_dir():
        raise FileNotFoundError(f"{root}: checkpoint folder not found")
    single = resolve(root)
    if single is not None:
        return [single]
    models = [m for m in (resolve(d) for d in sorted(root.iterdir()) if d.is_dir()) if m is not None]
    if not models:
        raise FileNotFoundError(f"{root}: neither a LeRobot pretrained_model folder (config.json + "
                                f"model.safetensors), a training output (checkpoints/last/pretrained_model) nor a "
                                f"folder of training outputs")
    return models


class _Model:
    def __init__(self, path: Path, device: str) -> None:
        import torch
        from lerobot.configs.policies import PreTrainedConfig
        from lerobot.policies.factory import get_policy_class, make_pre_post_processors

        self.path = path
        config = PreTrainedConfig.from_pretrained(path)
        config.device = device
        config.pretrained_path = path
        self.policy = get_policy_class(config.type).from_pretrained(path, config=config)
        self.policy.eval()
        self.preprocessor, self.postprocessor = make_pre_post_processors(
            config, pretrained_path=str(path),
            preprocessor_overrides={"device_processor": {"device": device}})
        self.config = config
        self.device = torch.device(device)
        self.image_keys = list(config.image_features)
        self.cameras = [k.removeprefix("observation.images.") for k in self.image_keys]
        shapes = {tuple(config.image_features[k].shape) for k in self.image_keys}
        if len(shapes) != 1:
            raise ValueError(f"{path}: cameras of different sizes {shapes}")
        _, h, w = next(iter(shapes))
        self.camera_hw = (int(h), int(w))
        self.state_dim = int(config.robot_state_feature.shape[0]) if config.robot_state_feature else 0
        meta = {}
        if (path / TASKS_FILE).is_file():
            meta = json.loads((path / TASKS_FILE).read_text())
        self.tasks = [str(t) for t in meta.get("tasks", [])]
        self.task_names = [str(t) for t in meta.get("task_names", [])]
        self.fps = float(meta.get("fps", 50.0))

    def serves(self, task: str) -> bool:
        return task in self.tasks or task in self.task_names

    def infer(self, qpos: np.ndarray, images: dict[str, np.ndarray], task: str, resize: bool):
        import torch
        import torch.nn.functional as F
        from lerobot.policies.utils import prepare_observation_for_inference

        obs: dict[str, np.ndarray] = {}
        if self.state_dim:
            if qpos.shape != (self.state_dim,):
                raise ValueError(f"qpos has shape {qpos.shape}, the model expects ({self.state_dim},)")
            obs["observation.state"] = np.asarray(qpos, dtype=np.float32)
        for cam, key in zip(self.cameras, self.image_keys):
            if cam not in images:
                raise ValueError(f"camera {cam!r} missing from the request (got {sorted(images)})")
            frame = images[cam]
            if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
                raise ValueError(f"{cam}: frame {frame.shape} {frame.dtype}, expected (H, W, 3) uint8")
            if tuple(frame.shape[:2]) != self.camera_hw and not resize:
                raise ValueError(f"{cam}: frame {frame.shape[:2]}, the model was trained on {self.camera_hw}")
            obs[key] = np.ascontiguousarray(frame)
        with torch.inference_mode():
            batch = prepare_observation_for_inference(obs, self.device, task, "aloha")
            for key in self.image_keys:
                if tuple(batch[key].shape[-2:]) != self.camera_hw:
                    batch[key] = F.interpolate(batch[key], size=self.camera_hw, mode="bilinear", align_corners=False)
            batch = self.preprocessor(batch)
            actions = self.policy.predict_action_chunk(batch)
            actions = self.postprocessor(actions)
        return np.asarray(actions.squeeze(0).float().cpu().numpy(), dtype=np.float32)


def serve(checkpoint: str, device: str = "cpu", resize: bool = False, threads: int = 0) -> int:
    """Load the model(s), say ready, answer requests until shutdown or end of stdin."""
    # The protocol owns the real stdout; anything printed by libraries goes to stderr instead.
    proto_out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    proto_in = os.fdopen(os.dup(sys.stdin.fileno()), "rb", buffering=0)
    read_exact = stream_reader(proto_in)

    def send(header: dict, arrays: dict | None = None) -> None:
        proto_out.write(encode_message(header, arrays))
        proto_out.flush()

    import time

    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    try:
        models = [_Model(p, device) for p in find_models(checkpoint)]
        first = models[0]
        for m in models[1:]:
            if m.cameras != first.cameras or m.camera_hw != first.camera_hw or m.state_dim != first.state_dim:
                raise ValueError(f"{m.path}: cameras/size/state ({m.cameras}, {m.camera_hw}, {m.state_dim}) differ "
                                 f"from {first.path}'s ({first.cameras}, {first.camera_hw}, {first.state_dim})")
            if m.config.chunk_size != first.config.chunk_size:
                raise ValueError(f"{m.path}: chunk_size {m.config.chunk_size} != {first.config.chunk_size}")
    except Exception as exc:  # the node reports this line and exits
        send({"op": "error", "id": None, "message": f"loading {checkpoint}: {type(exc).__name__}: {exc}"})
        return 1
    send({"op": "ready", "cameras": first.cameras, "camera_hw": list(first.camera_hw),
          "chunk_length": int(first.config.chunk_size), "execute_steps": int(first.config.n_action_steps),
          "control_hz": first.fps, "state_dim": first.state_dim, "device": device,
          "models": [{"path": str(m.path), "tasks": m.tasks, "task_names": m.task_names} for m in models],
          "description": f"LeRobot {first.config.type} {checkpoint} ({len(models)} model(s), device {device})"})

    def pick(task: str | None) -> _Model:
        if task:
            for m in models:
                if m.serves(task):
                    return m
        if not task or (len(models) == 1 and not first.tasks and not first.task_names):
            return first  # warm-up, or one model that does not say which tasks it serves
        known = [t for m in models for t in (m.task_names or m.tasks)]
        raise ValueError(f"no model for task {task!r} (the models serve {known})")

    while True:
        try:
            header, arrays = decode_message(read_exact)
        except FramingError as exc:
            if "end of stream after 0 of" in str(exc):
                return 0  # the node closed the pipe: normal end
            print(f"[lerobot_worker] {exc}", file=sys.stderr)
            return 2
        op = header.get("op")
        if op == "shutdown":
            return 0
        if op == "ping":
            send({"op": "pong"})
            continue
        if op != "infer":
            send({"op": "error", "id": header.get("id"), "message": f"unknown op {op!r}"})
            continue
        start = time.perf_counter()
        try:
            model = pick(header.get("task"))
            if header.get("seed") is not None:
                torch.manual_seed(int(header["seed"]))
            images = {k.removeprefix("image."): v for k, v in arrays.items() if k.startswith("image.")}
            actions = model.infer(np.asarray(arrays["qpos"]), images, header.get("task") or "", resize)
            if not np.all(np.isfinite(actions)):
                raise ValueError("the model produced non-finite actions")
        except Exception as exc:  # reported to the node, which aborts the goal; the worker serves on
            send({"op": "error", "id": header.get("id"), "message": f"{type(exc).__name__}: {exc}"})
            continue
        send({"op": "chunk", "id": header.get("id"), "latency_s": time.perf_counter() - start,
              "model": str(model.path)}, {"actions": actions})


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="LeRobot policy worker (framed stdin/stdout; see the docstring)")
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--resize", action="store_true", help="accept any frame size (resized to the model's)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return serve(args.checkpoint, device=args.device, resize=args.resize, threads=args.threads)


if __name__ == "__main__":
    code = main()
    sys.stderr.flush()
    os._exit(code)  # nothing to clean up: skip torch's slow interpreter teardown, so shutdown is prompt
