"""Task definitions from ``config/tasks.yaml``: instruction, episode length, stages, object randomisation."""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import yaml

TASKS_ENV_VAR = "ALOHA_TASKS"

Pose = tuple[np.ndarray, np.ndarray]  # (position xyz in m, quaternion wxyz) in the world frame


class TaskError(ValueError):
    """A task that is unknown or badly defined in tasks.yaml."""


@dataclass(frozen=True)
class StageSpec:
    name: str
    score: int
    description: str


@dataclass(frozen=True)
class ObjectRange:
    """Uniform randomisation of one free object's position; orientation stays upright."""

    x_range_m: tuple[float, float]
    y_range_m: tuple[float, float]
    z_m: float


@dataclass(frozen=True)
class SimSpec:
    model: str
    objects: dict[str, ObjectRange]


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    episode_steps: int
    stages: tuple[StageSpec, ...]
    sim: SimSpec | None

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def sample_object_poses(self, seed: int) -> dict[str, Pose]:
        """Object start poses for ``seed`` (same seed -> same poses), objects in YAML order."""
        if self.sim is None:
            raise TaskError(f"task '{self.name}' has no `sim` section in tasks.yaml: it cannot be simulated")
        rng = np.random.default_rng(int(seed))
        poses = {}
        for name, r in self.sim.objects.items():
            pos = np.array([rng.uniform(*r.x_range_m), rng.uniform(*r.y_range_m), r.z_m])
            poses[name] = (pos, np.array([1.0, 0.0, 0.0, 0.0]))
        return poses


def default_tasks_path() -> Path:
    """``$ALOHA_TASKS`` if set, else the tasks.yaml shipped with this package (config/tasks.yaml)."""
    override = os.environ.get(TASKS_ENV_VAR)
    if override:
        return Path(override)
    return Path(str(resources.files("aloha_sim").joinpath("tasks.yaml")))


def _parse_task(name: str, raw: dict[str, Any], source: Path) -> TaskSpec:
    where = f"{source}: tasks.{name}"
    try:
        stages = tuple(StageSpec(str(s["name"]), int(s["score"]), str(s.get("description", "")))
                       for s in raw["stages"])
        description = str(raw["description"])
        episode_steps = int(raw["episode_steps"])
    except (KeyError, TypeError) as exc:
        raise TaskError(f"{where}: missing or malformed key {exc} (need description, episode_steps, "
                        f"stages: [{{name, score, description}}])") from None
    if not stages:
        raise TaskError(f"{where}: needs at least one stage")
    scores = [s.score for s in stages]
    if scores != sorted(scores) or len(set(scores)) != len(scores) or scores[-1] != 100:
        raise TaskError(f"{where}: stage scores {scores} must strictly increase and end at 100")
    sim = None
    if "sim" in raw:
        objects = {obj: ObjectRange(tuple(map(float, r["x_range_m"])), tuple(map(float, r["y_range_m"])),
                                    float(r["z_m"]))
                   for obj, r in raw["sim"]["objects"].items()}
        sim = SimSpec(model=str(raw["sim"]["model"]), objects=objects)
    return TaskSpec(name, description, episode_steps, stages, sim)


def load_tasks(path: str | os.PathLike[str] | None = None) -> dict[str, TaskSpec]:
    """All tasks in tasks.yaml by name."""
    source = Path(path) if path else default_tasks_path()
    if not source.is_file():
        raise TaskError(f"tasks file not found: {source} (set {TASKS_ENV_VAR} or pass a path)")
    with source.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
        raise TaskError(f"{source}: expected a mapping with a `tasks:` mapping inside")
    return {name: _parse_task(name, spec, source) for name, spec in raw["tasks"].items()}


def load_task(name: str, path: str | os.PathLike[str] | None = None) -> TaskSpec:
    """One task by name; the error lists the known tasks."""
    tasks = load_tasks(path)
    if name not in tasks:
        raise TaskError(f"unknown task '{name}' (known: {sorted(tasks)}; see {path or default_tasks_path()})")
    return tasks[name]
