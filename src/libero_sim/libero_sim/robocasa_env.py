"""RoboCasa as plain Python, with LiberoEnv's interface, for the worker in RoboCasa's own venv. UNTESTED.

RoboCasa is not on the package index and its kitchen assets are a multi-GB download from outside, so this module
has never run on this project's machines: it is written against RoboCasa's documented API (robosuite >= 1.5,
``robosuite.make(<task>, robots="PandaOmron", ...)``) and kept so that a machine with RoboCasa installed runs the
same node, contract and protocol as LIBERO. docs/libero.md lists it under "not verified".

Mapping: the protocol's "suite" is ``robocasa``, its task id indexes `protocol.ROBOCASA_TASKS` (the 24 atomic
tasks), and the init index is the trial's scene seed (RoboCasa samples kitchen layouts and objects, it ships no
init-state files). The 7-D command (arm delta pose + gripper) fills the arm part of PandaOmron's action; the mobile
base and torso get zeros (they stay still), as the robocasa layout's 7-D actions imply.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from libero_env import LiberoSetupError, TaskInfo, jpeg_round_trip  # noqa: E402
from protocol import ROBOCASA_TASKS  # noqa: E402

SETUP_HINT = ("install RoboCasa into .venv-robocasa (or set ROBOCASA_PYTHON): it is not on the package index, so "
              "robosuite>=1.5 and robocasa come from their source repositories, then "
              "`python -m robocasa.scripts.download_kitchen_assets` fetches its kitchen assets (several GB; "
              "docs/libero.md, RoboCasa)")


class RoboCasaSetupError(LiberoSetupError):
    """RoboCasa or its assets are missing from this Python environment."""


class RoboCasaEnv:
    """One RoboCasa kitchen task at a time (see the module docstring)."""

    def __init__(self, cameras: dict[str, str], image_hw: tuple[int, int] = (256, 256), flip: bool = True,
                 jpeg_quality: int = 95) -> None:
        os.environ.setdefault("MUJOCO_GL", "egl")
        try:
            import robocasa  # noqa: F401 - registers the kitchen environments with robosuite
            import robosuite
        except ImportError as exc:
            raise RoboCasaSetupError(f"RoboCasa does not import in {sys.executable} ({exc}): {SETUP_HINT}") from None
        self.robosuite = robosuite
        self.cameras = dict(cameras)
        self.image_hw = (int(image_hw[0]), int(image_hw[1]))
        self.flip = flip
        self.jpeg_quality = int(jpeg_quality)
        self.env = None
        self.task: TaskInfo | None = None
        self.last_obs: dict | None = None
        self.steps = 0

    def task_info(self, suite: str, task_id: int) -> TaskInfo:
        if suite != "robocasa" or not 0 <= task_id < len(ROBOCASA_TASKS):
            raise ValueError(f"{suite}/{task_id}: expected robocasa/<0..{len(ROBOCASA_TASKS) - 1}>")
        name = ROBOCASA_TASKS[task_id]
        return TaskInfo("robocasa", task_id, name, name, 1 << 31)

    def tasks(self, suites: list[str]) -> list[TaskInfo]:
        return [self.task_info("robocasa", i) for i in range(len(ROBOCASA_TASKS))]

    def reset(self, suite: str, task_id: int, init_index: int, settle_steps: int = 10,
              settle_command: np.ndarray | None = None) -> TaskInfo:
        info = self.task_info(suite, task_id)
        self.close()
        from robosuite.controllers import load_composite_controller_config

        self.env = self.robosuite.make(
            env_name=info.bddl_file, robots="PandaOmron",
            controller_configs=load_composite_controller_config(robot="PandaOmron"),
            has_renderer=False, has_offscreen_renderer=True, use_camera_obs=False, ignore_done=True,
            camera_names=list(self.cameras.values()), camera_heights=self.image_hw[0], camera_widths=self.image_hw[1],
            control_freq=20, seed=int(init_index))
        self.last_obs = self.env.reset()
        ep_meta = getattr(self.env, "get_ep_meta", dict)()
        info.language = str(ep_meta.get("lang", info.language))
        self.task = info
        for _ in range(settle_steps):
            self._step(np.zeros(7) if settle_command is None else settle_command)
        self.steps = 0
        return info

    def _step(self, command: np.ndarray) -> None:
        action = np.zeros(self.env.action_dim)
        action[:7] = command  # arm delta pose and gripper first; base and torso still (see the module docstring)
        self.last_obs, _, _, _ = self.env.step(action)

    def step(self, command: np.ndarray) -> bool:
        command = np.asarray(command, dtype=np.float64).reshape(-1)
        if command.shape != (7,) or not np.all(np.isfinite(command)):
            raise ValueError(f"command {command.tolist()}: expected 7 finite values")
        self._step(command)
        self.steps += 1
        return self.success()

    def success(self) -> bool:
        return bool(self.env is not None and self.env._check_success())

    def proprio(self) -> np.ndarray:
        obs = self.last_obs
        pos = obs.get("robot0_base_to_eef_pos", obs.get("robot0_eef_pos"))
        quat = obs.get("robot0_base_to_eef_quat", obs.get("robot0_eef_quat"))
        return np.concatenate([obs["robot0_gripper_qpos"], pos, quat]).astype(np.float64)

    def render(self) -> dict[str, np.ndarray]:
        h, w = self.image_hw
        frames = {}
        for name, source in self.cameras.items():
            rgb = np.asarray(self.env.sim.render(camera_name=source, width=w, height=h), dtype=np.uint8)
            rgb = np.ascontiguousarray(np.flipud(rgb) if self.flip else rgb)
            frames[name] = jpeg_round_trip(rgb, self.jpeg_quality) if self.jpeg_quality > 0 else rgb
        return frames

    def close(self) -> None:
        if self.env is not None:
            self.env.close()
            self.env = None
