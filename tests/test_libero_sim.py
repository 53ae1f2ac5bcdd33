"""The LIBERO simulator behind its worker: frames as the release sees them (always), the set-up refusal (always) and
a real round trip through .venv-libero (needs ./scripts/setup_libero.sh: reported as skipped, not run, without it).
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from libero_sim import libero_env
from libero_sim.worker_client import LiberoSetupError, LiberoWorker, LiberoWorkerError, find_libero_python

ROOT = Path(__file__).resolve().parents[1]
LIBERO_PYTHON = Path(os.environ.get("LIBERO_PYTHON", ROOT / ".venv-libero" / "bin" / "python"))
needs_libero = pytest.mark.skipif(not LIBERO_PYTHON.exists(), reason=f"NOT RUN: {LIBERO_PYTHON} not found (optional "
                                  f"LIBERO extra: ./scripts/setup_libero.sh)")


class _FakeSim:
    """Renders a frame whose top row is dark and bottom row bright, as LIBERO's upside-down camera would."""

    def render(self, camera_name, width, height):
        column = np.linspace(0, 255, height).astype(np.uint8)[:, None, None]
        return np.repeat(np.repeat(column, width, axis=1), 3, axis=2)


def _env(flip: bool, jpeg: int) -> libero_env.LiberoEnv:
    env = libero_env.LiberoEnv.__new__(libero_env.LiberoEnv)  # the rendering path only: no LIBERO import
    env.cameras, env.image_hw, env.flip, env.jpeg_quality = {"agentview": "agentview"}, (32, 48), flip, jpeg
    env.env = SimpleNamespace(sim=_FakeSim())
    return env


def test_frames_are_flipped_upright_and_jpeg_round_tripped():
    raw = _env(flip=False, jpeg=0).render()["agentview"]
    upright = _env(flip=True, jpeg=0).render()["agentview"]
    np.testing.assert_array_equal(upright, raw[::-1])
    assert upright.shape == (32, 48, 3) and upright.dtype == np.uint8 and upright.flags["C_CONTIGUOUS"]
    jpeg = _env(flip=True, jpeg=95).render()["agentview"]
    assert jpeg.shape == upright.shape and jpeg.dtype == np.uint8
    error = np.abs(jpeg.astype(int) - upright.astype(int))
    assert 0 < error.max() <= 12  # quality 95 changes pixels, a little


def test_missing_venv_is_refused_naming_the_setup_script(tmp_path):
    with pytest.raises(LiberoSetupError, match=r"\./scripts/setup_libero\.sh"):
        find_libero_python(str(tmp_path / "nope" / "python"))
    with pytest.raises(LiberoSetupError, match=r"no \.venv-libero-absent/bin/python found.*setup_libero\.sh"):
        find_libero_python(venv=".venv-libero-absent", env_var="LIBERO_PYTHON_ABSENT")
    # a Python without LIBERO: the worker exits and the node is told what to install
    bare = tmp_path / "python"
    bare.write_text("#!/bin/sh\nexit 1\n")
    bare.chmod(0o755)
    with pytest.raises(LiberoSetupError, match=r"did not start.*\./scripts/setup_libero\.sh"):
        LiberoWorker({"agentview": "agentview"}, (32, 32), python=str(bare), startup_timeout_s=20)


@pytest.mark.slow
@needs_libero
def test_worker_resets_steps_and_renders_a_libero_task():
    worker = LiberoWorker({"agentview": "agentview", "wrist": "robot0_eye_in_hand"}, (64, 64), jpeg_quality=95,
                          python=str(LIBERO_PYTHON))
    try:
        tasks = worker.tasks(["libero_spatial"])
        assert len(tasks) == 10 and all(t["init_states"] == 50 for t in tasks)
        obs = worker.reset("libero_spatial", 0, 3, settle_steps=10, settle_command=np.array([0, 0, 0, 0, 0, 0, -1.0]))
        assert obs.task["language"] == tasks[0]["language"] and obs.step == 0 and not obs.success
        assert obs.proprio.shape == (9,) and np.all(np.isfinite(obs.proprio))
        assert abs(np.linalg.norm(obs.proprio[5:9]) - 1.0) < 1e-6  # the end-effector quaternion
        assert sorted(obs.images) == ["agentview", "wrist"]
        assert all(im.shape == (64, 64, 3) and im.dtype == np.uint8 and im.std() > 5 for im in obs.images.values())
        moved = worker.step(np.array([0, 0, 1.0, 0, 0, 0, -1.0]), render=False)  # up at full scale, no frames
        assert moved.step == 1 and moved.images == {} and moved.proprio[4] > obs.proprio[4]
        with pytest.raises(LiberoWorkerError, match=r"init-state index 50 outside 0\.\.49"):
            worker.reset("libero_spatial", 0, 50)
        with pytest.raises(LiberoWorkerError, match="suite 'libero_100' unknown"):
            worker.reset("libero_100", 0, 0)
        assert worker.step(np.zeros(7), render=False).step == 2  # the worker serves on after a refused request
    finally:
        worker.close()
