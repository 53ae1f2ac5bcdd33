"""Export ACT/ALOHA HDF5 episodes as a LeRobot dataset (format v3): the product's "export to LeRobot".

Runs with the LeRobot environment's Python (``scripts/setup_lerobot.sh`` builds ``.venv-lerobot``); it imports
LeRobot and this package's plain episode reader (numpy + h5py, no ROS, no torch of ours)::

    ./scripts/export_lerobot.sh data/demos_96x128/transfer_cube --out data/lerobot/aloha_sim_transfer_cube
    # the same, by hand:
    PYTHONPATH=src/rollout_recorder .venv-lerobot/bin/python -m rollout_recorder.lerobot_export \
        data/demos_96x128/transfer_cube --out data/lerobot/aloha_sim_transfer_cube

Every source (a folder of ``episode_<i>.hdf5`` in numeric order, or single files) becomes episodes of ONE
dataset; several folders (e.g. both tasks) make a multi-task dataset. Per frame:

- ``observation.state`` (14,) float32 = ``/observations/qpos`` (ACT joint order, normalised grippers);
- ``action`` (14,) float32 = ``/action``;
- ``observation.images.<cam>`` (H, W, 3) uint8 per camera = ``/observations/images/<cam>`` (JPEG episodes
  are decoded), stored as images (PNG in the parquet files; default) or, with ``--video``, as AV1 video
  (reading videos back needs torchcodec with a system FFmpeg: see docs/lerobot.md);
- ``task``: the episode's ``task_description`` attribute (``--task`` overrides; ``task`` is the fallback).

Camera frames the recorder marked invalid (``frame_valid`` False: a repeated frame) are exported as they
are: LeRobot has no such flag; the count is printed per episode. Provenance (source files, seeds, task
names) goes to ``meta/aloha_export.json``, which LeRobot ignores.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path

import numpy as np

try:  # run as `python -m rollout_recorder.lerobot_export` (PYTHONPATH=src/rollout_recorder)
    from .episode_file import EpisodeFileError, read_act_episode
except ImportError:  # run as a file: the reader is the sibling module
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from rollout_recorder.episode_file import EpisodeFileError, read_act_episode

ARMS = ("left", "right")
ARM_JOINTS = ("waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "gripper")
JOINT_NAMES = [f"{arm}_{joint}" for arm in ARMS for joint in ARM_JOINTS]  # config/aloha_contract.yaml order
DEFAULT_FPS = 50
EXPORT_META = "meta/aloha_export.json"
_EPISODE = re.compile(r"^episode_(\d+)\.hdf5$")


class ExportError(ValueError):
    """Sources that cannot be exported as one dataset (no episodes, mismatched cameras or shapes, no task)."""


def list_episodes(sources: list[str | Path]) -> list[Path]:
    """Episode files of the sources in order: a folder's ``episode_<i>.hdf5`` by i, files as given."""
    files: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            found = sorted((p for p in source.iterdir() if _EPISODE.match(p.name)),
                           key=lambda p: int(_EPISODE.match(p.name).group(1)))
            if not found:
                raise ExportError(f"{source}: no episode_<i>.hdf5 files")
            files.extend(found)
        elif source.is_file():
            files.append(source)
        else:
            raise ExportError(f"{source}: no such file or folder")
    return files


def make_features(cameras: dict[str, tuple[int, int]], state_dim: int, use_videos: bool) -> dict:
    """LeRobot feature spec: 14-D state and action, one RGB stream per camera."""
    names = JOINT_NAMES if state_dim == len(JOINT_NAMES) else [f"joint_{i}" for i in range(state_dim)]
    features: dict = {
        "observation.state": {"dtype": "float32", "shape": (state_dim,), "names": list(names)},
        "action": {"dtype": "float32", "shape": (state_dim,), "names": list(names)},
    }
    for cam, (h, w) in cameras.items():
        features[f"observation.images.{cam}"] = {"dtype": "video" if use_videos else "image", "shape": (h, w, 3),
                                                 "names": ["height", "width", "channels"]}
    return features


def episode_task(attrs: dict, override: str | None, source: Path) -> str:
    task = override or attrs.get("task_description") or attrs.get("task")
    if not task:
        raise ExportError(f"{source}: no task_description (nor task) attribute; pass --task")
    return str(task)


def export(sources: list[str | Path], out: str | Path, *, repo_id: str | None = None, fps: int = DEFAULT_FPS,
           cameras: list[str] | None = None, task: str | None = None, use_videos: bool = False,
           max_episodes: int | None = None, overwrite: bool = False, image_writer_threads: int = 0,
           robot_type: str = "aloha", log=print) -> dict:
    """Write the episodes of ``sources`` as a LeRobot v3 dataset at ``out``; returns a summary dict.

    ``out`` must not exist (``overwrite`` deletes it first). The dataset is finalized (its parquet files
    closed), so ``LeRobotDataset(repo_id, root=out)`` reads it back offline.
    """
    import datasets
    from lerobot.datasets.lerobot_dataset import LeRobotDataset

    datasets.disable_progress_bars()  # one line per episode is ours; no per-episode bars
    out = Path(out)
    files = list_episodes(sources)
    if max_episodes is not None:
        files = files[:max_episodes]
    if out.exists():
        if not overwrite:
            raise ExportError(f"{out}: already exists; pass --overwrite to replace it")
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    repo_id = repo_id or f"local/{out.name}"

    # the first episode fixes cameras and shapes; every other must match
    first = read_act_episode(files[0], cameras=cameras)
    cams = {cam: tuple(frames.shape[1:3]) for cam, frames in first.images.items()}
    if not cams:
        raise ExportError(f"{files[0]}: no camera images; ACT needs at least one camera")
    state_dim = first.qpos.shape[1]
    features = make_features(cams, state_dim, use_videos)
    dataset = LeRobotDataset.create(repo_id=repo_id, fps=fps, features=features, root=out, robot_type=robot_type,
                                    use_videos=use_videos, image_writer_threads=image_writer_threads)
    provenance = []
    frames_total = 0
    start = time.perf_counter()
    try:
        for i, path in enumerate(files):
            ep = first if i == 0 else read_act_episode(path, cameras=list(cams))
            if {c: tuple(f.shape[1:3]) for c, f in ep.images.items()} != cams or ep.qpos.shape[1] != state_dim:
                raise ExportError(f"{path}: cameras/shapes {({c: f.shape for c, f in ep.images.items()})}, "
                                  f"state dim {ep.qpos.shape[1]} differ from the first episode's "
                                  f"({cams}, {state_dim})")
            if ep.action.shape[1] != state_dim:
                raise ExportError(f"{path}: action dim {ep.action.shape[1]} != state dim {state_dim}")
            text = episode_task(ep.attrs, task, path)
            qpos = ep.qpos.astype(np.float32)
            action = ep.action.astype(np.float32)
            for t in range(ep.num_steps):
                frame = {"observation.state": qpos[t], "action": action[t], "task": text}
                for cam in cams:
                    frame[f"observation.images.{cam}"] = ep.images[cam][t]
                dataset.add_frame(frame)
            dataset.save_episode()
            invalid = {c: int((~m).sum()) for c, m in ep.frame_valid.items() if (~m).any()}
            frames_total += ep.num_steps
            provenance.append({"episode_index": i, "source": str(path), "steps": ep.num_steps, "task": text,
                               "task_name": ep.attrs.get("task"), "seed": ep.attrs.get("seed"),
                               "success": ep.attrs.get("success"), "invalid_frames": invalid})
            log(f"[lerobot_export] episode {i + 1}/{len(files)} {path.name}: {ep.num_steps} frames, task "
                f"{ep.attrs.get('task', text)!r}" + (f", repeated (invalid) frames {invalid}" if invalid else ""))
    except BaseException:
        dataset.finalize()
        shutil.rmtree(out, ignore_errors=True)  # no half-written dataset is left behind
        raise
    dataset.finalize()
    tasks = sorted({p["task"] for p in provenance})
    summary = {"repo_id": repo_id, "root": str(out), "fps": fps, "episodes": len(provenance), "frames": frames_total,
               "cameras": {c: list(hw) for c, hw in cams.items()}, "state_dim": state_dim,
               "image_storage": "video" if use_videos else "image", "tasks": tasks,
               "task_names": {p["task"]: p["task_name"] for p in provenance if p["task_name"]},
               "seconds": round(time.perf_counter() - start, 1)}
    (out / EXPORT_META).write_text(json.dumps({**summary, "episodes_detail": provenance}, indent=1, default=str))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lerobot_export", description=__doc__.split("\n\n")[0])
    parser.add_argument("sources", nargs="+", help="episode folders (episode_<i>.hdf5) or episode files")
    parser.add_argument("--out", required=True, help="dataset root to create (e.g. data/lerobot/aloha_sim_transfer_cube)")
    parser.add_argument("--repo-id", default=None, help="dataset name in its metadata (default local/<out name>)")
    parser.add_argument("--fps", type=int, default=DEFAULT_FPS, help="control rate of the episodes (default 50)")
    parser.add_argument("--cameras", default="", help="comma-separated cameras (default: all in the first episode)")
    parser.add_argument("--task", default=None, help="task text for every frame (default: each episode's "
                        "task_description attribute)")
    parser.add_argument("--video", action="store_true", help="store cameras as AV1 videos instead of images "
                        "(reading them back needs torchcodec + FFmpeg)")
    parser.add_argument("--max-episodes", type=int, default=None, help="export only the first N episodes")
    parser.add_argument("--image-writer-threads", type=int, default=0, help="PNG writer threads (0: inline)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    try:
        summary = export(args.sources, args.out, repo_id=args.repo_id, fps=args.fps,
                         cameras=[c for c in args.cameras.split(",") if c] or None, task=args.task,
                         use_videos=args.video, max_episodes=args.max_episodes, overwrite=args.overwrite,
                         image_writer_threads=args.image_writer_threads)
    except (ExportError, EpisodeFileError) as exc:
        print(f"[lerobot_export] error: {exc}", file=sys.stderr)
        return 2
    print(f"[lerobot_export] wrote {summary['episodes']} episodes, {summary['frames']} frames, tasks "
          f"{summary['tasks']} to {summary['root']} in {summary['seconds']} s")
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
