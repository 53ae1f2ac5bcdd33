"""ALOHA / ACT episode files (HDF5): the one reader and writer used by demos, recorder and training.

Layout (as recorded by ALOHA/ACT): ``/observations/{qpos,qvel,effort}`` (T, 14), ``/action`` (T, 14),
``/observations/images/<cam>`` (T, H, W, 3) uint8 or, when compressed, (T, L) uint8 JPEG bytes
zero-padded to the longest frame with ``/compress_len`` (n_cams, T); root attrs ``sim`` and
``compress``, plus rollout attrs (``success``, ``success_score``, ``task_description``, ...).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import h5py
import numpy as np

STATE_KEYS = ("qpos", "qvel", "effort")
DEFAULT_JPEG_QUALITY = 50  # what ALOHA's recorder uses


class EpisodeFileError(ValueError):
    """An episode file that cannot be read as an ACT episode (missing, truncated, wrong layout)."""


@dataclass
class Episode:
    """One episode in memory: per-step arrays of length T and the root attributes."""

    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def num_steps(self) -> int:
        return int(self.qpos.shape[0])

    def validate(self, source: str = "episode") -> None:
        """Raise :class:`EpisodeFileError` if the arrays disagree in length or shape."""
        steps = self.num_steps
        for name in ("qpos", "qvel", "effort", "action"):
            arr = getattr(self, name)
            if arr.ndim != 2 or arr.shape[0] != steps:
                raise EpisodeFileError(f"{source}: {name} has shape {arr.shape}, expected ({steps}, D)")
        for cam, frames in self.images.items():
            if frames.ndim != 4 or frames.shape[0] != steps or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise EpisodeFileError(f"{source}: images/{cam} has shape {frames.shape} {frames.dtype}, "
                                       f"expected ({steps}, H, W, 3) uint8")


def _encode_jpeg(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    encoded = []
    for rgb in frames:
        ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise EpisodeFileError("JPEG encoding failed")
        encoded.append(buf.reshape(-1))
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    padded = np.zeros((len(encoded), int(lengths.max(initial=1))), dtype=np.uint8)
    for i, buf in enumerate(encoded):
        padded[i, :len(buf)] = buf
    return padded, lengths


def _decode_jpeg(padded: np.ndarray, lengths: np.ndarray, source: str) -> np.ndarray:
    frames = []
    for i, (row, n) in enumerate(zip(padded, lengths)):
        bgr = cv2.imdecode(np.asarray(row[:int(n)]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EpisodeFileError(f"{source}: JPEG frame {i} does not decode (file corrupt or truncated)")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def write_act_episode(path: str | os.PathLike[str], episode: Episode, *, compress: bool = False,
                      jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Path:
    """Write ``episode`` to ``path`` atomically (temporary file + rename).

    A crash mid-write leaves no half-written ``episode_<i>.hdf5`` behind, only a ``.tmp`` file that
    readers never pick up.
    """
    path = Path(path)
    episode.validate(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    cams = list(episode.images)
    with h5py.File(tmp, "w") as f:
        f.attrs["sim"] = bool(episode.attrs.get("sim", False))
        f.attrs["compress"] = bool(compress)
        for key, value in episode.attrs.items():
            if key in ("sim", "compress"):
                continue
            f.attrs[key] = value
        obs = f.create_group("observations")
        for key in STATE_KEYS:
            obs.create_dataset(key, data=np.asarray(getattr(episode, key), dtype=np.float32))
        f.create_dataset("action", data=np.asarray(episode.action, dtype=np.float32))
        # compress_len rows follow this camera order; keep it explicit rather than alphabetical
        f.attrs["camera_names"] = cams
        images = obs.create_group("images", track_order=True)
        if compress:
            compress_len = np.zeros((len(cams), episode.num_steps), dtype=np.int64)
            for c, cam in enumerate(cams):
                padded, compress_len[c] = _encode_jpeg(episode.images[cam], jpeg_quality)
                images.create_dataset(cam, data=padded)
            f.create_dataset("compress_len", data=compress_len)
        else:
            for cam in cams:
                frames = episode.images[cam]
                images.create_dataset(cam, data=frames, chunks=(1, *frames.shape[1:]))
    os.replace(tmp, path)
    return path


def open_episode_file(path: str | os.PathLike[str]) -> h5py.File:
    """Open an episode file read-only; a missing or unreadable file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise EpisodeFileError(f"{path}: episode file not found")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeFileError(f"{path}: not a readable HDF5 file ({exc}); the recording may have been "
                               f"interrupted: re-record or delete it") from None


def attr_value(value: Any) -> Any:
    """An HDF5 attribute as plain Python (bytes decoded, numpy scalars and arrays to Python values)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return [attr_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_act_episode(path: str | os.PathLike[str], *, cameras: list[str] | None = None,
                     load_images: bool = True) -> Episode:
    """Read an ACT episode; errors name the file and what is wrong with it.

    ``cameras`` selects image streams (default: all in the file); ``load_images=False`` reads only
    the low-dimensional arrays, which is what statistics and value targets need.
    """
    path = Path(path)
    source = str(path)
    with open_episode_file(path) as f:
        try:
            arrays = {key: np.asarray(f[f"observations/{key}"][()]) for key in STATE_KEYS}
            action = np.asarray(f["action"][()])
        except KeyError as exc:
            raise EpisodeFileError(f"{source}: missing dataset {exc} (expected the ACT layout "
                                   f"/observations/{{qpos,qvel,effort}} and /action)") from None
        except OSError as exc:
            raise EpisodeFileError(f"{source}: truncated or corrupt data ({exc})") from None
        attrs = {k: attr_value(v) for k, v in f.attrs.items()}
        images: dict[str, np.ndarray] = {}
        if load_images and "observations/images" in f:
            group = f["observations/images"]
            available = list(group.keys())
            wanted = cameras if cameras is not None else available
            missing = [c for c in wanted if c not in available]
            if missing:
                raise EpisodeFileError(f"{source}: cameras {missing} not in the file (it has {available})")
            compressed = bool(attrs.get("compress", False))
            row_order = [str(c) for c in attrs.get("camera_names", available)]
            try:
                compress_len = np.asarray(f["compress_len"][()]) if compressed else None
                for cam in wanted:
                    data = np.asarray(group[cam][()])
                    if compressed:
                        images[cam] = _decode_jpeg(data, compress_len[row_order.index(cam)], f"{source}:{cam}")
                    else:
                        images[cam] = data
            except KeyError:
                raise EpisodeFileError(f"{source}: compress=True but /compress_len is missing") from None
            except OSError as exc:
                raise EpisodeFileError(f"{source}: truncated or corrupt image data ({exc})") from None
    episode = Episode(qpos=arrays["qpos"], qvel=arrays["qvel"], effort=arrays["effort"], action=action,
                      images=images, attrs=attrs)
    episode.validate(source)
    return episode


def _camera_row_order(f: h5py.File) -> list[str]:
    available = list(f["observations/images"].keys()) if "observations/images" in f else []
    return [str(attr_value(c)) for c in f.attrs.get("camera_names", available)]


def check_act_images(f: h5py.File, cameras: Sequence[str], num_steps: int) -> None:
    """Check the image datasets of `cameras` from metadata only (presence, shapes, lengths, dtypes).

    Raises :class:`EpisodeFileError` naming the file; reads no image, so it is cheap enough to run on
    every episode before training. (A file cut short already fails to open: HDF5 checks its stored EOF.)
    """
    source = f.filename
    available = list(f["observations/images"].keys()) if "observations/images" in f else []
    missing = [c for c in cameras if c not in available]
    if missing:
        raise EpisodeFileError(f"{source}: cameras {missing} not in the file (it has {available})")
    compressed = bool(f.attrs.get("compress", False))
    if compressed:
        if "compress_len" not in f:
            raise EpisodeFileError(f"{source}: compress=True but /compress_len is missing")
        rows = _camera_row_order(f)
        shape = f["compress_len"].shape
        if len(shape) != 2 or shape[1] != num_steps or shape[0] < len(rows):
            raise EpisodeFileError(f"{source}: compress_len has shape {shape}, expected ({len(rows)}, {num_steps})")
    for cam in cameras:
        ds = f[f"observations/images/{cam}"]
        want = f"({num_steps}, L) uint8 JPEG bytes" if compressed else f"({num_steps}, H, W, 3) uint8"
        ok_shape = (ds.ndim == 2) if compressed else (ds.ndim == 4 and ds.shape[-1] == 3)
        if not ok_shape or ds.shape[0] != num_steps or ds.dtype != np.uint8:
            raise EpisodeFileError(f"{source}: images/{cam} has shape {ds.shape} {ds.dtype}, expected {want}")


def read_rows(ds: h5py.Dataset, steps: Sequence[int]) -> np.ndarray:
    """Rows `steps` (any order, repeats allowed) of a dataset, reading each distinct row once."""
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    if steps.size and (steps.min() < 0 or steps.max() >= ds.shape[0]):
        raise EpisodeFileError(f"{ds.file.filename}: steps {steps.tolist()} outside 0..{ds.shape[0] - 1}")
    unique, inverse = np.unique(steps, return_inverse=True)
    # one plain index per row: ~100x faster in h5py than a fancy-index list of rows
    rows = [np.asarray(ds[int(s)]) for s in unique]
    return np.stack(rows)[inverse] if rows else np.zeros((0, *ds.shape[1:]), ds.dtype)


def read_act_frames(source: str | os.PathLike[str] | h5py.File, steps: Sequence[int],
                    cameras: Sequence[str]) -> dict[str, np.ndarray]:
    """Frames of `steps` per camera, {cam: (len(steps), H, W, 3) uint8}, reading only those rows.

    `source` is a path or an already open file (the training datasets keep files open per process).
    JPEG-compressed files decode only the requested rows, using ``/compress_len``.
    """
    if not isinstance(source, h5py.File):
        with open_episode_file(source) as f:
            return read_act_frames(f, steps, cameras)
    f = source
    name = f.filename
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    available = list(f["observations/images"].keys()) if "observations/images" in f else []
    missing = [c for c in cameras if c not in available]
    if missing:
        raise EpisodeFileError(f"{name}: cameras {missing} not in the file (it has {available})")
    compressed = bool(f.attrs.get("compress", False))
    frames: dict[str, np.ndarray] = {}
    try:
        if compressed:
            if "compress_len" not in f:
                raise EpisodeFileError(f"{name}: compress=True but /compress_len is missing")
            rows = _camera_row_order(f)
            lengths = f["compress_len"]
        for cam in cameras:
            data = read_rows(f[f"observations/images/{cam}"], steps)
            if compressed:
                n = read_rows(lengths, [rows.index(cam)])[0][steps]
                frames[cam] = _decode_jpeg(data, n, f"{name}:{cam} steps {steps.tolist()}")
            else:
                frames[cam] = data
    except OSError as exc:
        raise EpisodeFileError(f"{name}: truncated or corrupt image data ({exc})") from None
    return frames


def list_episode_files(folder: str | os.PathLike[str]) -> list[Path]:
    """``episode_<i>.hdf5`` files of a folder in numeric order (temporary ``.tmp`` files excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EpisodeFileError(f"{folder}: episode folder not found")

    def index(p: Path) -> tuple[int, str]:
        stem = p.stem.rsplit("_", 1)[-1]
        return (int(stem), p.name) if stem.isdigit() else (1 << 62, p.name)

    return sorted(folder.glob("*.hdf5"), key=index)
