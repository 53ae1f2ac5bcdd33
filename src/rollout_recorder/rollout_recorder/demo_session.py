"""Recording demonstrations, as an operator does it: the decisions of ``record_demos`` without ROS or a terminal.

One episode goes: idle -> countdown -> recording -> saved (or discarded, or re-recorded: discarded and counted
down again). Keys (read raw from the terminal, so they work over SSH): space or enter starts and stops, ``r``
re-records the episode in progress, ``d`` discards it, ``q`` quits (an episode in progress is saved first: a
saved episode can be deleted later, a discarded one is gone). An episode stops by itself at its length.

:class:`DemoSession` turns keys and time into recorder commands (``start``, ``stop``, ``discard``) and the
recorder's answers into the next state; ``record_demos`` only reads keys, calls the service and draws.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

IDLE, COUNTDOWN, RECORDING, DONE = "idle", "countdown", "recording", "done"
KEYS = {" ": "toggle", "\r": "toggle", "\n": "toggle", "r": "rerecord", "d": "discard", "q": "quit"}
KEY_HELP = "space/enter start-stop · r re-record · d discard · q quit"


class RecorderUnavailable(RuntimeError):
    """No recorder answered the RecordEpisode service."""


@dataclass
class RecordAnswer:
    """The recorder's answer to a RecordEpisode command, as plain data."""

    success: bool
    message: str
    recording: bool = False
    episode_path: str = ""
    steps: int = 0
    duration_s: float = 0.0
    task: str = ""
    source: str = ""
    camera_rates_hz: dict[str, float] = field(default_factory=dict)
    min_camera_rate_hz: float = 0.0
    low_rate_cameras: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"success": self.success, "message": self.message, "recording": self.recording,
                "episode_path": self.episode_path, "episode": Path(self.episode_path).name if self.episode_path else "",
                "steps": self.steps, "duration_s": round(self.duration_s, 3), "task": self.task, "source": self.source,
                "camera_rates_hz": {c: round(r, 1) for c, r in self.camera_rates_hz.items()},
                "min_camera_rate_hz": self.min_camera_rate_hz, "low_rate_cameras": list(self.low_rate_cameras)}


def key_actions(text: str) -> list[str]:
    """The actions of the characters read from the terminal at once (see :data:`KEYS`); other keys do nothing.

    An escape sequence (an arrow key sends ESC [ D) is one key, not the letters in it: ignored as a whole.
    """
    if text.startswith("\x1b"):
        return []
    return [KEYS[ch] for ch in text if ch in KEYS]


@dataclass(frozen=True)
class TaskInfo:
    name: str
    description: str  # the instruction text stored with each episode
    episode_steps: int | None  # the task's episode length at the control rate, when tasks.yaml gives one


def task_info(name: str, tasks_path: str | os.PathLike[str] | None = None) -> TaskInfo:
    """``name`` from tasks.yaml (instruction text, episode length); a task that is not there is its own text.

    A real-robot task needs no entry: ``record_demos --task "fold the towel"`` records with that text.
    """
    from .scoring_app import default_tasks_path  # the one place that finds tasks.yaml without aloha_sim

    path = Path(tasks_path) if tasks_path else default_tasks_path()
    tasks = {}
    if path.is_file():
        tasks = (yaml.safe_load(path.read_text()) or {}).get("tasks") or {}
    spec = tasks.get(name)
    if not isinstance(spec, dict):
        return TaskInfo(name, name, None)
    steps = spec.get("episode_steps")
    return TaskInfo(name, str(spec.get("description") or name), int(steps) if steps else None)


def rate_warning(answer: RecordAnswer) -> str | None:
    """The live camera-rate warning for a status answer, None while every camera keeps the rate."""
    if not answer.low_rate_cameras:
        return None
    slow = ", ".join(f"{cam} {answer.camera_rates_hz.get(cam, 0.0):.1f} Hz" for cam in answer.low_rate_cameras)
    return (f"CAMERA RATE LOW: {slow} (below {answer.min_camera_rate_hz:.0f} Hz): this episode will be flagged "
            f"camera_rate_low; check USB bandwidth, exposure and CPU load, or press r to re-record")


def rates_text(rates_hz: dict[str, float]) -> str:
    """Compact per-camera rates for a progress bar: ``high 50 | left_wrist 49 | right_wrist 50``."""
    return " | ".join(f"{cam.removeprefix('cam_')} {rate:.0f}" for cam, rate in rates_hz.items())


@dataclass
class DemoSession:
    """The operator's loop over episodes: which recorder command each key press or instant calls for.

    Args:
        episodes: episodes to save before the session ends (0: until the operator quits).
        countdown_s: seconds counted down before an episode starts (time to take the leaders).
        max_steps: an episode stops by itself after this many recorded steps (None: when the operator stops it).
    """

    episodes: int = 0
    countdown_s: float = 3.0
    max_steps: int | None = None
    state: str = IDLE
    saved: list[str] = field(default_factory=list)
    discarded: int = 0
    countdown_until_s: float = 0.0
    quitting: bool = False
    _rerecord: bool = False

    def __post_init__(self) -> None:
        if self.episodes < 0:
            raise ValueError(f"episodes={self.episodes}: expected >= 0 (0: until you quit)")
        if self.countdown_s < 0:
            raise ValueError(f"countdown_s={self.countdown_s}: expected >= 0")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps={self.max_steps}: expected >= 1 (or None: until stopped)")

    @property
    def number(self) -> int:
        """The episode being (or about to be) recorded, counting from 1."""
        return len(self.saved) + 1

    def counter(self) -> str:
        """``episode 3/50`` (or ``episode 3`` without a target)."""
        return f"episode {self.number}/{self.episodes}" if self.episodes else f"episode {self.number}"

    def countdown_left_s(self, now_s: float) -> float:
        return max(0.0, self.countdown_until_s - now_s) if self.state == COUNTDOWN else 0.0

    def on_key(self, action: str | None, now_s: float) -> list[str]:
        """Recorder commands for a key action (``toggle``, ``rerecord``, ``discard``, ``quit``)."""
        if action is None or self.state == DONE:
            return []
        if action == "quit":
            self.quitting = True
            if self.state == RECORDING:
                return ["stop"]  # the answer ends the session
            self.state = DONE
            return []
        if action == "toggle":
            if self.state == IDLE:
                self._begin_countdown(now_s)
            elif self.state == COUNTDOWN:
                self.state = IDLE  # a second press cancels the countdown
            elif self.state == RECORDING:
                return ["stop"]
            return []
        if action in ("rerecord", "discard"):
            if self.state == RECORDING:
                self._rerecord = action == "rerecord"
                return ["discard"]
            if self.state == COUNTDOWN:
                self.state = IDLE
                if action == "rerecord":
                    self._begin_countdown(now_s)
        return []

    def on_time(self, now_s: float, steps: int = 0) -> list[str]:
        """Recorder commands due now: the countdown ran out, or the episode reached its length."""
        if self.state == COUNTDOWN and now_s >= self.countdown_until_s:
            return ["start"]
        if self.state == RECORDING and self.max_steps is not None and steps >= self.max_steps:
            return ["stop"]
        return []

    def on_status(self, answer: RecordAnswer) -> str | None:
        """A status answer while recording; what happened when the episode ended elsewhere (the scoring page)."""
        if self.state == RECORDING and answer.success and not answer.recording:
            self.state = DONE if self.quitting else IDLE
            return "the episode was stopped or discarded outside record_demos (the scoring page?)"
        return None

    def on_answer(self, command: str, answer: RecordAnswer, now_s: float) -> None:
        """The recorder answered ``command``: move on."""
        if command == "start":
            # a refused start (already recording elsewhere, no disk space) leaves the operator in control
            self.state = RECORDING if answer.success else IDLE
        elif command == "stop":
            if answer.success:
                self.saved.append(answer.episode_path)
            self.state = IDLE
            if self.quitting or (self.episodes and len(self.saved) >= self.episodes):
                self.state = DONE
        elif command == "discard":
            self.discarded += int(answer.success)
            self.state = IDLE
            if self._rerecord:
                self._rerecord = False
                self._begin_countdown(now_s)

    def _begin_countdown(self, now_s: float) -> None:
        self.state = COUNTDOWN
        self.countdown_until_s = now_s + self.countdown_s
