"""ALOHA / ACT episode files (HDF5): the one home of the format, for every writer and reader.

The recorder, the simulator's demo writer, the bag converter and the trainer all read and write episodes
through this module. It needs only numpy and h5py (OpenCV only for JPEG frames), never torch or rclpy.

Layout (as recorded by ALOHA/ACT): ``/observations/{qpos,qvel,effort}`` (T, 14), ``/action`` (T, 14),
``/observations/images/<cam>`` (T, H, W, 3) uint8 or, when compressed, (T, L) uint8 JPEG bytes
zero-padded to the longest frame with ``/compress_len`` (n_cams, T); root attrs ``sim`` and
``compress``. This product adds:

- ``/observations/frame_valid/<cam>`` (T,) bool: False where the camera had no fresh frame for that
  tick (the row then repeats the camera's previous frame, or is black before the first one);
- ``/observations/stamp_ns`` (T,) int64: the joint-state stamp of each row (streamed episodes);
- ``/rollout/chunk_values`` (N, 2) float64 rows of (step, predicted value) and ``/rollout/stage_history``
  (N, 2) int64 rows of (step, stage score 0-100), when known;
- root attrs ``complete`` (False while an episode is being streamed), ``task``, ``task_description``,
  ``success``, ``success_score`` (0..1), ``stage_score`` (0-100), ``policy_checkpoint``, ``seed``,
  ``camera_rate_hz`` / ``camera_rate_low`` / ``dropped_frames``.

Crash safety: :class:`EpisodeWriter` streams rows into ``episode_<i>.hdf5.partial`` (HDF5 SWMR, flushed
every few rows) and renames it to ``episode_<i>.hdf5`` only when finished, so readers that list
``*.hdf5`` never see a partial episode; :func:`recover_episode` turns one left by a crash into a
finished episode marked ``recovered=True``.

Scores after the fact (the operator scoring page): :func:`set_episode_score` writes ``stage_score``,
``success``, ``success_score``, ``stages_reached``, ``score_source="operator"``, ``scored_by``,
``scored_at`` and ``score_notes``; an automatic (simulator) score it replaces is kept once as
``sim_stage_score``, ``sim_success``, ``sim_success_score``, ``sim_stages_reached``, ``sim_score_source``.
Like every change to a finished episode it goes through :func:`update_episode_attrs`: a copy is
edited and renamed over the file, so a reader or a crash sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

STATE_KEYS = ("qpos", "qvel", "effort")
DEFAULT_JPEG_QUALITY = 50  # what ALOHA's recorder uses
PARTIAL_SUFFIX = ".partial"
EPISODE_NAME = re.compile(r"^episode_(\d+)\.hdf5(\.partial|\.tmp)?$")
JPEG_BYTES_PER_PIXEL = 0.5  # generous upper estimate of quality-50 JPEG of camera frames, for the disk check


class EpisodeFileError(ValueError):
    """An episode file that cannot be read as an ACT episode (missing, truncated, wrong layout)."""


class DiskSpaceError(OSError):
    """Not enough free disk space to start an episode."""


@dataclass
class Episode:
    """One episode in memory: per-step arrays of length T and the root attributes.

    ``frame_valid`` maps a camera to a (T,) bool mask (missing camera: every frame valid).
    """

    qpos: np.ndarray
    qvel: np.ndarray
    effort: np.ndarray
    action: np.ndarray
    images: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    frame_valid: dict[str, np.ndarray] = field(default_factory=dict)

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
        for cam, mask in self.frame_valid.items():
            if cam not in self.images or np.shape(mask) != (steps,):
                raise EpisodeFileError(f"{source}: frame_valid/{cam} has shape {np.shape(mask)}, expected "
                                       f"({steps},) for a camera of the episode")


def encode_jpeg(rgb: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> np.ndarray:
    """One HxWx3 RGB uint8 frame -> 1-D uint8 JPEG bytes."""
    import cv2  # only compressed episodes need OpenCV

    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise EpisodeFileError("JPEG encoding failed")
    return buf.reshape(-1)


def _encode_jpeg(frames: np.ndarray, quality: int) -> tuple[np.ndarray, np.ndarray]:
    encoded = [encode_jpeg(rgb, quality) for rgb in frames]
    lengths = np.array([len(b) for b in encoded], dtype=np.int64)
    padded = np.zeros((len(encoded), int(lengths.max(initial=1))), dtype=np.uint8)
    for i, buf in enumerate(encoded):
        padded[i, :len(buf)] = buf
    return padded, lengths


def _decode_jpeg(padded: np.ndarray, lengths: np.ndarray, source: str) -> np.ndarray:
    import cv2

    frames = []
    for i, (row, n) in enumerate(zip(padded, lengths)):
        bgr = cv2.imdecode(np.asarray(row[:int(n)]), cv2.IMREAD_COLOR)
        if bgr is None:
            raise EpisodeFileError(f"{source}: JPEG frame {i} does not decode (file corrupt or truncated)")
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), np.uint8)


def _write_attrs(f: h5py.File, attrs: Mapping[str, Any]) -> None:
    for key, value in attrs.items():
        if value is None:
            continue
        f.attrs[key] = value


def write_act_episode(path: str | os.PathLike[str], episode: Episode, *, compress: bool = False,
                      jpeg_quality: int = DEFAULT_JPEG_QUALITY) -> Path:
    """Write a whole in-memory ``episode`` to ``path`` atomically (temporary file + rename).

    A crash mid-write leaves no half-written ``episode_<i>.hdf5`` behind, only a ``.tmp`` file that
    readers never pick up. For recording live, use :class:`EpisodeWriter`, which streams.
    """
    path = Path(path)
    episode.validate(str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    cams = list(episode.images)
    with h5py.File(tmp, "w") as f:
        _write_attrs(f, {k: v for k, v in episode.attrs.items() if k not in ("sim", "compress", "complete")})
        f.attrs["sim"] = bool(episode.attrs.get("sim", False))
        f.attrs["compress"] = bool(compress)
        f.attrs["complete"] = True
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
                images.create_dataset(cam, data=frames, chunks=(1, *frames.shape[1:]) if len(frames) else None)
        if episode.frame_valid:
            valid = obs.create_group("frame_valid", track_order=True)
            for cam in cams:
                mask = episode.frame_valid.get(cam, np.ones(episode.num_steps, bool))
                valid.create_dataset(cam, data=np.asarray(mask, dtype=bool))
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
        if path.name.endswith(PARTIAL_SUFFIX):
            raise EpisodeFileError(f"{path}: an episode whose recording was interrupted; run "
                                   f"`rollout_recorder recover {path}` to finish it") from None
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


def is_complete(f: h5py.File) -> bool:
    """False for an episode still being written or cut short (attr ``complete``); files without it are complete."""
    return bool(attr_value(f.attrs.get("complete", True)))


def read_act_episode(path: str | os.PathLike[str], *, cameras: list[str] | None = None,
                     load_images: bool = True) -> Episode:
    """Read an ACT episode; errors name the file and what is wrong with it.

    ``cameras`` selects image streams (default: all in the file); ``load_images=False`` reads only
    the low-dimensional arrays, which is what statistics and value targets need.
    """
    with open_episode_file(path) as f:
        return _read_open_episode(f, str(path), cameras=cameras, load_images=load_images)


def _read_open_episode(f: h5py.File, source: str, *, cameras: list[str] | None, load_images: bool,
                       steps: int | None = None, allow_partial: bool = False) -> Episode:
    if not allow_partial and not is_complete(f):
        raise EpisodeFileError(f"{source}: episode marked complete=False (its recording did not finish); "
                               f"run `rollout_recorder recover` on its .partial file or delete it")
    rows = slice(None) if steps is None else slice(0, steps)
    try:
        arrays = {key: np.asarray(f[f"observations/{key}"][rows]) for key in STATE_KEYS}
        action = np.asarray(f["action"][rows])
    except KeyError as exc:
        raise EpisodeFileError(f"{source}: missing dataset {exc} (expected the ACT layout "
                               f"/observations/{{qpos,qvel,effort}} and /action)") from None
    except OSError as exc:
        raise EpisodeFileError(f"{source}: truncated or corrupt data ({exc})") from None
    attrs = {k: attr_value(v) for k, v in f.attrs.items()}
    images: dict[str, np.ndarray] = {}
    frame_valid: dict[str, np.ndarray] = {}
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
                data = np.asarray(group[cam][rows])
                if compressed:
                    lengths = compress_len[row_order.index(cam)][rows]
                    images[cam] = _decode_jpeg(data, lengths, f"{source}:{cam}")
                else:
                    images[cam] = data
                if f"observations/frame_valid/{cam}" in f:
                    frame_valid[cam] = np.asarray(f[f"observations/frame_valid/{cam}"][rows], dtype=bool)
        except KeyError:
            raise EpisodeFileError(f"{source}: compress=True but /compress_len is missing") from None
        except OSError as exc:
            raise EpisodeFileError(f"{source}: truncated or corrupt image data ({exc})") from None
    episode = Episode(qpos=arrays["qpos"], qvel=arrays["qvel"], effort=arrays["effort"], action=action,
                      images=images, attrs=attrs, frame_valid=frame_valid)
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


def episode_index(path: str | os.PathLike[str]) -> int | None:
    """i of ``episode_<i>.hdf5`` (also of its ``.partial`` / ``.tmp``), None for any other name."""
    match = EPISODE_NAME.match(Path(path).name)
    return int(match.group(1)) if match else None


def list_episode_files(folder: str | os.PathLike[str]) -> list[Path]:
    """Finished ``*.hdf5`` episode files of a folder in numeric order (``.partial`` and ``.tmp`` excluded)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EpisodeFileError(f"{folder}: episode folder not found")

    def index(p: Path) -> tuple[int, str]:
        stem = p.stem.rsplit("_", 1)[-1]
        return (int(stem), p.name) if stem.isdigit() else (1 << 62, p.name)

    return sorted(folder.glob("*.hdf5"), key=index)


def list_partial_episodes(folder: str | os.PathLike[str]) -> list[Path]:
    """Episodes whose recording was interrupted (``episode_<i>.hdf5.partial``), in numeric order."""
    folder = Path(folder)
    found = [p for p in folder.glob(f"episode_*.hdf5{PARTIAL_SUFFIX}") if episode_index(p) is not None]
    return sorted(found, key=lambda p: episode_index(p))


def next_episode_index(folder: str | os.PathLike[str]) -> int:
    """One past the highest episode number used in ``folder`` by any file, finished, partial or temporary.

    Numbering never reuses a number, so a new episode can never overwrite (or be confused with) an old one,
    even after episodes were deleted or discarded in between.
    """
    folder = Path(folder)
    used = [episode_index(p) for p in folder.iterdir()] if folder.is_dir() else []
    used = [i for i in used if i is not None]
    return max(used) + 1 if used else 0


def estimate_episode_bytes(max_steps: int, image_shapes: Mapping[str, tuple[int, int]], compress: bool,
                           state_dim: int = 14) -> int:
    """Upper estimate of an episode's size on disk (for the free-space check)."""
    pixels = sum(h * w for h, w in image_shapes.values())
    per_row = pixels * (JPEG_BYTES_PER_PIXEL if compress else 3) + 4 * state_dim * 4 + 64
    return int(max_steps * per_row * 1.1) + (1 << 20)


def check_free_space(folder: str | os.PathLike[str], needed_bytes: int, *, reserve_bytes: int = 1 << 30) -> int:
    """Raise :class:`DiskSpaceError` unless ``folder``'s disk has ``needed_bytes`` + ``reserve_bytes`` free.

    Returns the free bytes. The reserve keeps the rest of the system (logs, the OS) alive when recording
    fills a disk.
    """
    free = shutil.disk_usage(folder).free
    if free < needed_bytes + reserve_bytes:
        raise DiskSpaceError(f"{folder}: {free / 1e9:.2f} GB free, an episode needs up to {needed_bytes / 1e9:.2f} GB "
                             f"plus a {reserve_bytes / 1e9:.2f} GB reserve: free space or record elsewhere")
    return free


class EpisodeWriter:
    """Streams one episode to disk, row by row, as the robot runs.

    The episode is written to ``episode_<i>.hdf5.partial`` in HDF5 SWMR mode: chunked datasets that
    grow by one row per control tick, flushed every ``flush_every`` rows, so that a process killed at
    any moment leaves a file holding every row up to the last flush (:func:`recover_episode`).
    :meth:`finish` adds the closing attributes and renames the file to ``episode_<i>.hdf5``; a
    finished episode is never opened for writing again by this class.

    Args:
        folder: episode folder (created if needed).
        cameras: {camera: (height, width)} of the RGB frames of every row.
        attrs: root attributes known at the start (task, seed, policy checkpoint, sim, ...).
        compress: store JPEG frames (quality ``jpeg_quality``) as ALOHA does.
        max_steps: the longest the episode may get; sizes the free-space check.
        index: episode number; default :func:`next_episode_index`. An existing number is refused.
        flush_every: rows between flushes (what a crash can lose at most).
        reserve_bytes: free space to leave on the disk beyond the episode's estimate.
    """

    def __init__(self, folder: str | os.PathLike[str], cameras: Mapping[str, tuple[int, int]], *,
                 attrs: Mapping[str, Any] | None = None, compress: bool = False,
                 jpeg_quality: int = DEFAULT_JPEG_QUALITY, max_steps: int = 3000, index: int | None = None,
                 flush_every: int = 10, state_dim: int = 14, reserve_bytes: int = 1 << 30):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.cameras = list(cameras)
        self.image_shapes = {cam: (int(h), int(w)) for cam, (h, w) in cameras.items()}
        self.compress = bool(compress)
        self.jpeg_quality = int(jpeg_quality)
        self.flush_every = max(1, int(flush_every))
        self.state_dim = int(state_dim)
        check_free_space(self.folder, estimate_episode_bytes(max_steps, self.image_shapes, self.compress, state_dim),
                         reserve_bytes=reserve_bytes)
        self.index = next_episode_index(self.folder) if index is None else int(index)
        self.path = self.folder / f"episode_{self.index}.hdf5"
        self.partial_path = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        if self.path.exists() or self.partial_path.exists():
            raise FileExistsError(f"{self.path}: episode {self.index} already exists; episodes are never overwritten")
        # exclusive create: two recorders racing for one number cannot both win
        self._file = h5py.File(self.partial_path, "w-", libver="latest")
        self.num_steps = 0
        self.dropped = {cam: 0 for cam in self.cameras}
        self._last_frame: dict[str, np.ndarray] = {}
        self._closed = False
        f = self._file
        _write_attrs(f, dict(attrs or {}))
        f.attrs["complete"] = False
        f.attrs["sim"] = bool((attrs or {}).get("sim", False))
        f.attrs["compress"] = self.compress
        f.attrs["camera_names"] = self.cameras
        obs = f.create_group("observations")
        self._state = {key: obs.create_dataset(key, shape=(0, state_dim), maxshape=(None, state_dim),
                                               chunks=(64, state_dim), dtype=np.float32) for key in STATE_KEYS}
        self._action = f.create_dataset("action", shape=(0, state_dim), maxshape=(None, state_dim),
                                        chunks=(64, state_dim), dtype=np.float32)
        self._stamp = obs.create_dataset("stamp_ns", shape=(0,), maxshape=(None,), chunks=(256,), dtype=np.int64)
        images = obs.create_group("images", track_order=True)
        valid = obs.create_group("frame_valid", track_order=True)
        self._images: dict[str, h5py.Dataset] = {}
        self._valid: dict[str, h5py.Dataset] = {}
        for cam, (h, w) in self.image_shapes.items():
            if self.compress:
                self._images[cam] = images.create_dataset(cam, shape=(0, 0), maxshape=(None, None),
                                                          chunks=(1, max(1024, h * w // 4)), dtype=np.uint8)
            else:
                self._images[cam] = images.create_dataset(cam, shape=(0, h, w, 3), maxshape=(None, h, w, 3),
                                                          chunks=(1, h, w, 3), dtype=np.uint8)
            self._valid[cam] = valid.create_dataset(cam, shape=(0,), maxshape=(None,), chunks=(256,), dtype=bool)
        self._compress_len = (f.create_dataset("compress_len", shape=(len(self.cameras), 0),
                                               maxshape=(len(self.cameras), None), chunks=(len(self.cameras), 256),
                                               dtype=np.int64) if self.compress else None)
        rollout = f.create_group("rollout")
        self._chunk_values = rollout.create_dataset("chunk_values", shape=(0, 2), maxshape=(None, 2),
                                                    chunks=(64, 2), dtype=np.float64)
        self._stage_history = rollout.create_dataset("stage_history", shape=(0, 2), maxshape=(None, 2),
                                                     chunks=(64, 2), dtype=np.int64)
        # from here on every dataset only grows: readers (and a crash) always see a consistent file
        f.swmr_mode = True
        f.flush()

    def append(self, qpos: Sequence[float], action: Sequence[float], images: Mapping[str, np.ndarray | None], *,
               qvel: Sequence[float] | None = None, effort: Sequence[float] | None = None,
               stamp_ns: int = 0) -> int:
        """Add one control tick; returns its step index.

        ``images[cam]`` is the camera's frame for this tick, or None when the camera had no fresh frame:
        the row then repeats the previous frame (black before the first) and ``frame_valid`` says so.
        """
        if self._closed:
            raise EpisodeFileError(f"{self.partial_path}: episode already finished or discarded")
        t = self.num_steps
        rows = {"qpos": qpos, "qvel": qvel, "effort": effort}
        for key, ds in self._state.items():
            value = np.zeros(self.state_dim, np.float32) if rows[key] is None else np.asarray(rows[key], np.float32)
            if value.shape != (self.state_dim,):
                raise EpisodeFileError(f"{key}: got shape {value.shape}, expected ({self.state_dim},)")
            ds.resize(t + 1, axis=0)
            ds[t] = value
        action = np.asarray(action, np.float32)
        if action.shape != (self.state_dim,):
            raise EpisodeFileError(f"action: got shape {action.shape}, expected ({self.state_dim},)")
        self._action.resize(t + 1, axis=0)
        self._action[t] = action
        self._stamp.resize(t + 1, axis=0)
        self._stamp[t] = int(stamp_ns)
        for c, cam in enumerate(self.cameras):
            frame = images.get(cam)
            valid = frame is not None
            if valid:
                h, w = self.image_shapes[cam]
                if frame.shape != (h, w, 3) or frame.dtype != np.uint8:
                    raise EpisodeFileError(f"{cam}: got {frame.shape} {frame.dtype}, expected ({h}, {w}, 3) uint8 "
                                           f"(check the camera config)")
                self._last_frame[cam] = frame
            else:
                self.dropped[cam] += 1
                h, w = self.image_shapes[cam]
                frame = self._last_frame.get(cam)
                if frame is None:
                    frame = np.zeros((h, w, 3), np.uint8)
            ds = self._images[cam]
            if self.compress:
                data = encode_jpeg(frame, self.jpeg_quality)
                if len(data) > ds.shape[1]:
                    ds.resize(len(data), axis=1)
                ds.resize(t + 1, axis=0)
                row = np.zeros(ds.shape[1], np.uint8)
                row[:len(data)] = data
                ds[t] = row
                self._compress_len.resize(t + 1, axis=1)
                self._compress_len[c, t] = len(data)
            else:
                ds.resize(t + 1, axis=0)
                ds[t] = frame
            self._valid[cam].resize(t + 1, axis=0)
            self._valid[cam][t] = valid
        self.num_steps = t + 1
        if self.num_steps % self.flush_every == 0:
            self._file.flush()
        return t

    def add_chunk_value(self, step: int, value: float) -> None:
        """The value the policy predicted for the chunk that starts at ``step``."""
        n = self._chunk_values.shape[0]
        self._chunk_values.resize(n + 1, axis=0)
        self._chunk_values[n] = (float(step), float(value))

    def add_stage(self, step: int, score: int) -> None:
        """A stage score (0-100) reached at ``step``; only changes are kept."""
        n = self._stage_history.shape[0]
        if n and int(self._stage_history[n - 1, 1]) == int(score):
            return
        self._stage_history.resize(n + 1, axis=0)
        self._stage_history[n] = (int(step), int(score))

    def flush(self) -> None:
        self._file.flush()

    def finish(self, attrs: Mapping[str, Any] | None = None) -> Path:
        """Close the episode: closing attributes, ``complete=True``, rename to ``episode_<i>.hdf5``."""
        if self._closed:
            raise EpisodeFileError(f"{self.partial_path}: episode already finished or discarded")
        self._file.flush()
        self._file.close()
        self._closed = True
        # SWMR writers may not add attributes: reopen (same process, nothing else has it open) for the last ones
        with h5py.File(self.partial_path, "r+", libver="latest") as f:
            _write_attrs(f, dict(attrs or {}))
            f.attrs["dropped_frames"] = [self.dropped[c] for c in self.cameras]
            f.attrs["complete"] = True
        os.replace(self.partial_path, self.path)
        return self.path

    def discard(self) -> None:
        """Drop the episode (re-record): its file is deleted, its number is not reused by this writer."""
        if not self._closed:
            self._file.close()
            self._closed = True
        self.partial_path.unlink(missing_ok=True)

    def close_partial(self) -> Path:
        """Close without finishing (shutdown mid-episode): the ``.partial`` file stays, for :func:`recover_episode`."""
        if not self._closed:
            self._file.flush()
            self._file.close()
            self._closed = True
        return self.partial_path

    def __enter__(self) -> EpisodeWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._closed:
            self.close_partial() if exc_type is not None else self.finish()


def read_rollout_history(path: str | os.PathLike[str] | h5py.File) -> dict[str, np.ndarray]:
    """``chunk_values`` (N, 2) [step, value] and ``stage_history`` (N, 2) [step, score]; empty when absent."""
    if not isinstance(path, h5py.File):
        with open_episode_file(path) as f:
            return read_rollout_history(f)
    f = path
    out = {"chunk_values": np.zeros((0, 2), np.float64), "stage_history": np.zeros((0, 2), np.int64)}
    for key in out:
        if f"rollout/{key}" in f:
            out[key] = np.asarray(f[f"rollout/{key}"][()])
    return out


def _row_datasets(f: h5py.File) -> dict[str, int]:
    """Per-step datasets of an ACT file and the axis that counts steps."""
    found: dict[str, int] = {}

    def visit(name: str, obj: Any) -> None:
        if isinstance(obj, h5py.Dataset) and not name.startswith("rollout/"):
            found[name] = 1 if name == "compress_len" else 0

    f.visititems(visit)
    return found


def recover_episode(partial: str | os.PathLike[str], *, keep_partial: bool = False) -> Path:
    """Turn an interrupted ``episode_<i>.hdf5.partial`` into a finished ``episode_<i>.hdf5``.

    Every row that reached the disk in full (all per-step datasets) is copied byte for byte into a new
    file, marked ``complete=True``, ``recovered=True`` with ``recovered_steps``; the rollout history is
    kept. The new file appears under its final name only when written in full (temporary file + rename);
    the partial one is then deleted unless ``keep_partial``. An unreadable partial file raises
    :class:`EpisodeFileError` and stays as it is.
    """
    partial = Path(partial)
    if not partial.name.endswith(PARTIAL_SUFFIX):
        raise EpisodeFileError(f"{partial}: expected an episode_<i>.hdf5{PARTIAL_SUFFIX} file")
    target = partial.with_name(partial.name[:-len(PARTIAL_SUFFIX)])
    if target.exists():
        raise EpisodeFileError(f"{target}: already exists; not overwriting it with {partial.name}")
    try:
        # a writer killed in SWMR mode leaves the file flagged 'open for write': only a SWMR reader may open it
        src = h5py.File(partial, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise EpisodeFileError(f"{partial}: cannot be opened ({exc}); nothing to recover, delete it") from None
    tmp = target.with_name(target.name + ".tmp")
    with src:
        rows = _row_datasets(src)
        if not rows:
            raise EpisodeFileError(f"{partial}: holds no episode datasets; nothing to recover, delete it")
        steps = min(src[name].shape[axis] for name, axis in rows.items())
        with h5py.File(tmp, "w") as out:
            for key, value in src.attrs.items():
                out.attrs[key] = value
            for name in sorted(set(rows) | {n for n in ("rollout/chunk_values", "rollout/stage_history") if n in src}):
                ds = src[name]
                if name in rows:
                    index = (slice(None), slice(0, steps)) if rows[name] == 1 else slice(0, steps)
                    data = np.asarray(ds[index])
                else:
                    data = np.asarray(ds[()])
                chunks = tuple(max(1, min(c, n)) for c, n in zip(ds.chunks, data.shape)) if data.size and ds.chunks else None
                out.create_dataset(name, data=data, chunks=chunks)
            cams = [str(c) for c in attr_value(src.attrs.get("camera_names", []))]
            if "observations/frame_valid" in out:
                out.attrs["dropped_frames"] = [int((~np.asarray(out[f"observations/frame_valid/{c}"][()])).sum())
                                               for c in cams if f"observations/frame_valid/{c}" in out]
            out.attrs["complete"] = True
            out.attrs["recovered"] = True
            out.attrs["recovered_steps"] = steps
    os.replace(tmp, target)
    if not keep_partial:
        partial.unlink()
    return target


SCORE_ATTRS = ("stage_score", "success", "success_score", "stages_reached", "score_source")
SIM_SCORE_PREFIX = "sim_"  # the automatic score an operator overrode: sim_stage_score, sim_success, ...


def _copy_file_contents(src: Path, dst: Path) -> None:
    """Byte copy of ``src`` into a new file ``dst`` (exclusive create; the caller fsyncs it when edited).

    ``copy_file_range`` copies inside the kernel and, on XFS/btrfs, shares the blocks (reflink), so a
    large episode costs almost nothing; elsewhere (other filesystems, old kernels) a plain copy.
    """
    with open(src, "rb") as fin, open(dst, "xb") as fout:
        size = os.fstat(fin.fileno()).st_size
        try:
            copied = 0
            while copied < size:
                n = os.copy_file_range(fin.fileno(), fout.fileno(), size - copied)
                if n == 0:
                    break
                copied += n
            if copied != size:
                raise OSError(f"copy_file_range copied {copied} of {size} bytes")
        except (OSError, AttributeError):
            fin.seek(0)
            fout.seek(0)
            fout.truncate()
            shutil.copyfileobj(fin, fout, 1 << 20)


def update_episode_attrs(path: str | os.PathLike[str], attrs: Mapping[str, Any], *,
                         update: Callable[[dict[str, Any]], Mapping[str, Any]] | None = None) -> dict[str, Any]:
    """Set root attributes of a finished episode atomically; returns all its attributes afterwards.

    HDF5 has no transactions: editing attributes in place ("r+") rewrites object headers and the
    superblock in several writes, and a crash or power cut between them can leave an unreadable file
    (the whole episode lost), while a reader (the trainer) may have the file open. So the file is
    copied to ``<name>.tmp`` in the same folder, edited there, fsynced, checked by reading it back,
    and renamed over the original with ``os.replace`` (one atomic rename(2) on POSIX): readers and a
    crash see the old file or the new one, never a half-written one, and a reader that has the old
    one open keeps reading it. An exclusive ``flock`` on the folder serialises writers (two scoring
    pages, two tabs) so that no update is lost between reading the old attributes and the rename.

    ``update(old_attrs) -> dict`` may compute further attributes from the current ones under the lock;
    a value of None deletes that attribute. Episodes still being recorded (``.partial``,
    ``complete=False``) are refused.
    """
    path = Path(path)
    if not path.is_file():
        raise EpisodeFileError(f"{path}: episode file not found")
    if path.name.endswith((PARTIAL_SUFFIX, ".tmp")):
        raise EpisodeFileError(f"{path}: not a finished episode (still recording, or a temporary file)")
    dir_fd = os.open(path.parent, os.O_RDONLY)
    tmp = path.with_name(path.name + ".tmp")
    try:
        fcntl.flock(dir_fd, fcntl.LOCK_EX)
        with open_episode_file(path) as f:
            if not is_complete(f):
                raise EpisodeFileError(f"{path}: episode marked complete=False (still recording or interrupted); "
                                       f"finish or recover it before scoring")
            old = {k: attr_value(v) for k, v in f.attrs.items()}
        changes = dict(attrs)
        if update is not None:
            changes.update(update(dict(old)))
        stat = path.stat()
        tmp.unlink(missing_ok=True)  # left by a crash mid-update; we hold the folder's lock
        try:
            _copy_file_contents(path, tmp)
            os.chmod(tmp, stat.st_mode & 0o7777)
            with h5py.File(tmp, "r+") as f:
                for key, value in changes.items():
                    if value is None:
                        if key in f.attrs:
                            del f.attrs[key]
                    else:
                        f.attrs[key] = value
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            with h5py.File(tmp, "r") as f:  # the copy must read back before it may replace the episode
                after = {k: attr_value(v) for k, v in f.attrs.items()}
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.fsync(dir_fd)  # the rename itself survives a power cut
        return after
    finally:
        os.close(dir_fd)  # also releases the lock


def set_episode_score(path: str | os.PathLike[str], stage_score: float, *, scorer: str,
                      stages_reached: Sequence[str] = (), notes: str | None = None,
                      scored_at: datetime | None = None, source: str = "operator",
                      extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Score a finished episode (0-100 staged score) atomically; returns its attributes afterwards.

    Writes ``stage_score``, ``success`` (score 100), ``success_score`` (score / 100), ``stages_reached``,
    ``score_source``, ``scored_by``, ``scored_at`` (ISO 8601, UTC) and, when given, ``score_notes``.
    The first time an automatic (simulator) score is overridden, it is kept as ``sim_stage_score``,
    ``sim_success``, ... and never overwritten afterwards. The file's modification time before its
    first rewrite is kept as ``recorded_at`` (newest-first listings stay in recording order).
    ``extra`` adds attributes (e.g. ``task`` chosen by the operator). See :func:`update_episode_attrs`.
    """
    score = float(stage_score)
    if not 0.0 <= score <= 100.0:
        raise EpisodeFileError(f"{path}: stage score {stage_score} outside 0-100")
    scorer = str(scorer).strip()
    if not scorer:
        raise EpisodeFileError(f"{path}: a score needs the scorer's name")
    when = (scored_at or datetime.now(timezone.utc)).astimezone(timezone.utc)
    attrs: dict[str, Any] = {
        "stage_score": score,
        "success": score >= 100.0,
        "success_score": score / 100.0,
        "stages_reached": [str(s) for s in stages_reached] or [""],  # h5py cannot store an empty string list
        "score_source": str(source),
        "scored_by": scorer,
        "scored_at": when.isoformat(timespec="seconds"),
    }
    if notes is not None:
        attrs["score_notes"] = str(notes)
    attrs.update(extra or {})

    def keep_originals(old: dict[str, Any]) -> dict[str, Any]:
        kept: dict[str, Any] = {}
        if "recorded_at" not in old:
            mtime = Path(path).stat().st_mtime
            kept["recorded_at"] = datetime.fromtimestamp(mtime, timezone.utc).isoformat(timespec="seconds")
        automatic = "stage_score" in old and old.get("score_source", "sim") != "operator"
        if automatic and SIM_SCORE_PREFIX + "stage_score" not in old:
            kept.update({SIM_SCORE_PREFIX + k: old[k] for k in SCORE_ATTRS if k in old})
        return kept

    return update_episode_attrs(path, attrs, update=keep_originals)
