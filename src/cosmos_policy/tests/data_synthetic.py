"""Synthetic ALOHA-layout episodes for the data and training tests (not collected as tests).

Each episode works around a posture set by one parameter u in [0, 1]: p = A + B * u (fixed A, B > 0 in
R^14), and drifts slowly from it, qpos(t) = p + D * t / T. Actions are absolute joint targets, the
next state (action(t) = qpos(t + 1)), as in ALOHA data, so the action chunk is a deterministic function
of what the observation shows: qpos itself, cam_high's square (its column is u), cam_right_wrist's
tint (u) and cam_left_wrist's brightness (progress t / T). Every camera also sees a fixed scene (a
colour gradient), as real cameras see the table and the robot.
"""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from cosmos_policy.data.act_episode import Episode, write_act_episode

CAMERAS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
_RNG = np.random.default_rng(1234)
GOAL_OFFSET = _RNG.uniform(-0.5, 0.5, size=14).astype(np.float32)
GOAL_SCALE = _RNG.uniform(0.3, 1.0, size=14).astype(np.float32)
DRIFT = _RNG.uniform(-0.15, 0.15, size=14).astype(np.float32)


def posture_from_param(u: float) -> np.ndarray:
    return GOAL_OFFSET + GOAL_SCALE * np.float32(u)


def synthetic_episode(u: float, v: float, steps: int = 60, image_hw: tuple[int, int] = (48, 64),
                      attrs: dict | None = None) -> Episode:
    """One synthetic episode whose actions follow from its images and proprio (v only moves the square's row)."""
    height, width = image_hw
    posture = posture_from_param(u)
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    scene = np.stack([120 * cols, 120 * rows, 60 * (rows + cols)], axis=-1).astype(np.float32)
    progress = np.arange(steps + 1, dtype=np.float32) / steps
    states = posture[None, :] + progress[:, None] * DRIFT[None, :]
    qpos, action = states[:-1], states[1:]
    progress = progress[:-1]
    high = np.broadcast_to(scene, (steps, height, width, 3)).astype(np.uint8)
    side = max(4, height // 4)
    top = int(round(v * (height - side)))
    left = int(round(u * (width - side)))
    high[:, top:top + side, left:left + side] = 255
    right = np.broadcast_to(scene + np.array([120 * u, 0, 60], np.float32), (steps, height, width, 3))
    left_wrist = scene[None] + (120 * progress)[:, None, None, None]
    images = {"cam_high": high, "cam_left_wrist": left_wrist.astype(np.uint8),
              "cam_right_wrist": right.astype(np.uint8)}
    return Episode(qpos=qpos.astype(np.float32), qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos),
                   action=action, images=images, attrs=dict(attrs or {}))


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
