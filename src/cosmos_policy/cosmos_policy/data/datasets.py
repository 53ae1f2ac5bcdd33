"""Training datasets: episodes on disk -> the training batch items of docs/design/cosmos_policy_interfaces.md.

Sources:
- ACT HDF5 folders (demos, raw or JPEG-compressed images), read with `data.act_episode`;
- rollout folders: the same ACT files with root attrs `success`, `success_score` (0..1), `stage_score`
  (0..100) and `task_description`, written by the rollout recorder (live or from a bag); the value target's
  return is the score fraction (data.values);
- the release's preprocessed ALOHA layout, as its ALOHA data loader reads it (assumed, not verified
  against the downloaded files): `<root>/<task_name>/<split>/*.hdf5` with `/action` (T, 14),
  `/observations/qpos` (T, 14) and per camera either `/observations/images/<cam>` (T, H, W, 3) uint8
  or `/observations/video_paths/<cam>` (a path to an MP4, relative to the HDF5 file); no qvel/effort.
  Its task text is the `<task_name>` folder with underscores as spaces.

A file is read as the release layout when it has no `/observations/qvel`. The task text of an episode is
its `task_description` attr, else the task given on the command line, else its folder name (a split
folder named train/val/test is skipped), with underscores as spaces.

Only the low-dimensional arrays (actions, proprio, value targets) are held in memory; building the
dataset checks each file's structure and lengths from metadata without decoding an image. An item
reads just the frames it needs (steps t and t + K) from its file, resizes them to the network's image
size, then crops 90 % of the area at random and resizes back (`data.augment`). HDF5 files are opened
lazily per process (DataLoader workers reopen their own) and at most `MAX_OPEN_FILES` stay open.

Objective mix as the release: a demonstration is drawn with probability `demo_sampling_prob`
(default 0.5) and always trains the policy objective; otherwise a rollout is drawn and trains the world
model or the value function (`world_model_prob`, default 0.5, else value). Without rollouts the demos
stand in as (successful) rollouts, which gives the base run's 50/25/25; item i is then step i of the
demos and only the objective is drawn. With rollouts, the pool (demos vs rollouts) is drawn first, then
a step uniformly within the pool; with `success_sampling_prob` (the planning fine-tune: 0.5) a rollout
draw first picks the successful or the failed rollouts with that probability, then a step within them.
`objective_probs` (the older per-item draw, e.g. 0.5/0.25/0.25 for
every episode, failed rollouts renormalised over world model / value) is kept as an option.

Latent caching (`latent_versions` > 0, set by the trainer): the augmentation of an item is then a
function of (seed, sample, version) with version = U{0..latent_versions-1}, not of the pass, so a
frozen-VAE latent computed once per (sample, version) can be reused; `sample_key` names it.
Future images / proprio / value are at t + K clamped to the last step; the action chunk repeats the
last action past the end. Normalised actions and proprio are clipped to [-1, 1] (rollouts can leave
the demos' range).
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from cosmos_policy.config import LayoutConfig, NetworkConfig
from cosmos_policy.data.act_episode import (
    EpisodeFileError,
    attr_value,
    check_act_images,
    open_episode_file,
    read_act_episode,
    read_act_frames,
    read_rows,
)
from cosmos_policy.data.augment import (
    DEFAULT_AUGMENT_VARIANT,
    augment_images,
    camera_view,
    center_crop_resize,
    frames_to_tensor,
    resize_frames,
    to_model_range,
)
from cosmos_policy.data.statistics import compute_statistics, normalize
from cosmos_policy.data.text import TextEmbeddingCache
from cosmos_policy.data.values import episode_score_fraction, episode_success, value_targets
from cosmos_policy.objectives import POLICY, VALUE, WORLD_MODEL

log = logging.getLogger(__name__)

DEFAULT_OBJECTIVE_PROBS = (0.5, 0.25, 0.25)  # what the release mix gives on demos alone
DEFAULT_DEMO_SAMPLING_PROB = 0.5
DEFAULT_WORLD_MODEL_PROB = 0.5
SPLIT_FOLDERS = ("train", "val", "test")
EPISODE_SUFFIXES = (".hdf5", ".h5")
MAX_OPEN_FILES = 64


class OpenFiles:
    """This process's read-only HDF5 handles, least recently used closed beyond `max_open`.

    HDF5 handles must not cross a fork: a DataLoader worker sees a new pid and opens its own files.
    """

    def __init__(self, max_open: int = MAX_OPEN_FILES):
        if max_open < 1:
            raise ValueError(f"max_open={max_open}: expected >= 1")
        self.max_open = max_open
        self._pid = os.getpid()
        self._files: OrderedDict[str, h5py.File] = OrderedDict()

    def get(self, path: str | Path) -> h5py.File:
        """The open file at `path`, opened now if needed."""
        if self._pid != os.getpid():
            # forked: the inherited handles belong to the parent's HDF5 state; forget them, never use them
            self._files = OrderedDict()
            self._pid = os.getpid()
        key = str(path)
        f = self._files.get(key)
        if f is not None and f.id.valid:
            self._files.move_to_end(key)
            return f
        f = open_episode_file(key)
        self._files[key] = f
        while len(self._files) > self.max_open:
            _, oldest = self._files.popitem(last=False)
            oldest.close()
        return f

    def __len__(self) -> int:
        return len(self._files) if self._pid == os.getpid() else 0

    def close(self) -> None:
        """Close every handle this process opened."""
        if self._pid == os.getpid():
            for f in self._files.values():
                f.close()
        self._files = OrderedDict()

    def __getstate__(self) -> dict[str, Any]:
        return {"max_open": self.max_open}  # handles never travel to another process

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["max_open"])


class FrameSource(Protocol):
    """Reads the camera frames of some steps of one episode, at the recorded size."""

    def read(self, steps: Sequence[int], files: OpenFiles | None = None) -> dict[str, np.ndarray]:
        """{cam: (len(steps), H, W, 3) uint8}; `files` keeps HDF5 files open between calls."""
        ...


@dataclass(frozen=True)
class ActFrames:
    """Frames of an ACT file (raw or JPEG-compressed), read row by row."""

    path: str
    cameras: tuple[str, ...]

    def read(self, steps: Sequence[int], files: OpenFiles | None = None) -> dict[str, np.ndarray]:
        if files is None:
            return read_act_frames(self.path, steps, self.cameras)
        return read_act_frames(files.get(self.path), steps, self.cameras)


@dataclass(frozen=True)
class ReleaseFrames:
    """Frames of a release-layout file: per camera an HDF5 image dataset or an MP4 next to the file."""

    path: str
    cameras: tuple[str, ...]
    videos: dict[str, str] = field(default_factory=dict)

    def read(self, steps: Sequence[int], files: OpenFiles | None = None) -> dict[str, np.ndarray]:
        frames: dict[str, np.ndarray] = {}
        stored = [c for c in self.cameras if c not in self.videos]
        if stored:
            f = files.get(self.path) if files is not None else open_episode_file(self.path)
            try:
                for cam in stored:
                    frames[cam] = read_rows(f[f"observations/images/{cam}"], steps)
            except OSError as exc:
                raise EpisodeFileError(f"{self.path}: truncated or corrupt image data ({exc})") from None
            finally:
                if files is None:
                    f.close()
        for cam, video in self.videos.items():
            frames[cam] = read_video_frames(Path(video), steps)
        return {cam: frames[cam] for cam in self.cameras}


def read_video_frames(path: Path, steps: Sequence[int]) -> np.ndarray:
    """RGB frames (len(steps), H, W, 3) uint8 of an MP4, seeking to each distinct step."""
    steps = np.asarray(steps, dtype=np.int64).reshape(-1)
    unique, inverse = np.unique(steps, return_inverse=True)
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise EpisodeFileError(f"{path}: video file missing or unreadable")
    frames, position = [], 0
    try:
        for step in unique.tolist():
            if step != position:
                capture.set(cv2.CAP_PROP_POS_FRAMES, step)
            ok, bgr = capture.read()
            if not ok:
                raise EpisodeFileError(f"{path}: cannot read frame {step} (video shorter than the episode?)")
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
            position = step + 1
    finally:
        capture.release()
    return np.stack(frames)[inverse] if frames else np.zeros((0, 0, 0, 3), np.uint8)


@dataclass(frozen=True)
class SampleSpec:
    """What one training item holds: cameras in layout order, image size, chunk, dims, gamma."""

    cameras: tuple[str, ...]
    image_hw: tuple[int, int]
    action_chunk: int
    action_dim: int
    proprio_dim: int
    value_gamma: float
    text_max_tokens: int
    text_dim: int
    camera_crops: tuple[tuple[str, tuple[float, float, float, float]], ...] = ()  # the layout's regions of interest

    @classmethod
    def from_configs(cls, layout: LayoutConfig, network: NetworkConfig) -> SampleSpec:
        return cls(cameras=tuple(layout.cameras), image_hw=(network.image_size_px, network.image_size_px),
                   action_chunk=layout.action_chunk, action_dim=layout.action_dim,
                   proprio_dim=layout.proprio_dim, value_gamma=layout.value_gamma,
                   text_max_tokens=network.text_max_tokens, text_dim=network.text_embed_dim,
                   camera_crops=layout.camera_crops)


@dataclass
class LoadedEpisode:
    """One episode: low-dimensional arrays in memory (robot units), frames read on demand."""

    source: str
    task: str
    is_demo: bool
    score: float
    frames: FrameSource
    proprio: np.ndarray
    actions: np.ndarray
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # the recorder's `success` attribute (None: not recorded, the score decides); see `is_success`
    success: bool | None = None

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def policy_eligible(self) -> bool:
        """Demos and fully successful rollouts may be imitated."""
        return self.is_demo or self.score >= 1.0

    @property
    def is_success(self) -> bool:
        """The class of a rollout for success / failure sampling: the recorded verdict, else a full score."""
        if self.is_demo:
            return True
        return bool(self.success) if self.success is not None else self.score >= 1.0


@dataclass
class EpisodeRecord:
    """What one episode file holds, images not read: (T, d) arrays, root attrs and a frame reader."""

    actions: np.ndarray
    proprio: np.ndarray
    attrs: dict[str, Any]
    frames: FrameSource


def find_episode_files(root: str | Path, split: str | None = "train") -> list[Path]:
    """HDF5 episode files under root (recursive, sorted); with split folders, only those of `split`."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: episode folder not found (expected a folder of episode_<i>.hdf5 files)")
    files = sorted(p for p in root.rglob("*") if p.suffix in EPISODE_SUFFIXES and p.is_file())
    if split is not None:
        in_split = [p for p in files if split in p.relative_to(root).parts[:-1]]
        has_splits = any(part in SPLIT_FOLDERS for p in files for part in p.relative_to(root).parts[:-1])
        if has_splits:
            files = in_split
    return files


def task_from_path(path: Path) -> str:
    """Task text from the episode's folder name (skipping a train/val/test split folder)."""
    folder = path.parent
    if folder.name in SPLIT_FOLDERS:
        folder = folder.parent
    return folder.name.replace("_", " ").strip()


def is_release_layout(path: str | Path) -> bool:
    """True for the release's preprocessed files (no /observations/qvel), False for ACT files."""
    with open_episode_file(path) as f:
        return "observations/qvel" not in f


def _release_record(path: Path, cameras: Sequence[str]) -> EpisodeRecord:
    with open_episode_file(path) as f:
        try:
            actions = np.asarray(f["action"][()], dtype=np.float32)
            proprio = np.asarray(f["observations/qpos"][()], dtype=np.float32)
            attrs = {k: attr_value(v) for k, v in f.attrs.items()}
            videos: dict[str, str] = {}
            for cam in cameras:
                if f"observations/images/{cam}" in f:
                    ds = f[f"observations/images/{cam}"]
                    if ds.ndim != 4 or ds.shape[0] != actions.shape[0] or ds.shape[-1] != 3 or ds.dtype != np.uint8:
                        raise EpisodeFileError(f"{path}: camera {cam} has {ds.shape} {ds.dtype}, expected "
                                               f"({actions.shape[0]}, H, W, 3) uint8")
                elif f"observations/video_paths/{cam}" in f:
                    rel = f[f"observations/video_paths/{cam}"][()]
                    rel = rel.decode() if isinstance(rel, bytes) else str(rel)
                    videos[cam] = str(_check_video(path.parent / rel, actions.shape[0]))
                else:
                    raise EpisodeFileError(f"{path}: camera {cam} has neither observations/images/{cam} nor "
                                           f"observations/video_paths/{cam} (check the layout's camera names)")
        except KeyError as exc:
            raise EpisodeFileError(f"{path}: missing dataset {exc} (expected /action and /observations/qpos)") from None
        except OSError as exc:
            raise EpisodeFileError(f"{path}: truncated or corrupt data ({exc})") from None
    return EpisodeRecord(actions, proprio, attrs, ReleaseFrames(str(path), tuple(cameras), videos))


def _check_video(path: Path, num_steps: int) -> Path:
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise EpisodeFileError(f"{path}: video file missing or unreadable")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    finally:
        capture.release()
    if count != num_steps:
        raise EpisodeFileError(f"{path}: video has {count} frames, expected {num_steps} (one per step)")
    return path


def read_episode_record(path: str | Path, cameras: Sequence[str] = ()) -> EpisodeRecord:
    """Low-dimensional arrays, attrs and a lazy frame reader of an episode file of either layout.

    The image datasets of `cameras` are checked from metadata (presence, shape, length, storage);
    no image is read.
    """
    path = Path(path)
    if is_release_layout(path):
        return _release_record(path, cameras)
    episode = read_act_episode(path, load_images=False)
    if cameras:
        with open_episode_file(path) as f:
            try:
                check_act_images(f, cameras, episode.num_steps)
            except OSError as exc:
                raise EpisodeFileError(f"{path}: truncated or corrupt data ({exc})") from None
    return EpisodeRecord(episode.action.astype(np.float32), episode.qpos.astype(np.float32), episode.attrs,
                         ActFrames(str(path), tuple(cameras)))


def read_low_dim(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(actions, proprio) of an episode file of either layout, without images."""
    record = read_episode_record(path)
    return record.actions, record.proprio


def load_episode(path: str | Path, spec: SampleSpec, is_demo: bool, task: str | None = None) -> LoadedEpisode:
    """Read one episode file's low-dimensional arrays and check its images (ACT or release layout)."""
    path = Path(path)
    record = read_episode_record(path, spec.cameras)
    actions, proprio, source = record.actions, record.proprio, str(path)
    steps = actions.shape[0]
    if steps == 0:
        raise EpisodeFileError(f"{source}: episode has no steps")
    if actions.ndim != 2 or actions.shape[1] != spec.action_dim:
        raise EpisodeFileError(f"{source}: action has shape {actions.shape}, expected (T, {spec.action_dim}) "
                               f"(check --layout)")
    if proprio.shape != (steps, spec.proprio_dim):
        raise EpisodeFileError(f"{source}: qpos has shape {proprio.shape}, expected ({steps}, {spec.proprio_dim})")
    task_text = str(record.attrs.get("task_description") or task or task_from_path(path))
    score = episode_score_fraction(record.attrs, is_demo=is_demo, source=source)
    return LoadedEpisode(source=source, task=task_text, is_demo=is_demo, score=score, frames=record.frames,
                         proprio=proprio, actions=actions, values=value_targets(steps, score, spec.value_gamma),
                         success=episode_success(record.attrs, is_demo=is_demo, score=score))


def load_episodes(paths: Iterable[str | Path], spec: SampleSpec, is_demo: bool, task: str | None = None,
                  skip_bad_episodes: bool = False, desc: str = "loading episodes") -> list[LoadedEpisode]:
    """Load many episode files with a progress bar; bad files raise, or are logged and skipped."""
    episodes, skipped = [], []
    for path in tqdm(list(paths), desc=desc, unit="ep", leave=False):
        try:
            episodes.append(load_episode(path, spec, is_demo=is_demo, task=task))
        except EpisodeFileError as exc:
            if not skip_bad_episodes:
                raise
            skipped.append(str(path))
            log.warning("skipping bad episode: %s", exc)
    if skipped:
        log.warning("skipped %d bad episode file(s) of %d", len(skipped), len(skipped) + len(episodes))
    return episodes


def compute_dataset_statistics(paths: Iterable[str | Path], skip_bad_episodes: bool = False) -> dict:
    """Statistics (release key style) of actions and proprio over episode files."""
    actions, proprio = [], []
    for path in tqdm(list(paths), desc="statistics", unit="ep", leave=False):
        try:
            a, p = read_low_dim(path)
        except EpisodeFileError as exc:
            if not skip_bad_episodes:
                raise
            log.warning("skipping bad episode: %s", exc)
            continue
        actions.append(a)
        proprio.append(p)
    return compute_statistics({"actions": actions, "proprio": proprio})


def sample_objective(rng: np.random.Generator, probs: Sequence[float], policy_eligible: bool) -> int:
    """Draw an objective id; episodes that may not be imitated never get the policy objective."""
    p = np.asarray(probs, dtype=np.float64)
    if not policy_eligible:
        p = p.copy()
        p[POLICY] = 0.0
        if p.sum() <= 0:
            p[WORLD_MODEL] = p[VALUE] = 0.5
    return int(rng.choice(3, p=p / p.sum()))


class EpisodeDataset(Dataset):
    """Items of the training batch (see the module docstring) over demos and optional rollouts."""

    def __init__(self, demos: Sequence[LoadedEpisode], spec: SampleSpec, stats: dict,
                 text_cache: TextEmbeddingCache, rollouts: Sequence[LoadedEpisode] = (),
                 objective_probs: Sequence[float] | None = None,
                 demo_sampling_prob: float | None = None, augment: bool = True, seed: int = 0,
                 world_model_prob: float = DEFAULT_WORLD_MODEL_PROB,
                 augment_variant: str = DEFAULT_AUGMENT_VARIANT, sample_stride: int = 1,
                 success_sampling_prob: float | None = None, demos_as_successes: bool = False,
                 start_prob: float = 0.0, start_steps: int = 50):
        if not demos and not rollouts:
            raise ValueError("dataset: no episodes (check --data / --rollouts)")
        if objective_probs is None:
            self.release_mix = True
            probs = np.asarray(DEFAULT_OBJECTIVE_PROBS, dtype=np.float64)
        else:
            self.release_mix = False
            probs = np.asarray(objective_probs, dtype=np.float64)
            if probs.shape != (3,) or np.any(probs < 0) or probs.sum() <= 0:
                raise ValueError(f"objective_probs={list(objective_probs)}: expected 3 non-negative weights "
                                 f"(policy, world model, value)")
        self.objective_probs = probs / probs.sum()
        if not 0.0 <= world_model_prob <= 1.0:
            raise ValueError(f"world_model_prob={world_model_prob}: expected a probability in [0, 1]")
        self.world_model_prob = float(world_model_prob)
        if sample_stride < 1:
            raise ValueError(f"sample_stride={sample_stride}: expected >= 1")
        self.sample_stride = int(sample_stride)
        # Not the release (0). The share of demo draws taken from the first `start_steps` steps of an episode:
        # there every arm stands at its start pose, so the scene is the only cue for where to go. Drawn
        # uniformly they are ~1 in 9 samples, and a policy that copies its joint state elsewhere never learns
        # to look (docs/results.md, "It copies its own state").
        if not 0.0 <= start_prob <= 1.0:
            raise ValueError(f"start_prob={start_prob}: expected a probability in [0, 1]")
        if start_steps < 1:
            raise ValueError(f"start_steps={start_steps}: expected >= 1")
        self.start_prob, self.start_steps = float(start_prob), int(start_steps)
        self.spec = spec
        self.demos = list(demos)
        self.rollouts = list(rollouts)
        self.augment = augment
        self.augment_variant = augment_variant
        self.seed = seed
        self.epoch = 0
        # the trainer's latent cache asks for a per-(episode, step, version) key in each item
        self.return_sample_key = False
        # > 0: augmentations are a function of (sample, version) so that latents can be cached
        self.latent_versions = 0
        # keys whose latents the trainer already holds: their items carry zero images (not read)
        self.cached_flags = None  # uint8 tensor over keys (shared memory): 1 = the trainer holds its latents
        # set by the trainer (CPU): encodes each item's clean latents where the item is built (a worker)
        self.encoder = None
        self.text_cache = text_cache
        self.files = OpenFiles()
        for ep in self.demos + self.rollouts:
            text_cache.get(ep.task)
        self.action_lo, self.action_hi = stats["actions_min"], stats["actions_max"]
        self.proprio_lo, self.proprio_hi = stats["proprio_min"], stats["proprio_max"]
        if len(self.action_lo) != spec.action_dim or len(self.proprio_lo) != spec.proprio_dim:
            raise ValueError(f"statistics: actions {len(self.action_lo)}-D / proprio {len(self.proprio_lo)}-D, "
                             f"the layout needs {spec.action_dim} / {spec.proprio_dim} (stats from another dataset?)")
        # items are the steps t = 0, s, 2s, ... of each episode (s = sample_stride, 1: every step)
        self._demo_offsets = np.cumsum([0] + [self._items_of(e) for e in self.demos])
        self._rollout_offsets = np.cumsum([0] + [self._items_of(e) for e in self.rollouts])
        if demo_sampling_prob is None:
            if self.release_mix:
                demo_sampling_prob = DEFAULT_DEMO_SAMPLING_PROB
            elif self.rollouts and self.demos:  # the older mix: proportional to the number of steps
                demo_sampling_prob = self._demo_offsets[-1] / (self._demo_offsets[-1] + self._rollout_offsets[-1])
            else:
                demo_sampling_prob = 1.0
        if not 0.0 <= demo_sampling_prob <= 1.0:
            raise ValueError(f"demo_sampling_prob={demo_sampling_prob}: expected a probability in [0, 1]")
        if not self.demos:
            demo_sampling_prob = 0.0
        elif not self.rollouts and not self.release_mix:
            demo_sampling_prob = 1.0
        self.demo_sampling_prob = float(demo_sampling_prob)
        self.demos_as_successes = False  # set below when the demos do stand in
        self._init_outcome_classes(success_sampling_prob, demos_as_successes)

    def _init_outcome_classes(self, success_sampling_prob: float | None, demos_as_successes: bool = False) -> None:
        """Success / failure classes of the rollouts, drawn with `success_sampling_prob` (None: by step count).

        The release's planning fine-tune draws successful and failed rollouts 50/50 whatever their counts, so
        that a policy that mostly fails still shows the value function what success looks like. A class
        with no episode cannot be drawn: the other one is, with a warning (the value then never sees the
        missing outcome), unless `demos_as_successes`: then, with no successful rollout, the demonstrations
        are the success class (world model and value, as in the base run), besides their policy draws.
        """
        self.success_sampling_prob = None if success_sampling_prob is None else float(success_sampling_prob)
        self._success_draw_prob: float | None = None
        # outcome -> (episodes of the class as indices into `rollouts`, or into `demos` when they stand in,
        # their item offsets)
        self._outcome_pools: dict[bool, tuple[np.ndarray, np.ndarray]] = {}
        if success_sampling_prob is None:
            return
        if not 0.0 <= success_sampling_prob <= 1.0:
            raise ValueError(f"success_sampling_prob={success_sampling_prob}: expected a probability in [0, 1]")
        if not self.rollouts:
            return
        for outcome in (True, False):
            members = np.array([i for i, e in enumerate(self.rollouts) if e.is_success == outcome], dtype=np.int64)
            offsets = np.cumsum([0] + [self._items_of(self.rollouts[i]) for i in members])
            self._outcome_pools[outcome] = (members, offsets)
        draw = float(success_sampling_prob)
        n_success, n_failure = (len(self._outcome_pools[o][0]) for o in (True, False))
        if n_success == 0 and demos_as_successes and self.demos and draw > 0.0:
            log.warning("rollouts: all %d failed, none succeeded: the %d demonstrations stand in as the "
                        "successful rollouts (--demos-as-successes)", n_failure, len(self.demos))
            self.demos_as_successes = True
            self._outcome_pools[True] = (np.arange(len(self.demos), dtype=np.int64), self._demo_offsets)
            n_success = len(self.demos)
        if n_failure == 0 and draw < 1.0:
            log.warning("rollouts: all %d succeeded, none failed; the success/failure mix (%.2f/%.2f) cannot "
                        "hold: drawing successful rollouts only (the value never sees a failure; add failed "
                        "rollouts)", n_success, draw, 1.0 - draw)
            draw = 1.0
        elif n_success == 0 and draw > 0.0:
            log.warning("rollouts: all %d failed, none succeeded; the success/failure mix (%.2f/%.2f) cannot "
                        "hold: drawing failed rollouts only (the value never sees a success; add successful "
                        "rollouts)", n_failure, draw, 1.0 - draw)
            draw = 0.0
        self._success_draw_prob = draw

    @property
    def rollout_class_counts(self) -> tuple[int, int]:
        """(successful, failed) rollout episodes."""
        successes = sum(e.is_success for e in self.rollouts)
        return successes, len(self.rollouts) - successes

    @property
    def episodes(self) -> list[LoadedEpisode]:
        return self.demos + self.rollouts

    @property
    def tasks(self) -> list[str]:
        return sorted({e.task for e in self.episodes})

    def __len__(self) -> int:
        return int(self._demo_offsets[-1] + self._rollout_offsets[-1])

    def set_epoch(self, epoch: int) -> None:
        """Vary objectives, pools and crops from one pass to the next."""
        self.epoch = int(epoch)

    def _items_of(self, episode: LoadedEpisode) -> int:
        return -(-episode.num_steps // self.sample_stride)

    def _locate(self, offsets: np.ndarray, step: int) -> tuple[int, int]:
        episode = int(np.searchsorted(offsets, step, side="right") - 1)
        return episode, int(step - offsets[episode]) * self.sample_stride

    def _start_draw(self, rng: np.random.Generator) -> tuple[LoadedEpisode, int, int]:
        """A demo step among the first `start_steps` of a random demo: (episode, step t, sample key), the key
        of the same sample as the uniform draw would give it (so cached latents serve both)."""
        ep_idx = int(rng.integers(0, len(self.demos)))
        first = int(self._demo_offsets[ep_idx])
        count = min(int(self._demo_offsets[ep_idx + 1]) - first, -(-self.start_steps // self.sample_stride))
        local = int(rng.integers(0, max(1, count)))
        return self.demos[ep_idx], local * self.sample_stride, first + local

    def plan(self, index: int) -> tuple[LoadedEpisode, int, int, np.random.Generator]:
        """(episode, step t, objective, rng) of an item, without touching images.

        Indices past len(self) address later passes: index = pass * len + i (the trainer's sampler).
        """
        episode, t, objective, rng, _ = self._plan(index)
        return episode, t, objective, rng

    def _plan(self, index: int) -> tuple[LoadedEpisode, int, int, np.random.Generator, int]:
        if index < 0:
            raise IndexError(f"item {index}: expected a non-negative index")
        n = len(self)
        passes, index = divmod(int(index), n)
        rng = np.random.default_rng([self.seed, self.epoch + passes, index])
        if not self.rollouts:
            ep_idx, t = self._locate(self._demo_offsets, index)
            episode, key = self.demos[ep_idx], index
            # the demos are also the rollouts: the demo / rollout draw only decides the objective
            use_demo = rng.random() < self.demo_sampling_prob
        else:
            use_demo = bool(self.demos) and rng.random() < self.demo_sampling_prob
            if not use_demo and self._success_draw_prob is not None:
                # class first (success / failure), then a step uniformly within the class
                success = bool(rng.random() < self._success_draw_prob)
                members, offsets = self._outcome_pools[success]
                within, t = self._locate(offsets, int(rng.integers(0, offsets[-1])))
                ep_idx = int(members[within])
                if success and self.demos_as_successes:  # a demo as a rollout: the same sample key as a demo's
                    episode, key = self.demos[ep_idx], int(self._demo_offsets[ep_idx]) + t // self.sample_stride
                else:
                    episode = self.rollouts[ep_idx]
                    key = int(self._demo_offsets[-1] + self._rollout_offsets[ep_idx]) + t // self.sample_stride
            else:
                pool, offsets = (self.demos, self._demo_offsets) if use_demo else (self.rollouts, self._rollout_offsets)
                step = int(rng.integers(0, offsets[-1]))
                ep_idx, t = self._locate(offsets, step)
                episode, key = pool[ep_idx], step + (0 if use_demo else int(self._demo_offsets[-1]))
        if use_demo and self.start_prob > 0.0 and rng.random() < self.start_prob:
            episode, t, key = self._start_draw(rng)
        if not self.release_mix:
            objective = sample_objective(rng, self.objective_probs, episode.policy_eligible)
        elif use_demo:
            objective = POLICY
        else:
            objective = WORLD_MODEL if rng.random() < self.world_model_prob else VALUE
        return episode, t, objective, rng, key

    def _images(self, episode: LoadedEpisode, steps: Sequence[int], augment_seed: int) -> torch.Tensor:
        read = episode.frames.read(steps, self.files)
        crops = dict(self.spec.camera_crops)
        frames = np.stack([camera_view(read[cam], crops.get(cam), self.spec.image_hw) for cam in self.spec.cameras],
                          axis=1)
        images = frames_to_tensor(frames)  # (len(steps), n_cams, 3, H, W)
        if self.augment:
            # one draw for the whole sample: current and future frames of every camera
            generator = torch.Generator().manual_seed(augment_seed)
            images = augment_images(images, self.spec.image_hw, generator=generator, variant=self.augment_variant)
        else:
            images = center_crop_resize(images, self.spec.image_hw)
        return to_model_range(images).clamp(-1.0, 1.0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode, t, objective, rng, key = self._plan(index)
        last = episode.num_steps - 1
        future = min(t + self.spec.action_chunk, last)
        chunk_steps = np.minimum(np.arange(t, t + self.spec.action_chunk), last)
        if self.latent_versions > 0:
            version = int(rng.integers(0, self.latent_versions))
            key = key * self.latent_versions + version
            augment_seed = int(np.random.default_rng([self.seed, 7919, key]).integers(0, 2 ** 62))
        else:
            augment_seed = int(rng.integers(0, 2 ** 62))
        cached = self.cached_flags is not None and bool(self.cached_flags[key])
        if cached:
            n_cams, (h, w) = len(self.spec.cameras), self.spec.image_hw
            images = torch.zeros(2, n_cams, 3, h, w)  # latents already cached: the frames are not read
        else:
            images = self._images(episode, (t, future), augment_seed)
        actions = normalize(episode.actions[chunk_steps], self.action_lo, self.action_hi)
        proprio = normalize(episode.proprio[[t, future]], self.proprio_lo, self.proprio_hi)
        embedding, mask = self.text_cache.get(episode.task)
        item = {
            "images": images[0],
            "future_images": images[1],
            "proprio": torch.from_numpy(np.clip(proprio[0], -1.0, 1.0)),
            "future_proprio": torch.from_numpy(np.clip(proprio[1], -1.0, 1.0)),
            "actions": torch.from_numpy(np.clip(actions, -1.0, 1.0)),
            "value": torch.tensor(float(episode.values[future]), dtype=torch.float32),
            "text_embeddings": embedding.float(),
            "text_mask": mask.bool(),
            "objective": torch.tensor(objective, dtype=torch.int64),
        }
        if self.return_sample_key:
            item["sample_key"] = torch.tensor(key, dtype=torch.int64)
        if self.encoder is not None:
            item["latents"] = self._latents_placeholder() if cached else self.encoder(item).float()
            item["has_latents"] = torch.tensor(not cached)
            del item["images"], item["future_images"]
        return item

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """The items of one batch (DataLoader's batched fetch); with an encoder, one VAE call for the batch."""
        if self.encoder is None:
            return [self[i] for i in indices]
        encoder, self.encoder = self.encoder, None
        try:
            items = [self[i] for i in indices]
        finally:
            self.encoder = encoder
        todo = [item for item in items if not bool(self.cached_flags[int(item["sample_key"])])] \
            if self.cached_flags is not None else items
        latents = encoder.encode_items(todo) if todo else []
        done = {id(item): latent for item, latent in zip(todo, latents)}
        for item in items:
            latent = done.get(id(item))
            item["latents"] = latent.float() if latent is not None else self._latents_placeholder()
            item["has_latents"] = torch.tensor(latent is not None)
            del item["images"], item["future_images"]
        return items

    def _latents_placeholder(self) -> torch.Tensor:
        return torch.zeros(self.encoder.latent_shape)


def camera_frame_hw(dataset: EpisodeDataset) -> tuple[int, int]:
    """The (height, width) of the recorded camera frames, read from one frame of the first episode.

    Every camera of every episode must match: a policy is deployed on the resolution it was trained on.
    """
    episodes = dataset.demos + dataset.rollouts
    sizes = set()
    for episode in (episodes[0], episodes[-1]):
        read = episode.frames.read([0], dataset.files)
        sizes |= {(episode.source, cam, tuple(read[cam].shape[1:3])) for cam in dataset.spec.cameras}
    if len({hw for _, _, hw in sizes}) != 1:
        raise ValueError("camera frames of different sizes in the training data: "
                         + ", ".join(f"{src}:{cam} {hw[0]}x{hw[1]}" for src, cam, hw in sorted(sizes))
                         + " (record every camera at one resolution)")
    return next(iter(sizes))[2]


def describe(dataset: EpisodeDataset) -> str:
    """A few lines on what the dataset holds (for logs and the training summary)."""
    demo_steps = sum(e.num_steps for e in dataset.demos)
    rollout_steps = sum(e.num_steps for e in dataset.rollouts)
    low_dim_mb = sum(e.actions.nbytes + e.proprio.nbytes + e.values.nbytes for e in dataset.episodes) / 2 ** 20
    lines = [f"demos: {len(dataset.demos)} episodes / {demo_steps} steps; rollouts: {len(dataset.rollouts)} "
             f"episodes / {rollout_steps} steps (demo sampling p={dataset.demo_sampling_prob:.2f})",
             f"tasks: {', '.join(dataset.tasks)}",
             f"objectives policy/world model/value: "
             f"{'/'.join(f'{p:.2f}' for p in expected_objective_fractions(dataset))}"
             f" ({'release mix' if dataset.release_mix else 'per-item draw'}, augmentation "
             f"{dataset.augment_variant if dataset.augment else 'off'}); "
             f"low-dim arrays in memory: {low_dim_mb:.1f} MiB; frames read per item at "
             f"{dataset.spec.image_hw[0]}x{dataset.spec.image_hw[1]}; {len(dataset)} items"
             + (f" (every {dataset.sample_stride}th step)" if dataset.sample_stride > 1 else "")]
    if dataset.rollouts:
        scores = [e.score for e in dataset.rollouts]
        successes, _ = dataset.rollout_class_counts
        line = f"rollout scores: mean {np.mean(scores):.2f}, success {successes}/{len(scores)}"
        if dataset.success_sampling_prob is not None:
            p = expected_success_fraction(dataset)
            line += f"; rollouts drawn success/failure {p:.2f}/{1 - p:.2f}"
        lines.append(line)
    return "\n".join(lines)


def expected_success_fraction(dataset: EpisodeDataset) -> float:
    """Fraction of rollout draws that come from successful rollouts (the rest: failed ones)."""
    if not dataset.rollouts:
        return float("nan")
    if dataset._success_draw_prob is not None:
        return dataset._success_draw_prob
    counts = {True: 0, False: 0}  # no class mix: a step drawn uniformly over every rollout step
    for episode in dataset.rollouts:
        counts[episode.is_success] += dataset._items_of(episode)
    return counts[True] / (counts[True] + counts[False])


def expected_objective_fractions(dataset: EpisodeDataset) -> np.ndarray:
    """Objective fractions the sampler should produce (demo vs rollout pools, eligibility)."""
    if dataset.release_mix:
        q, w = dataset.demo_sampling_prob, dataset.world_model_prob
        return np.array([q, (1 - q) * w, (1 - q) * (1 - w)])
    def pool_fractions(pool):
        if not pool:
            return np.zeros(3)
        eligible = sum(e.num_steps for e in pool if e.policy_eligible) / sum(e.num_steps for e in pool)
        p = dataset.objective_probs
        rest = p.copy()
        rest[POLICY] = 0
        rest = rest / rest.sum() if rest.sum() > 0 else np.array([0, 0.5, 0.5])
        return eligible * p + (1 - eligible) * rest

    if not dataset.rollouts:
        return pool_fractions(dataset.demos)
    q = dataset.demo_sampling_prob
    return q * pool_fractions(dataset.demos) + (1 - q) * pool_fractions(dataset.rollouts)


__all__ = [
    "ActFrames", "EpisodeDataset", "EpisodeRecord", "FrameSource", "LoadedEpisode", "OpenFiles", "ReleaseFrames",
    "SampleSpec", "compute_dataset_statistics", "describe", "expected_objective_fractions", "expected_success_fraction",
    "find_episode_files",
    "is_release_layout", "load_episode", "load_episodes", "read_episode_record", "read_low_dim",
    "read_video_frames", "sample_objective", "task_from_path",
]
