"""Loading the joint-controlled ALOHA MJCF scenes and rendering their cameras offscreen, fast.

The model files come from gym-aloha's ``assets/`` directory (the package is never imported: its
python code needs dm_control/gymnasium, which are not installed). Rendering uses the offscreen
OpenGL context chosen by ``MUJOCO_GL`` (set to ``egl`` by ``aloha_sim/__init__.py`` if unset).
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import mujoco
import numpy as np

ASSETS_ENV_VAR = "ALOHA_SIM_ASSETS"

# contract camera name -> camera defined in the gym-aloha MJCF (cam_low has no sim counterpart)
CAMERA_TO_MJCF = {
    "cam_high": "top",
    "cam_left_wrist": "left_wrist",
    "cam_right_wrist": "right_wrist",
}


class SceneError(RuntimeError):
    """The sim assets or a camera cannot be found / rendered."""


def assets_dir() -> Path:
    """gym-aloha's MJCF directory (``$ALOHA_SIM_ASSETS`` overrides), found without importing gym_aloha."""
    override = os.environ.get(ASSETS_ENV_VAR)
    if override:
        path = Path(override)
    else:
        spec = importlib.util.find_spec("gym_aloha")
        if spec is None or not spec.submodule_search_locations:
            raise SceneError("gym_aloha assets not found: install gym-aloha==0.1.5 with --no-deps "
                             f"or set {ASSETS_ENV_VAR} to a directory holding its MJCF files")
        path = Path(list(spec.submodule_search_locations)[0]) / "assets"
    if not path.is_dir():
        raise SceneError(f"ALOHA sim assets directory {path} does not exist (check {ASSETS_ENV_VAR})")
    return path


def load_model(model_file: str) -> mujoco.MjModel:
    """Load one of gym-aloha's scenes, e.g. ``bimanual_viperx_transfer_cube.xml``."""
    path = assets_dir() / model_file
    if not path.is_file():
        raise SceneError(f"sim model {path} not found (check the task's sim.model in tasks.yaml)")
    return mujoco.MjModel.from_xml_path(str(path))


def apply_fast_render_settings(model: mujoco.MjModel, height: int, width: int) -> None:
    """No shadow map, no multisampling, offscreen buffer just big enough (8-10x faster on CPU)."""
    model.vis.quality.shadowsize = 0
    model.vis.quality.offsamples = 0
    model.vis.global_.offheight = max(int(height), 1)
    model.vis.global_.offwidth = max(int(width), 1)


def mjcf_camera(camera: str) -> str:
    """MJCF camera name for a contract camera name; MJCF names (``angle``...) pass through."""
    return CAMERA_TO_MJCF.get(camera, camera)


class CameraRenderer:
    """Renders a fixed list of cameras of one model at one image size into uint8 RGB arrays."""

    def __init__(self, model: mujoco.MjModel, cameras: list[str], image_size: tuple[int, int]) -> None:
        height, width = (int(image_size[0]), int(image_size[1]))
        if height <= 0 or width <= 0:
            raise SceneError(f"image size {height}x{width}: expected positive height x width, e.g. 480x640")
        self.cameras = list(cameras)
        self.image_size = (height, width)
        self._camera_ids = {}
        for cam in self.cameras:
            cam_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, mjcf_camera(cam))
            if cam_id < 0:
                known = [model.camera(i).name for i in range(model.ncam)]
                raise SceneError(f"camera '{cam}' (MJCF '{mjcf_camera(cam)}') is not in the sim model; "
                                 f"contract names {sorted(CAMERA_TO_MJCF)} or MJCF names {known}")
            self._camera_ids[cam] = cam_id
        apply_fast_render_settings(model, height, width)
        try:
            self._renderer = mujoco.Renderer(model, height=height, width=width)
        except Exception as exc:  # the GL backend error is cryptic; say what to check
            raise SceneError(f"offscreen rendering failed ({exc}); MUJOCO_GL={os.environ.get('MUJOCO_GL')!r}: "
                             "use egl (Mesa) or osmesa, and import aloha_sim before mujoco") from exc
        flags = self._renderer.scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SHADOW] = 0
        flags[mujoco.mjtRndFlag.mjRND_REFLECTION] = 0
        flags[mujoco.mjtRndFlag.mjRND_SKYBOX] = 0

    def render(self, data: mujoco.MjData) -> dict[str, np.ndarray]:
        """One HxWx3 uint8 RGB image per camera for the current state of ``data``."""
        images = {}
        for cam in self.cameras:
            self._renderer.update_scene(data, camera=self._camera_ids[cam])
            images[cam] = self._renderer.render().copy()
        return images

    def close(self) -> None:
        self._renderer.close()
