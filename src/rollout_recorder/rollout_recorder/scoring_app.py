"""``rollout_scoring``: the operator scoring page, a local web app over a folder of episodes (no ROS).

  rollout_scoring data/rollouts                        # http://127.0.0.1:8765/, this machine only
  rollout_scoring data/rollouts --scorer alice         # the name stored with every score
  rollout_scoring data/rollouts --host 0.0.0.0 --token "$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

Lists every finished episode under the folder (recursively), newest first, with filters; plays each camera
with scrubbing and draws the joint trajectories; the task's stages from tasks.yaml are buttons (keys 0-4);
a score is written into the episode file atomically by :func:`episode_file.set_episode_score`. "Follow"
opens each new episode as soon as the recorder finishes it. See docs/scoring.md.

Where ROS 2 is installed, the header's record buttons start, stop and discard an episode of the recorder node
through its RecordEpisode service (:class:`RecorderBridge`, created on first use; ``--no-ros`` turns it off).
Without ROS the page works the same, minus those buttons.
"""

from __future__ import annotations

import argparse
import getpass
import hmac
import importlib.util
import ipaddress
import math
import os
import re
import sys
import threading
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator

from aloha_contract import Contract, ContractError, load_contract

from .demo_session import RecordAnswer, RecorderUnavailable
from .episode_file import (
    EpisodeFileError,
    attr_value,
    encode_jpeg,
    episode_index,
    is_complete,
    list_episode_files,
    open_episode_file,
    read_act_episode,
    read_act_frames,
    read_rollout_history,
    set_episode_score,
    update_episode_attrs,
)

STATIC_DIR = Path(__file__).with_name("static")
DEFAULT_PORT = 8765
MAX_BODY_BYTES = 16 * 1024  # a score is a few hundred bytes; anything far larger is a mistake or an attack
MAX_NOTES_CHARS = 4000
TOKEN_COOKIE = "rollout_scoring_token"
TOKEN_HEADER = "x-scoring-token"
MIN_TOKEN_CHARS = 12
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
JPEG_QUALITY = 90
TASKS_ENV_VAR = "ALOHA_TASKS"
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class ScoringConfigError(ValueError):
    """A tasks file or command line the scoring page cannot work with."""


@dataclass(frozen=True)
class Stage:
    name: str
    score: int
    description: str


@dataclass(frozen=True)
class TaskStages:
    """A task's staged score as the operator sees it: button k (1..n) sets stage k, 0 sets 'nothing reached'."""

    name: str
    description: str
    stages: tuple[Stage, ...]

    @property
    def allowed_scores(self) -> list[int]:
        return [0] + [s.score for s in self.stages]

    def stages_reached(self, score: float) -> list[str]:
        return [s.name for s in self.stages if s.score <= score]

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description,
                "stages": [{"name": s.name, "score": s.score, "description": s.description} for s in self.stages]}


def default_tasks_path() -> Path:
    """``$ALOHA_TASKS``, else the tasks.yaml that aloha_sim ships (config/tasks.yaml), else the source tree's."""
    override = os.environ.get(TASKS_ENV_VAR)
    if override:
        return Path(override)
    spec = importlib.util.find_spec("aloha_sim")
    if spec is not None and spec.submodule_search_locations:
        for location in spec.submodule_search_locations:
            candidate = Path(location) / "tasks.yaml"
            if candidate.is_file():
                return candidate
    return Path(__file__).resolve().parents[3] / "config" / "tasks.yaml"


def load_task_stages(path: str | os.PathLike[str] | None = None) -> dict[str, TaskStages]:
    """Each task's description and stages from tasks.yaml (only what scoring needs; sim keys are ignored).

    rollout_recorder cannot depend on aloha_sim (aloha_sim depends on it), so this reads the file itself,
    with the same rules: stages ordered, scores strictly increasing and ending at 100.
    """
    source = Path(path) if path else default_tasks_path()
    if not source.is_file():
        raise ScoringConfigError(f"tasks file not found: {source} (pass --tasks or set {TASKS_ENV_VAR})")
    with source.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict) or not isinstance(raw.get("tasks"), dict):
        raise ScoringConfigError(f"{source}: expected a mapping with a `tasks:` mapping inside")
    tasks = {}
    for name, spec in raw["tasks"].items():
        try:
            stages = tuple(Stage(str(s["name"]), int(s["score"]), str(s.get("description", "")))
                           for s in spec["stages"])
            description = str(spec.get("description", ""))
        except (KeyError, TypeError, ValueError) as exc:
            raise ScoringConfigError(f"{source}: tasks.{name}: malformed stages ({exc}); expected "
                                     f"stages: [{{name, score, description}}]") from None
        scores = [s.score for s in stages]
        if not stages or scores != sorted(set(scores)) or scores[-1] != 100 or scores[0] <= 0:
            raise ScoringConfigError(f"{source}: tasks.{name}: stage scores {scores} must be > 0, strictly "
                                     f"increase and end at 100")
        tasks[str(name)] = TaskStages(str(name), description, stages)
    return tasks


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def joint_labels(contract: Contract, dim: int) -> list[str]:
    """The contract's joint order (left arm, then right); plain indices for a vector of another length."""
    names = contract.joint_names
    return names if len(names) == dim else [f"joint_{i}" for i in range(dim)]


def _finite(value: Any) -> Any:
    """JSON cannot carry NaN/inf: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _rows(array: np.ndarray, decimals: int = 4) -> list[list[float | None]]:
    a = np.round(np.asarray(array, dtype=np.float64), decimals)
    return [[x if math.isfinite(x) else None for x in row] for row in a.tolist()]


def _epoch(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso)).timestamp()
    except (TypeError, ValueError):
        return None


class EpisodeIndex:
    """The finished episodes under a folder, recursively, with each one's attributes cached.

    A file is reopened only when its inode, size or modification time changed (scoring replaces the file,
    so its inode changes), which keeps the follow-mode poll cheap on large folders.
    """

    def __init__(self, root: Path, tasks: dict[str, TaskStages]):
        self.root = root.resolve()
        self.tasks = tasks
        self._by_description = {t.description: t.name for t in tasks.values() if t.description}
        self._cache: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def episode_id(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def path_of(self, episode_id: str) -> Path:
        """The file of an id from the listing; anything else (outside the folder, not an episode) is a 404."""
        if (not episode_id or len(episode_id) > 1024 or CONTROL_CHARS.search(episode_id) or episode_id.startswith("/")
                or "\\" in episode_id or ".." in episode_id.split("/") or not episode_id.endswith(".hdf5")):
            raise HTTPException(404, f"episode '{episode_id[:200]}' not found: ids are the paths listed by "
                                     f"/api/episodes, relative to {self.root}")
        path = self.root / episode_id
        if not path.resolve().is_relative_to(self.root) or not path.is_file():
            raise HTTPException(404, f"episode '{episode_id}' not found under {self.root}")
        return path

    def resolve_task(self, attrs: dict[str, Any]) -> str | None:
        """The tasks.yaml name of an episode: its ``task`` attr, or its instruction text matched to a task."""
        for key in ("task", "task_description"):
            value = attrs.get(key)
            if isinstance(value, str):
                if value in self.tasks:
                    return value
                if value in self._by_description:
                    return self._by_description[value]
        return None

    def _summary(self, path: Path, stat: os.stat_result) -> dict[str, Any]:
        summary: dict[str, Any] = {
            "id": self.episode_id(path), "name": path.name, "folder": path.parent.relative_to(self.root).as_posix(),
            "index": episode_index(path), "mtime": stat.st_mtime, "error": None, "task": None, "task_text": "",
            "steps": 0, "cameras": [], "complete": False, "sim": False, "stage_score": None, "scored": False,
            "success": None, "score_source": None, "scored_by": None, "scored_at": None, "notes": "",
            "sim_stage_score": None, "recorded": stat.st_mtime,
            "recorded_at": datetime.fromtimestamp(stat.st_mtime, timezone.utc).isoformat(timespec="seconds"),
            "recovered": False, "camera_rate_low": False}
        try:
            with open_episode_file(path) as f:
                attrs = {k: attr_value(v) for k, v in f.attrs.items()}
                steps = int(f["action"].shape[0]) if "action" in f else 0
                cams = list(f["observations/images"].keys()) if "observations/images" in f else []
                complete = is_complete(f)
        except (EpisodeFileError, OSError, KeyError) as exc:
            summary["error"] = str(exc)  # listed, marked unreadable, never scored
            return summary
        recorded = _epoch(attrs.get("recorded_at")) or stat.st_mtime
        score = attrs.get("stage_score")
        summary.update(
            task=self.resolve_task(attrs), task_text=str(attrs.get("task_description") or attrs.get("task") or ""),
            steps=steps, cameras=cams, complete=complete, sim=bool(attrs.get("sim", False)),
            stage_score=_finite(score), scored=score is not None,
            success=None if score is None and "success" not in attrs else bool(attrs.get("success")),
            score_source=attrs.get("score_source") or ("sim" if score is not None else None),
            scored_by=attrs.get("scored_by"), scored_at=attrs.get("scored_at"), notes=attrs.get("score_notes", ""),
            sim_stage_score=_finite(attrs.get("sim_stage_score")), recorded=recorded,
            recorded_at=datetime.fromtimestamp(recorded, timezone.utc).isoformat(timespec="seconds"),
            recovered=bool(attrs.get("recovered", False)), camera_rate_low=bool(attrs.get("camera_rate_low", False)),
        )
        return summary

    def scan(self) -> list[dict[str, Any]]:
        """All episodes, newest first (recording time, then episode number)."""
        if not self.root.is_dir():
            raise HTTPException(404, f"episode folder {self.root} not found")
        paths: list[Path] = []
        for folder, dirs, files in os.walk(self.root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            if any(name.endswith(".hdf5") for name in files):
                # a symlink out of the folder is not served (path_of refuses it), so not listed either
                paths.extend(p for p in list_episode_files(folder) if p.resolve().is_relative_to(self.root))
        with self._lock:
            fresh: dict[Path, tuple[tuple[int, int, int], dict[str, Any]]] = {}
            for path in paths:
                try:
                    st = path.stat()
                except FileNotFoundError:  # deleted or replaced between listing and stat
                    continue
                key = (st.st_ino, st.st_size, st.st_mtime_ns)
                cached = self._cache.get(path)
                fresh[path] = cached if cached and cached[0] == key else (key, self._summary(path, st))
            self._cache = fresh
            summaries = [s for _, s in fresh.values()]
        summaries.sort(key=lambda s: (s["recorded"], s["index"] if s["index"] is not None else -1, s["id"]),
                       reverse=True)
        return summaries

    def summary(self, path: Path) -> dict[str, Any]:
        for s in self.scan():
            if s["id"] == self.episode_id(path):
                return s
        raise HTTPException(404, f"episode {self.episode_id(path)} not found under {self.root}")


def _check_name(value: str) -> str:
    value = value.strip()
    if not value or CONTROL_CHARS.search(value):
        raise ValueError("scorer must be a non-empty name without control characters")
    return value


class ScoreRequest(BaseModel):
    """POST /api/score: the stage score (0 or a stage score of the task) of one episode."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=1024, description="episode id from /api/episodes")
    score: float = Field(ge=0, le=100, description="0 or one of the task's stage scores")
    scorer: str = Field(min_length=1, max_length=64, description="the operator's name")
    notes: str | None = Field(default=None, max_length=MAX_NOTES_CHARS)
    task: str | None = Field(default=None, max_length=128,
                             description="tasks.yaml name, only for an episode whose task is unknown")

    _scorer_is_a_name = field_validator("scorer")(_check_name)


class NotesRequest(BaseModel):
    """POST /api/notes: the operator's notes of one episode, without changing its score."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(min_length=1, max_length=1024)
    notes: str = Field(max_length=MAX_NOTES_CHARS)
    scorer: str = Field(min_length=1, max_length=64)

    _scorer_is_a_name = field_validator("scorer")(_check_name)


class RecordRequest(BaseModel):
    """POST /api/record: start, stop or discard an episode of the recorder node."""

    model_config = ConfigDict(extra="forbid")
    command: Literal["start", "stop", "discard"]
    task: str | None = Field(default=None, max_length=256,
                             description="start: a task of tasks.yaml, or any task text (a real-robot task)")

    @field_validator("task")
    @classmethod
    def _task_is_text(cls, value: str | None) -> str | None:
        if value is not None and CONTROL_CHARS.search(value):
            raise ValueError("task must be text without control characters")
        return value


class RecorderBridge:
    """The recorder node's RecordEpisode service for the page: a :class:`record_client.RecordClient`, made on the
    first request that needs it, and only where rclpy can be imported (the page works without ROS).

    Args:
        namespace: the robot namespace of the recorder ('' = none).
    """

    def __init__(self, namespace: str = ""):
        self.namespace = namespace
        self._client: Any = None
        self._lock = threading.Lock()
        self.reason = ""
        if importlib.util.find_spec("rclpy") is None:
            self.reason = "ROS 2 (rclpy) is not installed here: record with record_demos on the robot computer"

    @property
    def available(self) -> bool:
        return not self.reason

    def call(self, command: str, **fields: str) -> RecordAnswer:
        with self._lock:
            if self.reason:
                raise RecorderUnavailable(self.reason)
            if self._client is None:
                try:
                    from .record_client import RecordClient

                    self._client = RecordClient(namespace=self.namespace, node_name=f"rollout_scoring_{os.getpid()}")
                except Exception as exc:  # noqa: BLE001 - no ROS here after all (e.g. interfaces not built)
                    self.reason = f"ROS 2 could not start here ({type(exc).__name__}: {exc})"
                    raise RecorderUnavailable(self.reason) from None
            client = self._client
        return client.call(command, **fields)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


class BodySizeLimit:
    """ASGI middleware: 413 for a request body over ``max_bytes``, by Content-Length or while it streams in."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        message = (f"request body too large: the limit is {self.max_bytes} bytes "
                   f"(a score with notes of up to {MAX_NOTES_CHARS} characters fits)")
        try:
            too_large = length is not None and int(length) > self.max_bytes
        except ValueError:
            too_large = False
        if too_large:
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> dict:
            nonlocal received
            msg = await receive()
            if msg["type"] == "http.request":
                received += len(msg.get("body", b""))
                if received > self.max_bytes:
                    raise HTTPException(413, message)
            return msg

        await self.app(scope, limited_receive, send)


def _host_of(header: str) -> str:
    """Host header without its port ('[::1]:8765' -> '::1')."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def create_app(root: str | os.PathLike[str], *, tasks: dict[str, TaskStages] | None = None,
               contract: Contract | None = None, token: str | None = None, scorer: str = "", poll_s: float = 2.0,
               allowed_hosts: list[str] | None = None, max_body_bytes: int = MAX_BODY_BYTES,
               recorder: Any = None) -> FastAPI:
    """The scoring app over ``root``.

    Args:
        root: episode folder, searched recursively for finished ``*.hdf5`` episodes.
        tasks: task stages by name (default: :func:`load_task_stages`).
        contract: the robot contract, for joint names and the control rate (default: the installed one).
        token: when set, every request needs it (cookie set by ``/?token=...``, or header ``X-Scoring-Token``).
        scorer: default scorer name shown in the page (the page remembers the last one used).
        poll_s: how often the page polls the folder for new episodes (follow mode).
        allowed_hosts: Host header values accepted (None: any). Bound to loopback, only loopback names,
            which stops DNS-rebinding pages in the operator's browser from reaching the app.
        max_body_bytes: larger request bodies are refused with 413.
        recorder: the record buttons' way to the recorder node (a :class:`RecorderBridge`, or anything with
            ``available``, ``reason`` and ``call(command, **fields) -> RecordAnswer``); None: no buttons.
    """
    tasks = load_task_stages() if tasks is None else tasks
    contract = load_contract() if contract is None else contract
    index = EpisodeIndex(Path(root), tasks)
    app = FastAPI(title="rollout scoring", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.index = index

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            if err.get("type") == "json_invalid":
                problems.append(f"the body is not valid JSON ({err.get('ctx', {}).get('error', 'decode error')})")
                continue
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query"))
            problems.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "malformed request: " + "; ".join(problems)}, status_code=422)

    # inside the guard, so that its receive is the one the route reads the body through (an HTTPException raised
    # there reaches FastAPI as such; raised under the guard's task group it would turn into a 400)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)

    @app.middleware("http")
    async def _guard(request: Request, call_next: Any) -> Response:
        if allowed_hosts is not None and _host_of(request.headers.get("host", "")) not in allowed_hosts:
            return JSONResponse({"detail": f"host '{request.headers.get('host', '')}' not served (allowed: "
                                           f"{', '.join(allowed_hosts)})"}, status_code=400)
        if request.method not in ("GET", "HEAD"):
            origin = request.headers.get("origin")
            if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host", ""):
                return JSONResponse({"detail": f"cross-origin request from {origin} refused"}, status_code=403)
            # JSON only: a cross-site HTML form cannot send it without a CORS preflight, which we never grant
            kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind != "application/json":
                return JSONResponse({"detail": f"expected Content-Type application/json, got '{kind or 'none'}'"},
                                    status_code=415)
        if token:
            offered = (request.headers.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
                       or request.query_params.get("token") or "")
            if not hmac.compare_digest(offered.encode(), token.encode()):
                return JSONResponse({"detail": "token required: open the page as http://HOST:PORT/?token=TOKEN "
                                               "(the token given to rollout_scoring --token)"}, status_code=401)
            if request.url.path == "/" and "token" in request.query_params:
                # trade the token in the address bar for a cookie, so it leaves the URL and history
                response = RedirectResponse("/", status_code=303)
                response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
                return response
        return await call_next(request)

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/api/config")
    def config() -> dict[str, Any]:
        return {"root": str(index.root), "scorer": scorer, "poll_s": poll_s, "max_notes_chars": MAX_NOTES_CHARS,
                "control_rate_hz": contract.control_rate_hz,
                "tasks": {name: t.as_json() for name, t in tasks.items()}}

    @app.get("/api/episodes")
    def episodes(task: str | None = Query(None, max_length=128),
                 scored: Literal["all", "scored", "unscored", "operator", "sim"] = "all",
                 success: Literal["all", "true", "false"] = "all",
                 limit: int = Query(5000, ge=1, le=100_000)) -> dict[str, Any]:
        if task is not None and task != "" and task != "unknown" and task not in tasks:
            raise HTTPException(422, f"task '{task}' is not in tasks.yaml (known: {sorted(tasks)}, or 'unknown')")
        found = index.scan()
        shown = []
        for s in found:
            if task == "unknown" and s["task"] is not None:
                continue
            if task and task != "unknown" and s["task"] != task:
                continue
            if scored == "scored" and not s["scored"] or scored == "unscored" and s["scored"]:
                continue
            if scored in ("operator", "sim") and (not s["scored"] or s["score_source"] != scored):
                continue
            if success != "all" and (not s["scored"] or bool(s["success"]) != (success == "true")):
                continue
            shown.append(s)
        return {"episodes": shown[:limit], "total": len(found), "matching": len(shown),
                "latest_id": found[0]["id"] if found else None}

    @app.get("/api/episode")
    def episode(id: str = Query(..., max_length=1024)) -> dict[str, Any]:
        path = index.path_of(id)
        try:
            ep = read_act_episode(path, load_images=False)
            history = read_rollout_history(path)
            with open_episode_file(path) as f:
                cams = list(f["observations/images"].keys()) if "observations/images" in f else []
                valid = {c: np.asarray(f[f"observations/frame_valid/{c}"][()], bool).astype(int).tolist()
                         for c in cams if f"observations/frame_valid/{c}" in f}
        except EpisodeFileError as exc:
            raise HTTPException(409, str(exc)) from None
        summary = index.summary(path)
        attrs = {k: _finite(v) for k, v in ep.attrs.items()}
        return {**summary, "attrs": attrs, "cameras": cams, "frame_valid": valid,
                "joint_labels": joint_labels(contract, ep.qpos.shape[1]), "qpos": _rows(ep.qpos), "action": _rows(ep.action),
                "stage_history": history["stage_history"].astype(int).tolist(),
                "chunk_values": _rows(history["chunk_values"])}

    @app.get("/api/frame")
    def frame(id: str = Query(..., max_length=1024), cam: str = Query(..., max_length=128),
              step: int = Query(..., ge=0), fmt: Literal["jpeg", "png"] = "jpeg") -> Response:
        path = index.path_of(id)
        try:
            with open_episode_file(path) as f:
                cams = list(f["observations/images"].keys()) if "observations/images" in f else []
                if cam not in cams:
                    raise HTTPException(404, f"camera '{cam}' not in {id} (it has {cams})")
                steps = int(f[f"observations/images/{cam}"].shape[0])
                if step >= steps:
                    raise HTTPException(422, f"step {step} outside 0..{steps - 1} of {id}")
                rgb = read_act_frames(f, [step], [cam])[cam][0]
        except EpisodeFileError as exc:
            raise HTTPException(409, str(exc)) from None
        if fmt == "png":
            import cv2

            ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            data, media = buf.tobytes(), "image/png"
        else:
            data, media = encode_jpeg(rgb, JPEG_QUALITY).tobytes(), "image/jpeg"
        # frames of an episode never change (scoring rewrites only attributes): let the browser keep them
        return Response(data, media_type=media, headers={"Cache-Control": "private, max-age=3600"})

    @app.post("/api/score")
    def score(body: ScoreRequest) -> dict[str, Any]:
        path = index.path_of(body.id)
        try:
            with open_episode_file(path) as f:
                attrs = {k: attr_value(v) for k, v in f.attrs.items()}
        except EpisodeFileError as exc:
            raise HTTPException(409, str(exc)) from None
        task_name = index.resolve_task(attrs)
        extra: dict[str, Any] = {}
        if body.task is not None and body.task != task_name:
            if task_name is not None:
                raise HTTPException(422, f"{body.id} is a '{task_name}' episode; task '{body.task}' does not apply")
            if body.task not in tasks:
                raise HTTPException(422, f"task '{body.task}' is not in tasks.yaml (known: {sorted(tasks)})")
            task_name = body.task
            extra["task"] = task_name
        if task_name is None:
            raise HTTPException(422, f"{body.id}: its task is unknown ({attrs.get('task') or 'no task attr'}); "
                                     f"choose one of {sorted(tasks)} in the page (request field 'task')")
        spec = tasks[task_name]
        if body.score not in spec.allowed_scores:
            raise HTTPException(422, f"score {body.score:g} is not a stage score of '{task_name}' "
                                     f"(allowed: {', '.join(map(str, spec.allowed_scores))})")
        try:
            set_episode_score(path, body.score, scorer=body.scorer, stages_reached=spec.stages_reached(body.score),
                              notes=body.notes, extra=extra)
        except EpisodeFileError as exc:
            raise HTTPException(409, str(exc)) from None
        return index.summary(path)

    @app.post("/api/notes")
    def notes(body: NotesRequest) -> dict[str, Any]:
        path = index.path_of(body.id)
        try:
            update_episode_attrs(path, {"score_notes": body.notes, "notes_by": body.scorer,
                                        "notes_at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        except EpisodeFileError as exc:
            raise HTTPException(409, str(exc)) from None
        return index.summary(path)

    def recorder_reason() -> str:
        if recorder is None:
            return "started without ROS (rollout_scoring --no-ros, or a page made without a recorder)"
        return recorder.reason

    @app.get("/api/record")
    def record_status() -> dict[str, Any]:
        if recorder is None or not recorder.available:
            return {"available": False, "reachable": False, "reason": recorder_reason()}
        try:
            answer = recorder.call("status")
        except RecorderUnavailable as exc:
            return {"available": recorder.available, "reachable": False, "reason": str(exc)}
        return {"available": True, "reachable": True, **answer.as_json()}

    @app.post("/api/record")
    def record(body: RecordRequest) -> dict[str, Any]:
        if recorder is None or not recorder.available:
            raise HTTPException(503, f"no recorder from this page: {recorder_reason()}")
        fields: dict[str, str] = {}
        if body.command == "start":
            name = (body.task or "").strip()
            if not name:
                raise HTTPException(422, f"choose the task to record (a task of tasks.yaml: {sorted(tasks)}, or "
                                         f"any task text)")
            spec = tasks.get(name)
            fields = {"task": name, "task_description": spec.description if spec and spec.description else name,
                      "source": "scoring_page"}
        try:
            answer = recorder.call(body.command, **fields)
        except RecorderUnavailable as exc:
            raise HTTPException(503, str(exc)) from None
        if not answer.success:
            raise HTTPException(409, f"{body.command} refused by the recorder: {answer.message}")
        return answer.as_json()

    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rollout_scoring", description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path, help="episode folder (searched recursively for episode files)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1: this machine only); any other needs --token")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--token", default=os.environ.get("ROLLOUT_SCORING_TOKEN") or None,
                   help="secret every request must carry (open /?token=...); required off localhost "
                        "(default: $ROLLOUT_SCORING_TOKEN)")
    p.add_argument("--scorer", default="", help="default scorer name shown in the page (default: your login)")
    p.add_argument("--tasks", type=Path, default=None,
                   help=f"tasks.yaml (default: ${TASKS_ENV_VAR}, else the shipped config/tasks.yaml)")
    p.add_argument("--poll-s", type=float, default=2.0, help="seconds between folder polls in follow mode")
    p.add_argument("--namespace", default="", help="robot namespace of the recorder the record buttons drive")
    p.add_argument("--no-ros", action="store_true",
                   help="no record buttons (never talk to ROS 2, even where it is installed)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    loopback = is_loopback(args.host)
    if not loopback and not args.token:
        print(f"error: --host {args.host} serves other machines: also give --token SECRET (at least "
              f"{MIN_TOKEN_CHARS} characters), or bind 127.0.0.1 and use an SSH tunnel", file=sys.stderr)
        return 2
    if args.token is not None and len(args.token) < MIN_TOKEN_CHARS:
        print(f"error: --token must have at least {MIN_TOKEN_CHARS} characters; e.g. "
              f"python3 -c 'import secrets; print(secrets.token_hex(16))'", file=sys.stderr)
        return 2
    if not args.folder.is_dir():
        print(f"error: {args.folder}: episode folder not found", file=sys.stderr)
        return 2
    if not 0.2 <= args.poll_s <= 600:
        print(f"error: --poll-s {args.poll_s}: expected 0.2-600 seconds", file=sys.stderr)
        return 2
    try:
        tasks = load_task_stages(args.tasks)
        contract = load_contract()
    except (ScoringConfigError, ContractError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    scorer = args.scorer or _login_name()
    recorder = None if args.no_ros else RecorderBridge(args.namespace)
    app = create_app(args.folder, tasks=tasks, contract=contract, token=args.token, scorer=scorer, poll_s=args.poll_s,
                     allowed_hosts=list(LOOPBACK_NAMES) if loopback else None, recorder=recorder)
    import uvicorn

    shown_host = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown_host}:{args.port}/" + (f"?token={args.token}" if args.token else "")
    count = len(app.state.index.scan())
    print(f"scoring {count} episodes in {args.folder.resolve()} (tasks: {', '.join(tasks)}); open {url}", flush=True)
    try:
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    except KeyboardInterrupt:
        pass
    finally:
        if recorder is not None:
            recorder.close()
    return 0


def _login_name() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


if __name__ == "__main__":
    raise SystemExit(main())
