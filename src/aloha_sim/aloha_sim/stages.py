"""Staged task scores (0-100) for the simulated tasks, computed from contacts and object poses.

tasks.yaml names and orders the stages; this module maps each sim stage name to a predicate on a
:class:`ContactState`. :class:`StageTracker` turns per-step predicates into an episode score that a
mere touch cannot inflate: stages count only in order, and the last one only while it holds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import mujoco
import numpy as np

from .tasks import StageSpec, TaskSpec

TABLE = "table"
CUBE = "red_box"
PEG = "red_peg"
SOCKET_WALLS = ("socket-1", "socket-2", "socket-3", "socket-4")
PIN = "pin"

# object centre height when resting on the table (its half height), m
REST_HEIGHT_M = {"box": 0.02, "peg": 0.01, "socket": 0.022}
LIFT_HEIGHT_M = 0.03  # "lifted" = raised at least this much above rest, not just tilted or pushed
# insertion geometry (from the MJCF): the pin fills the socket's middle, 2 cm in from each mouth
SOCKET_HALF_LENGTH_M = 0.06
PEG_HALF_LENGTH_M = 0.06
SOCKET_OPENING_HALF_M = 0.018  # inner half width of the socket's square opening
MAX_PEG_TILT_DEG = 15.0
INSERTION_DEPTH_M = 0.015  # the peg's end must be this deep in the socket (the pin starts at 0.02)


def finger_geoms(arm: str) -> tuple[str, str]:
    """The two finger pad geoms of ``left`` or ``right`` arm."""
    return (f"vx300s_{arm}/10_left_gripper_finger", f"vx300s_{arm}/10_right_gripper_finger")


@dataclass(frozen=True)
class ContactState:
    """What the stage predicates look at: touching geom pairs and object positions."""

    contacts: frozenset[frozenset[str]]
    object_positions: dict[str, np.ndarray]
    object_quats: dict[str, np.ndarray]

    @staticmethod
    def build(pairs: Iterable[tuple[str, str]], object_positions: dict[str, Sequence[float]],
              object_quats: dict[str, Sequence[float]] | None = None) -> ContactState:
        """From geom-name pairs and object positions; orientations default to upright."""
        quats = {k: np.asarray((object_quats or {}).get(k, (1.0, 0.0, 0.0, 0.0)), dtype=np.float64)
                 for k in object_positions}
        return ContactState(frozenset(frozenset(p) for p in pairs),
                            {k: np.asarray(v, dtype=np.float64) for k, v in object_positions.items()}, quats)

    def touching(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.contacts

    def touching_any(self, a: str, others: Iterable[str]) -> bool:
        return any(self.touching(a, b) for b in others)

    def fingers_touching(self, arm: str, targets: Iterable[str]) -> int:
        """How many of the arm's two fingers touch any of ``targets`` (0, 1 or 2)."""
        targets = tuple(targets)
        return sum(self.touching_any(f, targets) for f in finger_geoms(arm))

    def raised(self, obj: str) -> bool:
        return float(self.object_positions[obj][2]) >= REST_HEIGHT_M[obj] + LIFT_HEIGHT_M

    def rotation(self, obj: str) -> np.ndarray:
        mat = np.zeros(9)
        mujoco.mju_quat2Mat(mat, self.object_quats[obj] / np.linalg.norm(self.object_quats[obj]))
        return mat.reshape(3, 3)


def contact_state(model: mujoco.MjModel, data: mujoco.MjData, objects: Iterable[str]) -> ContactState:
    """Snapshot of the current contacts (geom names) and the positions of the named object bodies."""
    pairs = []
    for i in range(data.ncon):
        c = data.contact[i]
        pairs.append((model.geom(c.geom[0]).name, model.geom(c.geom[1]).name))
    objects = list(objects)
    positions = {obj: data.xpos[model.body(obj).id].copy() for obj in objects}
    quats = {obj: data.xquat[model.body(obj).id].copy() for obj in objects}
    return ContactState.build(pairs, positions, quats)


def _cube_grasped_by(s: ContactState, arm: str) -> bool:
    return s.fingers_touching(arm, [CUBE]) == 2


def _cube_in_air(s: ContactState) -> bool:
    return not s.touching(CUBE, TABLE) and s.raised("box")


def _right_gripper_grasped(s: ContactState) -> bool:
    return _cube_grasped_by(s, "right")


def _lifted(s: ContactState) -> bool:
    return _cube_grasped_by(s, "right") and _cube_in_air(s)


def _handed_over(s: ContactState) -> bool:
    return _cube_grasped_by(s, "left") and s.fingers_touching("right", [CUBE]) > 0 and _cube_in_air(s)


def _held_by_left(s: ContactState) -> bool:
    return _cube_grasped_by(s, "left") and s.fingers_touching("right", [CUBE]) == 0 and _cube_in_air(s)


def _both_grasped(s: ContactState) -> bool:
    return s.fingers_touching("right", [PEG]) == 2 and s.fingers_touching("left", SOCKET_WALLS) == 2


def _peg_and_socket_in_air(s: ContactState) -> bool:
    socket_on_table = s.touching_any(TABLE, SOCKET_WALLS)
    return (not s.touching(PEG, TABLE) and not socket_on_table and s.raised("peg") and s.raised("socket"))


def _both_lifted(s: ContactState) -> bool:
    return _both_grasped(s) and _peg_and_socket_in_air(s)


def _peg_touches_socket(s: ContactState) -> bool:
    # a peg sliding into the mouth without touching the walls has touched the socket for our purpose
    touching = s.touching_any(PEG, SOCKET_WALLS + (PIN,)) or peg_depth_in_socket(s) > 0.0
    return touching and _peg_and_socket_in_air(s)


def peg_depth_in_socket(s: ContactState) -> float:
    """How deep (m) the peg's leading end is inside the socket; negative when outside or off-axis."""
    rot = s.rotation("socket")
    centre = rot.T @ (s.object_positions["peg"] - s.object_positions["socket"])
    axis = rot.T @ s.rotation("peg")[:, 0]
    if abs(axis[0]) < np.cos(np.deg2rad(MAX_PEG_TILT_DEG)):
        return -1.0
    # the peg end nearer the socket centre is the one going in
    ends = [centre + sign * PEG_HALF_LENGTH_M * axis for sign in (1.0, -1.0)]
    tip = min(ends, key=lambda e: abs(float(e[0])))
    if max(abs(tip[1]), abs(tip[2])) > SOCKET_OPENING_HALF_M:
        return -1.0
    return SOCKET_HALF_LENGTH_M - abs(float(tip[0]))


def _inserted(s: ContactState) -> bool:
    # geometric, not a contact: a peg resting against the pin does not always register a contact
    return peg_depth_in_socket(s) >= INSERTION_DEPTH_M and _peg_and_socket_in_air(s)


STAGE_PREDICATES: dict[str, dict[str, Callable[[ContactState], bool]]] = {
    "transfer_cube": {
        "right_gripper_grasped": _right_gripper_grasped,
        "lifted": _lifted,
        "handed_over": _handed_over,
        "held_by_left_at_end": _held_by_left,
    },
    "insertion": {
        "both_grasped": _both_grasped,
        "both_lifted": _both_lifted,
        "peg_touches_socket": _peg_touches_socket,
        "inserted": _inserted,
    },
}


def predicates_for(task: TaskSpec) -> list[Callable[[ContactState], bool]]:
    """The predicate of every stage of ``task``, in the YAML's order; names must match this module."""
    known = STAGE_PREDICATES.get(task.name)
    if known is None:
        raise KeyError(f"task '{task.name}' has no sim stage predicates (sim tasks: {sorted(STAGE_PREDICATES)})")
    missing = [s.name for s in task.stages if s.name not in known]
    if missing:
        raise KeyError(f"tasks.yaml stages {missing} of '{task.name}' have no predicate in aloha_sim.stages "
                       f"(known: {sorted(known)})")
    return [known[s.name] for s in task.stages]


@dataclass(frozen=True)
class StageScore:
    """Episode score so far: the highest stage reached in order; the last stage only while it holds."""

    score: int
    stage: str | None
    reached: tuple[str, ...]
    final_holds: bool

    @property
    def success(self) -> bool:
        return self.final_holds


class StageTracker:
    """Per-step stage bookkeeping for one episode."""

    def __init__(self, stages: Sequence[StageSpec], predicates: Sequence[Callable[[ContactState], bool]]) -> None:
        if len(stages) != len(predicates):
            raise ValueError(f"{len(stages)} stages but {len(predicates)} predicates")
        self.stages = list(stages)
        self.predicates = list(predicates)
        self.reset()

    def reset(self) -> None:
        self._reached = [False] * len(self.stages)
        self._final_holds = False

    def update(self, state: ContactState) -> StageScore:
        """Feed the state after a step; a stage is reached only once the previous one was."""
        last = len(self.stages) - 1
        for k, predicate in enumerate(self.predicates):
            prior_ok = k == 0 or self._reached[k - 1]
            if prior_ok and predicate(state):
                self._reached[k] = True
                if k == last:
                    self._final_holds = True
            elif k == last:
                self._final_holds = False
        return self.score()

    def score(self) -> StageScore:
        last = len(self.stages) - 1
        best = None
        for k, reached in enumerate(self._reached):
            if reached and (k < last or self._final_holds):
                best = k
        reached_names = tuple(s.name for s, r in zip(self.stages, self._reached) if r)
        if best is None:
            return StageScore(0, None, reached_names, False)
        return StageScore(self.stages[best].score, self.stages[best].name, reached_names, self._final_holds)
