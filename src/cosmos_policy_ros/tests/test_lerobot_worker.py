"""The LeRobot worker channel: framing (always) and a real ACT worker round trip (needs .venv-lerobot).

The round trip builds the whole optional pipeline at toy size: synthetic episodes -> scripts/export_lerobot.sh ->
scripts/train_act.sh (a few steps of a small ACT) -> `LeRobotBackend`, which starts lerobot_worker.py in the LeRobot
venv and serves chunks through the policy node's backend interface.
"""

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from cosmos_policy_ros import lerobot_worker as lw
from cosmos_policy_ros.external_backend import ExternalPolicyError, LeRobotBackend, WorkerProcess, parse_spec
from cosmos_policy_ros.observation import Observation
from cosmos_policy_ros.policy_backend import InferenceRequest

ROOT = Path(__file__).resolve().parents[3]
LEROBOT_PYTHON = Path(os.environ.get("LEROBOT_PYTHON", ROOT / ".venv-lerobot" / "bin" / "python"))
_skip = pytest.mark.skipif(not LEROBOT_PYTHON.exists(),
                           reason=f"{LEROBOT_PYTHON} not found (optional: ./scripts/setup_lerobot.sh)")


def needs_lerobot(test):
    """Skipped without the LeRobot venv; slow: three LeRobot processes (export, train twice) plus the workers."""
    return pytest.mark.slow(_skip(test))
CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
H, W = 24, 32


# ---------------------------------------------------------------- framing, no LeRobot needed
def test_framing_round_trip_keeps_dtypes_shapes_and_values():
    arrays = {"qpos": np.linspace(-1, 1, 14), "image.cam_high": np.arange(H * W * 3, dtype=np.uint8).reshape(H, W, 3),
              "actions": np.ones((50, 14), np.float32) / 3, "empty": np.zeros((0, 14), np.float32),
              "mask": np.array([True, False]), "big_endian": np.arange(3, dtype=">f8")}
    stream = io.BytesIO(lw.encode_message({"op": "infer", "id": 7, "task": "t\u00e9sk"}, arrays)
                        + lw.encode_message({"op": "ping"}))
    header, out = lw.decode_message(lw.stream_reader(stream))
    assert header == {"op": "infer", "id": 7, "task": "t\u00e9sk"}
    assert list(out) == list(arrays)
    for name, value in arrays.items():
        assert out[name].shape == value.shape and out[name].dtype == value.dtype.newbyteorder("=")
        np.testing.assert_array_equal(out[name], value)
        assert out[name].flags.writeable
    assert lw.decode_message(lw.stream_reader(stream)) == ({"op": "ping"}, {})
    with pytest.raises(lw.FramingError, match="end of stream after 0 of 8"):
        lw.decode_message(lw.stream_reader(stream))


def test_framing_refuses_objects_garbage_and_truncation():
    with pytest.raises(lw.FramingError, match="dtype object"):
        lw.encode_message({"op": "x"}, {"bad": np.array([{"a": 1}], dtype=object)})
    with pytest.raises(lw.FramingError, match="bad magic"):
        lw.decode_message(lw.stream_reader(io.BytesIO(b"hello world, not a frame")))
    message = lw.encode_message({"op": "chunk"}, {"actions": np.zeros((5, 14), np.float32)})
    with pytest.raises(lw.FramingError, match="end of stream"):
        lw.decode_message(lw.stream_reader(io.BytesIO(message[:-10])))
    head = json.dumps({"op": "x", "arrays": [{"name": "p", "dtype": "object", "shape": [1]}]}).encode()
    forged = lw.MAGIC + len(head).to_bytes(4, "big") + head
    with pytest.raises(lw.FramingError, match="not allowed"):
        lw.decode_message(lw.stream_reader(io.BytesIO(forged)))


def test_worker_module_imports_no_ros_and_no_torch_at_import():
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import lerobot_worker; "
            "bad = [m for m in ('rclpy', 'torch', 'lerobot', 'cosmos_policy') if m in sys.modules]; assert not bad, bad")
    subprocess.run([sys.executable, "-c", code, str(Path(lw.__file__).parent)], check=True)


def test_parse_spec():
    assert parse_spec("lerobot:runs/act") == "runs/act"
    assert parse_spec("checkpoints/aloha_sim_default") is None


ECHO_WORKER = r"""
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np, lerobot_worker as lw
out = sys.stdout.buffer
read = lw.stream_reader(sys.stdin.buffer)
out.write(lw.encode_message({"op": "ready", "mode": sys.argv[2]})); out.flush()
while True:
    try:
        header, arrays = lw.decode_message(read)
    except lw.FramingError:
        sys.exit(0)
    if header["op"] == "shutdown":
        sys.exit(0)
    if sys.argv[2] == "die":
        sys.exit(3)
    if sys.argv[2] == "hang":
        import time; time.sleep(60)
    if sys.argv[2] == "garbage":
        out.write(b"print from a library\n"); out.flush(); continue
    out.write(lw.encode_message({"op": "chunk", "id": header.get("id")}, {"actions": arrays["qpos"][None] * 2})); out.flush()
"""


@pytest.mark.parametrize("mode", ["echo", "die", "hang", "garbage"])
def test_worker_process_channel_and_its_failures(mode):
    worker = WorkerProcess([sys.executable, "-c", ECHO_WORKER, str(Path(lw.__file__).parent), mode],
                           startup_timeout_s=30)
    try:
        assert worker.hello == {"op": "ready", "mode": mode}
        qpos = np.arange(14, dtype=np.float64)
        if mode == "echo":
            for i in range(3):
                reply, arrays = worker.request({"op": "infer", "id": i}, {"qpos": qpos + i})
                assert reply == {"op": "chunk", "id": i}
                np.testing.assert_array_equal(arrays["actions"], 2 * (qpos + i)[None])
        else:
            match = {"die": "exited", "hang": "answered nothing", "garbage": "bad magic"}[mode]
            with pytest.raises(ExternalPolicyError, match=match):
                worker.request({"op": "infer", "id": 1}, {"qpos": qpos}, timeout_s=2.0)
            assert worker.proc.poll() is not None  # a failed worker is stopped, never left running
            with pytest.raises(ExternalPolicyError, match="not running"):
                worker.request({"op": "infer", "id": 2}, {"qpos": qpos})
    finally:
        worker.close()
    assert worker.proc.poll() is not None


# ---------------------------------------------------------------- the real worker (LeRobot venv)
@pytest.fixture(scope="module")
def tiny_act(tmp_path_factory):
    """A small ACT trained for 3 steps on two synthetic one-task episodes (export + train_act.sh)."""
    from rollout_recorder.episode_file import Episode, write_act_episode

    tmp = tmp_path_factory.mktemp("lerobot")
    rng = np.random.default_rng(0)
    for i in range(2):
        steps = 60
        qpos = rng.normal(size=(steps, 14)).astype(np.float32) * 0.1
        images = {cam: rng.integers(0, 255, (steps, H, W, 3), dtype=np.uint8) for cam in CAMS}
        write_act_episode(tmp / "episodes" / f"episode_{i}.hdf5",
                          Episode(qpos=qpos, qvel=0 * qpos, effort=0 * qpos, action=qpos + 0.3, images=images,
                                  attrs={"task": "transfer_cube", "task_description": "Pick up the cube."}))
    env = {**os.environ, "LEROBOT_PYTHON": str(LEROBOT_PYTHON)}
    run = lambda *cmd: subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)  # noqa: E731
    proc = run(str(ROOT / "scripts" / "export_lerobot.sh"), str(tmp / "episodes"), "--out", str(tmp / "dataset"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = [str(ROOT / "scripts" / "train_act.sh"), "--dataset", str(tmp / "dataset"), "--out", str(tmp / "act"),
             "--batch-size", "2", "--num-workers", "0", "--log-every", "1", "--dim-model", "32",
             "--dim-feedforward", "64", "--n-encoder-layers", "1", "--n-vae-encoder-layers", "1"]
    proc = run(*train, "--max-steps", "2", "--budget-min", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    proc = run(*train, "--max-steps", "3", "--budget-min", "5")  # resumes from step 2
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming at step 2" in proc.stdout and "done: step 3" in proc.stdout, proc.stdout
    state = json.loads((tmp / "act" / "checkpoints" / "last" / "aloha_train_state.json").read_text())
    assert state["step"] == 3
    assert sorted(p.name for p in (tmp / "act" / "checkpoints").iterdir()) == ["000003", "last"]
    return tmp / "act"


def observation(value: int, hw=(H, W)) -> Observation:
    return Observation(images={cam: np.full((*hw, 3), value, np.uint8) for cam in CAMS},
                       qpos=np.linspace(-0.2, 0.2, 14), stamp_s=0.0, image_stamps_s={})


@needs_lerobot
def test_lerobot_backend_serves_act_chunks(tiny_act):
    backend = LeRobotBackend(str(tiny_act), python=str(LEROBOT_PYTHON), startup_timeout_s=300)
    try:
        assert backend.cameras == list(CAMS) and backend.camera_hw == (H, W)
        assert backend.chunk_length == 50 and backend.execute_steps == 50 and backend.control_hz == 50.0
        assert backend.action_steps == 1 and backend.has_planning is False and backend.max_joint_jump_rad is None
        assert backend.known_tasks() == ["Pick up the cube."]
        assert backend.warmup(None) > 0
        chunks = []
        for task in ("Pick up the cube.", "transfer_cube"):  # the description or the short task name
            request = InferenceRequest(observation=observation(100), task=task, seed=3)
            result = backend.infer(request, backend.prepare(request))
            assert result.actions.shape == (50, 14) and result.actions.dtype == np.float32
            assert np.isfinite(result.actions).all() and math.isnan(result.value) and result.latency_s > 0
            chunks.append(result.actions)
        np.testing.assert_allclose(chunks[0], chunks[1], atol=1e-6)  # deterministic at inference
        other = InferenceRequest(observation=observation(200), task="Pick up the cube.", seed=3)
        assert not np.allclose(backend.infer(other, backend.prepare(other)).actions, chunks[0])
        # refusals are inference errors for the goal; the worker keeps serving
        with pytest.raises(ExternalPolicyError, match="no model for task"):
            bad = InferenceRequest(observation=observation(100), task="insertion", seed=None)
            backend.infer(bad, backend.prepare(bad))
        with pytest.raises(ExternalPolicyError, match="trained on"):
            small = InferenceRequest(observation=observation(100, hw=(12, 16)), task="Pick up the cube.", seed=None)
            backend.infer(small, backend.prepare(small))
        request = InferenceRequest(observation=observation(100), task="Pick up the cube.", seed=3)
        np.testing.assert_allclose(backend.infer(request, backend.prepare(request)).actions, chunks[0], atol=1e-6)
        backend.worker.kill()  # a dead worker fails nothing further: the next request starts a new one
        np.testing.assert_allclose(backend.infer(request, backend.prepare(request)).actions, chunks[0], atol=1e-6)
        assert backend.restarts == 1
    finally:
        backend.close()
    assert backend.worker.proc.poll() == 0


@needs_lerobot
def test_lerobot_backend_resize_and_bad_checkpoint(tiny_act, tmp_path):
    backend = LeRobotBackend(str(tiny_act / "checkpoints" / "last" / "pretrained_model"), camera_hw_check="resize",
                             python=str(LEROBOT_PYTHON))
    try:
        assert backend.camera_hw is None
        request = InferenceRequest(observation=observation(100, hw=(48, 64)), task="transfer_cube", seed=None)
        assert backend.infer(request, backend.prepare(request)).actions.shape == (50, 14)
    finally:
        backend.close()
    (tmp_path / "empty").mkdir()
    # start-up failures are ValueErrors (the policy node exits 1 with this one line)
    with pytest.raises(ValueError, match="worker failed to start: loading .*neither a LeRobot"):
        LeRobotBackend(str(tmp_path / "empty"), python=str(LEROBOT_PYTHON))
    with pytest.raises(ValueError, match="cannot start /nonexistent/python"):
        LeRobotBackend(str(tmp_path / "empty"), python="/nonexistent/python")
