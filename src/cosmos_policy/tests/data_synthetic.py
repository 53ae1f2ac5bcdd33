"""Synthetic ALOHA-layout episodes for the data and training tests (not collected as tests).

Each episode has a goal g in R^14 set by two parameters (u, v) in [0, 1]: g = W @ [u, v, 1]. The arm
ramps linearly to its goal, qpos(t) = g * t / T, and the action is the next state, so the action chunk
at t is a deterministic function of what the observation shows: cam_high draws a square at (u, v),
cam_right_wrist is tinted by u and v, cam_left_wrist brightens with progress t / T, and qpos itself
lies on the ray towards g.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cosmos_policy.data.act_episode import Episode, write_act_episode

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
_GOAL_MAP = np.random.default_rng(1234).uniform(-1.0, 1.0, size=(14, 3)).astype(np.float32)


def goal_from_params(u: float, v: float) -> np.ndarray:
    return _GOAL_MAP @ np.array([u, v, 1.0], dtype=np.float32)


def synthetic_episode(u: float, v: float, steps: int = 60, image_hw: tuple[int, int] = (48, 64),
                      attrs: dict | None = None) -> Episode:
    """One synthetic episode whose actions follow from its images and proprio."""
    height, width = image_hw
    goal = goal_from_params(u, v)
    progress = np.arange(steps + 1, dtype=np.float32) / steps
    states = progress[:, None] * goal[None, :]
    qpos, action = states[:-1], states[1:]
    high = np.zeros((steps, height, width, 3), np.uint8)
    side = max(4, height // 4)
    top = int(round(v * (height - side)))
    left = int(round(u * (width - side)))
    high[:, top:top + side, left:left + side] = 255
    right = np.empty((steps, height, width, 3), np.uint8)
    right[...] = np.array([255 * u, 255 * v, 128], dtype=np.uint8)
    left_wrist = np.broadcast_to((255 * progress[:-1])[:, None, None, None], (steps, height, width, 3))
    images = {"cam_high": high, "cam_left_wrist": left_wrist.astype(np.uint8).copy(), "cam_right_wrist": right}
    return Episode(qpos=qpos, qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos), action=action,
                   images=images, attrs=dict(attrs or {}))


EPISODE_PARAMS = ((0.1, 0.2), (0.9, 0.3), (0.4, 0.9), (0.7, 0.6), (0.2, 0.7), (0.6, 0.1))


def write_synthetic_episodes(folder: Path, count: int = 4, steps: int = 60, image_hw=(48, 64),
                             compress: bool = False, attrs: list[dict] | None = None) -> list[Path]:
    """Write `count` synthetic ACT episodes as folder/episode_<i>.hdf5."""
    paths = []
    for i in range(count):
        u, v = EPISODE_PARAMS[i % len(EPISODE_PARAMS)]
        episode = synthetic_episode(u, v, steps, image_hw, attrs[i] if attrs else None)
        paths.append(write_act_episode(Path(folder) / f"episode_{i}.hdf5", episode, compress=compress))
    return paths


def write_release_episode(path: Path, episode: Episode, video: bool = False) -> Path:
    """The same episode in the release's preprocessed layout (no qvel/effort; raw frames or MP4 paths)."""
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.create_dataset("action", data=episode.action)
        f.create_dataset("observations/qpos", data=episode.qpos)
        for cam, frames in episode.images.items():
            if not video:
                f.create_dataset(f"observations/images/{cam}", data=frames)
                continue
            name = f"{path.stem}_{cam}.mp4"
            height, width = frames.shape[1:3]
            writer = cv2.VideoWriter(str(path.parent / name), cv2.VideoWriter_fourcc(*"mp4v"), 25, (width, height))
            for rgb in frames:
                writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            writer.release()
            f.create_dataset(f"observations/video_paths/{cam}", data=name)
    return path
