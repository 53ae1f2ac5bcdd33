"""Training datasets: episodes on disk -> the training batch items of docs/design/cosmos_policy_interfaces.md.

Sources:
- ACT HDF5 folders (demos, raw or JPEG-compressed images), read with `data.act_episode`;
- rollout folders: the same ACT files with root attrs `success`, `success_score` (0..1) and
  `task_description`, recorded by the rollout recorder;
- the release's preprocessed ALOHA layout, as its ALOHA data loader reads it (assumed, not verified
  against the downloaded files): `<root>/<task_name>/<split>/*.hdf5` with `/action` (T, 14),
  `/observations/qpos` (T, 14) and per camera either `/observations/images/<cam>` (T, H, W, 3) uint8
  or `/observations/video_paths/<cam>` (a path to an MP4, relative to the HDF5 file); no qvel/effort.
  Its task text is the `<task_name>` folder with underscores as spaces.

A file is read as the release layout when it has no `/observations/qvel`. The task text of an episode is
its `task_description` attr, else the task given on the command line, else its folder name (a split
folder named train/val/test is skipped), with underscores as spaces.

Episodes are held in memory with their frames already resized to the network's image size, as the
release does; each item then crops 90 % of the area at random and resizes back (`data.augment`).

Per item: the objective is drawn 50/25/25 (policy / world model / value, configurable); failed or
partial rollouts never get the policy objective (their actions are not to be imitated), their draw is
renormalised over world model / value. With rollouts, the pool (demos vs rollouts) is drawn first with
`demo_sampling_prob`, then a step uniformly within the pool; without rollouts, item i is step i.
Future images / proprio / value are at t + K clamped to the last step; the action chunk repeats the
last action past the end. Normalised actions and proprio are clipped to [-1, 1] (rollouts can leave
the demos' range).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from cosmos_policy.config import LayoutConfig, NetworkConfig
from cosmos_policy.data.act_episode import EpisodeFileError, read_act_episode
from cosmos_policy.data.augment import (
    center_crop_resize, frames_to_tensor, random_crop_resize, resize_frames, to_model_range)
from cosmos_policy.data.statistics import compute_statistics, normalize
from cosmos_policy.data.text import TextEmbeddingCache
from cosmos_policy.data.values import episode_score_fraction, value_targets

log = logging.getLogger(__name__)

OBJECTIVE_POLICY, OBJECTIVE_WORLD_MODEL, OBJECTIVE_VALUE = 0, 1, 2
OBJECTIVE_NAMES = ("policy", "world_model", "value")
DEFAULT_OBJECTIVE_PROBS = (0.5, 0.25, 0.25)
SPLIT_FOLDERS = ("train", "val", "test")
EPISODE_SUFFIXES = (".hdf5", ".h5")


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

    @classmethod
    def from_configs(cls, layout: LayoutConfig, network: NetworkConfig) -> "SampleSpec":
        return cls(cameras=tuple(layout.cameras), image_hw=(network.image_size_px, network.image_size_px),
                   action_chunk=layout.action_chunk, action_dim=layout.action_dim,
                   proprio_dim=layout.proprio_dim, value_gamma=layout.value_gamma,
                   text_max_tokens=network.text_max_tokens, text_dim=network.text_embed_dim)


@dataclass
class LoadedEpisode:
    """One episode in memory, frames resized to the item size, actions/proprio in robot units."""

    source: str
    task: str
    is_demo: bool
    score: float
    frames: dict[str, np.ndarray]
    proprio: np.ndarray
    actions: np.ndarray
    values: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    @property
    def num_steps(self) -> int:
        return int(self.actions.shape[0])

    @property
    def policy_eligible(self) -> bool:
        """Demos and fully successful rollouts may be imitated."""
        return self.is_demo or self.score >= 1.0


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


def _open_hdf5(path: Path) -> h5py.File:
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise EpisodeFileError(f"{path}: not a readable HDF5 file ({exc}); the recording may have been "
                               f"interrupted: re-record or delete it (or train with --skip-bad-episodes)") from None


def is_release_layout(path: Path) -> bool:
    """True for the release's preprocessed files (no /observations/qvel), False for ACT files."""
    with _open_hdf5(path) as f:
        return "observations/qvel" not in f


def _read_mp4(path: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise EpisodeFileError(f"{path}: video file missing or unreadable")
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
    capture.release()
    if not frames:
        raise EpisodeFileError(f"{path}: video has no frames")
    return np.stack(frames)


def read_release_file(path: Path, cameras: Sequence[str] | None) -> tuple[np.ndarray, np.ndarray, dict, dict]:
    """(actions, proprio, frames per camera, attrs) of one file in the release's preprocessed layout."""
    with _open_hdf5(path) as f:
        try:
            actions = np.asarray(f["action"][()], dtype=np.float32)
            proprio = np.asarray(f["observations/qpos"][()], dtype=np.float32)
            attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
            frames: dict[str, np.ndarray] = {}
            for cam in cameras or ():
                if f"observations/images/{cam}" in f:
                    frames[cam] = np.asarray(f[f"observations/images/{cam}"][()])
                elif f"observations/video_paths/{cam}" in f:
                    rel = f[f"observations/video_paths/{cam}"][()]
                    rel = rel.decode() if isinstance(rel, bytes) else str(rel)
                    frames[cam] = _read_mp4(path.parent / rel)
                else:
                    raise EpisodeFileError(f"{path}: camera {cam} has neither observations/images/{cam} nor "
                                           f"observations/video_paths/{cam} (check the layout's camera names)")
        except KeyError as exc:
            raise EpisodeFileError(f"{path}: missing dataset {exc} (expected /action and /observations/qpos)") from None
        except OSError as exc:
            raise EpisodeFileError(f"{path}: truncated or corrupt data ({exc})") from None
    return actions, proprio, frames, attrs


def read_low_dim(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(actions, proprio) of an episode file of either layout, without images."""
    path = Path(path)
    if is_release_layout(path):
        actions, proprio, _, _ = read_release_file(path, None)
        return actions, proprio
    episode = read_act_episode(path, load_images=False)
    return episode.action.astype(np.float32), episode.qpos.astype(np.float32)


def load_episode(path: str | Path, spec: SampleSpec, is_demo: bool, task: str | None = None,
                 load_frames: bool = True) -> LoadedEpisode:
    """Read one episode file (ACT or release layout) into memory, frames resized to spec.image_hw."""
    path = Path(path)
    cameras = list(spec.cameras) if load_frames else None
    if is_release_layout(path):
        actions, proprio, frames, attrs = read_release_file(path, cameras)
    else:
        episode = read_act_episode(path, cameras=cameras, load_images=load_frames)
        actions, proprio, frames, attrs = episode.action, episode.qpos, episode.images, episode.attrs
    source = str(path)
    steps = actions.shape[0]
    if steps == 0:
        raise EpisodeFileError(f"{source}: episode has no steps")
    if actions.ndim != 2 or actions.shape[1] != spec.action_dim:
        raise EpisodeFileError(f"{source}: action has shape {actions.shape}, expected (T, {spec.action_dim}) "
                               f"(check --layout)")
    if proprio.shape != (steps, spec.proprio_dim):
        raise EpisodeFileError(f"{source}: qpos has shape {proprio.shape}, expected ({steps}, {spec.proprio_dim})")
    resized = {}
    for cam, video in frames.items():
        if video.shape[0] != steps or video.dtype != np.uint8 or video.ndim != 4 or video.shape[-1] != 3:
            raise EpisodeFileError(f"{source}: camera {cam} has {video.shape} {video.dtype}, expected "
                                   f"({steps}, H, W, 3) uint8")
        resized[cam] = resize_frames(video, spec.image_hw)
    task_text = str(attrs.get("task_description") or task or task_from_path(path))
    score = episode_score_fraction(attrs, is_demo=is_demo, source=source)
    return LoadedEpisode(source=source, task=task_text, is_demo=is_demo, score=score, frames=resized,
                         proprio=np.asarray(proprio, np.float32), actions=np.asarray(actions, np.float32),
                         values=value_targets(steps, score, spec.value_gamma))


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
        p[OBJECTIVE_POLICY] = 0.0
        if p.sum() <= 0:
            p[OBJECTIVE_WORLD_MODEL] = p[OBJECTIVE_VALUE] = 0.5
    return int(rng.choice(3, p=p / p.sum()))


class EpisodeDataset(Dataset):
    """Items of the training batch (see the module docstring) over demos and optional rollouts."""

    def __init__(self, demos: Sequence[LoadedEpisode], spec: SampleSpec, stats: dict,
                 text_cache: TextEmbeddingCache, rollouts: Sequence[LoadedEpisode] = (),
                 objective_probs: Sequence[float] = DEFAULT_OBJECTIVE_PROBS,
                 demo_sampling_prob: float | None = None, augment: bool = True, seed: int = 0):
        if not demos and not rollouts:
            raise ValueError("dataset: no episodes (check --data / --rollouts)")
        probs = np.asarray(objective_probs, dtype=np.float64)
        if probs.shape != (3,) or np.any(probs < 0) or probs.sum() <= 0:
            raise ValueError(f"objective_probs={list(objective_probs)}: expected 3 non-negative weights "
                             f"(policy, world model, value)")
        self.objective_probs = probs / probs.sum()
        self.spec = spec
        self.demos = list(demos)
        self.rollouts = list(rollouts)
        self.augment = augment
        self.seed = seed
        self.epoch = 0
        # the trainer's latent cache asks for a per-(episode, step) key in each item
        self.return_sample_key = False
        self.text_cache = text_cache
        for ep in self.demos + self.rollouts:
            missing = [c for c in spec.cameras if c not in ep.frames]
            if missing:
                raise EpisodeFileError(f"{ep.source}: cameras {missing} missing "
                                       f"(the layout needs {list(spec.cameras)})")
            text_cache.get(ep.task)
        self.action_lo, self.action_hi = stats["actions_min"], stats["actions_max"]
        self.proprio_lo, self.proprio_hi = stats["proprio_min"], stats["proprio_max"]
        if len(self.action_lo) != spec.action_dim or len(self.proprio_lo) != spec.proprio_dim:
            raise ValueError(f"statistics: actions {len(self.action_lo)}-D / proprio {len(self.proprio_lo)}-D, "
                             f"the layout needs {spec.action_dim} / {spec.proprio_dim} (stats from another dataset?)")
        self._demo_offsets = np.cumsum([0] + [e.num_steps for e in self.demos])
        self._rollout_offsets = np.cumsum([0] + [e.num_steps for e in self.rollouts])
        if self.rollouts and self.demos:
            if demo_sampling_prob is None:
                demo_sampling_prob = self._demo_offsets[-1] / (self._demo_offsets[-1] + self._rollout_offsets[-1])
            if not 0.0 <= demo_sampling_prob <= 1.0:
                raise ValueError(f"demo_sampling_prob={demo_sampling_prob}: expected a probability in [0, 1]")
        self.demo_sampling_prob = 1.0 if not self.rollouts else (0.0 if not self.demos else float(demo_sampling_prob))

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

    @staticmethod
    def _locate(offsets: np.ndarray, step: int) -> tuple[int, int]:
        episode = int(np.searchsorted(offsets, step, side="right") - 1)
        return episode, int(step - offsets[episode])

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
        else:
            use_demo = bool(self.demos) and rng.random() < self.demo_sampling_prob
            pool, offsets = (self.demos, self._demo_offsets) if use_demo else (self.rollouts, self._rollout_offsets)
            step = int(rng.integers(0, offsets[-1]))
            ep_idx, t = self._locate(offsets, step)
            episode, key = pool[ep_idx], step + (0 if use_demo else int(self._demo_offsets[-1]))
        objective = sample_objective(rng, self.objective_probs, episode.policy_eligible)
        return episode, t, objective, rng, key

    def _images(self, episode: LoadedEpisode, steps: Sequence[int], rng: np.random.Generator) -> torch.Tensor:
        frames = np.stack([np.stack([episode.frames[cam][s] for cam in self.spec.cameras]) for s in steps])
        images = frames_to_tensor(frames)  # (len(steps), n_cams, 3, H, W)
        if self.augment:
            generator = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 62)))
            images = random_crop_resize(images, self.spec.image_hw, generator=generator)
        else:
            images = center_crop_resize(images, self.spec.image_hw)
        return to_model_range(images).clamp(-1.0, 1.0)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        episode, t, objective, rng, key = self._plan(index)
        last = episode.num_steps - 1
        future = min(t + self.spec.action_chunk, last)
        chunk_steps = np.minimum(np.arange(t, t + self.spec.action_chunk), last)
        images = self._images(episode, (t, future), rng)
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
        return item


def describe(dataset: EpisodeDataset) -> str:
    """A few lines on what the dataset holds (for logs and the training summary)."""
    demo_steps = int(dataset._demo_offsets[-1])
    rollout_steps = int(dataset._rollout_offsets[-1])
    mem_mb = sum(f.nbytes for e in dataset.episodes for f in e.frames.values()) / 2 ** 20
    lines = [f"demos: {len(dataset.demos)} episodes / {demo_steps} steps; rollouts: {len(dataset.rollouts)} "
             f"episodes / {rollout_steps} steps (demo sampling p={dataset.demo_sampling_prob:.2f})",
             f"tasks: {', '.join(dataset.tasks)}",
             f"objectives policy/world model/value: {'/'.join(f'{p:.2f}' for p in dataset.objective_probs)}; "
             f"frames in memory: {mem_mb:.0f} MiB at {dataset.spec.image_hw[0]}x{dataset.spec.image_hw[1]}"]
    if dataset.rollouts:
        scores = [e.score for e in dataset.rollouts]
        successes = sum(s >= 1.0 for s in scores)
        lines.append(f"rollout scores: mean {np.mean(scores):.2f}, success {successes}/{len(scores)}")
    return "\n".join(lines)


def expected_objective_fractions(dataset: EpisodeDataset) -> np.ndarray:
    """Objective fractions the sampler should produce (demo vs rollout pools, eligibility)."""
    def pool_fractions(pool):
        if not pool:
            return np.zeros(3)
        eligible = sum(e.num_steps for e in pool if e.policy_eligible) / sum(e.num_steps for e in pool)
        p = dataset.objective_probs
        rest = p.copy()
        rest[OBJECTIVE_POLICY] = 0
        rest = rest / rest.sum() if rest.sum() > 0 else np.array([0, 0.5, 0.5])
        return eligible * p + (1 - eligible) * rest

    if not dataset.rollouts:
        return pool_fractions(dataset.demos)
    q = dataset.demo_sampling_prob
    return q * pool_fractions(dataset.demos) + (1 - q) * pool_fractions(dataset.rollouts)


__all__ = [
    "OBJECTIVE_NAMES", "OBJECTIVE_POLICY", "OBJECTIVE_VALUE", "OBJECTIVE_WORLD_MODEL", "EpisodeDataset",
    "LoadedEpisode", "SampleSpec", "compute_dataset_statistics", "describe", "expected_objective_fractions",
    "find_episode_files", "is_release_layout", "load_episode", "load_episodes", "read_low_dim", "read_release_file",
    "sample_objective", "task_from_path",
]
