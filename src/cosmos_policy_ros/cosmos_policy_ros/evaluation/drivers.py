"""What runs one evaluated episode over ROS: the policy (RunPolicy goals), the scripted plan, a demo replay.

Every driver resets the simulator with the same task and seed, so the three are comparable: the
policy driver sends a goal to the running policy node; the scripted driver streams the scripted
demonstration planned from the reset's object poses (the upper bound); the replay driver streams a
recorded demonstration's ``/action`` open loop, ignoring observations (the lower bound).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence

import numpy as np

from aloha_sim.plan_streamer import PlanStreamer, ResetError, SimEpisodes, StageScoreTracker, object_poses_from_reset

from ..client import GoalSpec, Progress, RunPolicyClient, RunResult, RunStatus
from .report import EpisodeRecord

DRIVERS = ("policy", "scripted", "replay")
FINAL_SCORE_TIMEOUT_S = 2.0


def task_levels(task: str) -> list[float]:
    """The stage scores of ``task`` from tasks.yaml (empty for a task only known by its text)."""
    from aloha_sim.tasks import TaskError, load_tasks
    try:
        spec = load_tasks().get(task)
    except TaskError:
        return []
    return [float(s.score) for s in spec.stages] if spec else []


def task_text(task: str) -> str:
    """The instruction of a task name in tasks.yaml, or ``task`` itself when it is already text."""
    from aloha_sim.tasks import TaskError, load_tasks
    try:
        spec = load_tasks().get(task)
    except TaskError:
        spec = None
    return spec.description if spec else task


def detect_clock_mode(node, contract, timeout_s: float = 2.0) -> str:
    """lockstep when the simulator publishes /clock (only its lockstep mode does), else realtime."""
    from aloha_sim.plan_streamer import spin_until

    topic = contract.topic("clock")
    return "lockstep" if spin_until(node, lambda: node.count_publishers(topic) > 0, timeout_s) else "realtime"


def default_episode_timeout_s(steps: int, period_s: float) -> float:
    """A generous bound for one episode: a minute plus 50x the episode's real duration."""
    return 60.0 + 50.0 * steps * period_s


def _record_score(record: EpisodeRecord, score_msg, fallback: float | None) -> None:
    if score_msg is not None:
        record.stage_score, record.stage = float(score_msg.score), score_msg.stage
        record.success = bool(score_msg.success)
    elif fallback is not None:
        record.stage_score, record.success = float(fallback), fallback >= 100.0


class PolicyDriver:
    """Episodes as RunPolicy goals to a running policy node.

    Args:
        node: the evaluator's node (spun by the waits here).
        contract: the robot contract.
        client: the RunPolicy client on ``node``.
        sim: the simulator's episode service, or None on the real robot (no reset: a person resets the
            scene, the task's text comes from tasks.yaml or is given as is).
        clock: the simulator's clock mode (decides how the final stage score is awaited).
        goal_options: RunPolicy.Goal fields besides task / seed (mode, max_steps, max_duration_s, ...);
            ``max_steps`` 0 takes the reset's episode length.
        episode_timeout_s: a run without a result after this is cancelled (None: derived from the length).
    """

    name = "policy"

    def __init__(self, node, contract, client: RunPolicyClient, sim: SimEpisodes | None, clock: str = "realtime",
                 goal_options: dict | None = None, episode_timeout_s: float | None = None):
        self.node = node
        self.contract = contract
        self.client = client
        self.sim = sim
        self.clock = clock
        self.goal_options = dict(goal_options or {})
        self.episode_timeout_s = episode_timeout_s
        self.scores = sim.scores if sim is not None else StageScoreTracker(node, contract)

    def wait_until_subscribed(self, timeout_s: float = 30.0, settle_s: float = 1.0) -> bool:
        """Wait until the policy node subscribes to the joint state and a camera, then a little longer.

        In lockstep the simulator publishes an episode's first observation once, on reset: a goal sent
        before the node's subscriptions are matched would wait for images that never come.
        """
        from aloha_sim.plan_streamer import spin_until

        c = self.contract
        cameras = [c.camera_topic(cam) for cam in c.cameras]
        ready = spin_until(self.node, lambda: self.node.count_subscribers(c.topic("joint_states")) > 0 and any(
            self.node.count_subscribers(t) > 0 for t in cameras), timeout_s)
        settle_until = time.monotonic() + settle_s
        spin_until(self.node, lambda: time.monotonic() >= settle_until, None)
        return ready

    def run_episode(self, task: str, seed: int, on_progress: Callable[[Progress, int], None] | None = None
                    ) -> EpisodeRecord:
        t0 = time.monotonic()
        record = EpisodeRecord(task=task, seed=int(seed), stage_score=None)
        options = dict(self.goal_options)
        if self.sim is not None:
            try:
                response = self.sim.reset(task, seed)
            except ResetError as exc:
                record.status, record.detail, record.wall_s = "reset_failed", str(exc), time.monotonic() - t0
                return record
            text, steps = response.task_description or task, int(response.episode_steps)
        else:
            self.scores.begin_episode(expect_reset=False)
            text, steps = task_text(task), 0
        options["max_steps"] = int(options.get("max_steps") or steps)
        goal = GoalSpec(task=text, seed=int(seed), **options)
        timeout_s = self.episode_timeout_s or default_episode_timeout_s(goal.max_steps or 1000,
                                                                         self.contract.control_period_s)
        callback = None if on_progress is None else (lambda p: on_progress(p, goal.max_steps))
        result = self.client.run(goal, callback, timeout_s=timeout_s)
        score_msg = None
        if self.sim is not None:
            score_msg = self.sim.final_score(task, result.steps_executed, self.clock, FINAL_SCORE_TIMEOUT_S)
        elif self.scores.latest is not None:
            score_msg = self.scores.latest
        fill_from_result(record, result)
        _record_score(record, score_msg, result.final_stage_score)
        record.wall_s = time.monotonic() - t0
        return record

    def cancel(self) -> RunResult | None:
        # at most 2 x 1.5 s for the acknowledgement and the result: launch escalates an unanswered Ctrl-C to
        # SIGTERM after 5 s, and the summary and plot still have to be written (the request itself goes out
        # at once, whether or not we wait for its answer)
        return self.client.cancel(timeout_s=1.5) if self.client.is_running() else None


def fill_from_result(record: EpisodeRecord, result: RunResult) -> None:
    record.status = result.status.value
    record.end_reason = result.end_reason.label if result.end_reason is not None else ""
    record.detail = result.end_detail
    record.steps, record.chunks = result.steps_executed, result.chunks_executed
    record.final_value = result.final_value
    record.chunk_latency_ms = list(result.chunk_latency_ms)
    record.chunk_values = list(result.chunk_values)
    record.chunk_value_spreads = list(result.chunk_value_spreads)
    record.obs_to_command_ms = list(result.obs_to_command_ms)
    record.tick_period_ms = list(result.tick_period_ms)
    record.stall_ticks = result.stall_ticks
    record.planning_fallbacks = result.planning_fallbacks


class PlanDriver:
    """Episodes as a (T, 14) command plan streamed to the simulator (scripted or replayed).

    Args:
        make_plan: ``(task, reset response) -> plan`` for the episode.
    """

    def __init__(self, name: str, node, contract, sim: SimEpisodes, streamer: PlanStreamer,
                 make_plan: Callable[[str, object], np.ndarray], episode_timeout_s: float | None = None):
        self.name = name
        self.node = node
        self.contract = contract
        self.sim = sim
        self.streamer = streamer
        self.make_plan = make_plan
        self.episode_timeout_s = episode_timeout_s

    def run_episode(self, task: str, seed: int, on_progress: Callable[[int, int], None] | None = None
                    ) -> EpisodeRecord:
        t0 = time.monotonic()
        record = EpisodeRecord(task=task, seed=int(seed), stage_score=None)
        try:
            response = self.sim.reset(task, seed)
        except ResetError as exc:
            record.status, record.detail, record.wall_s = "reset_failed", str(exc), time.monotonic() - t0
            return record
        plan = self.make_plan(task, response)
        timeout_s = self.episode_timeout_s or default_episode_timeout_s(len(plan), self.contract.control_period_s)
        completed = self.streamer.play(plan, timeout_s=timeout_s, on_step=on_progress)
        record.steps = self.streamer.steps_sent
        score_msg = self.sim.final_score(task, record.steps, self.streamer.mode)
        _record_score(record, score_msg, None)
        if not completed:
            record.status, record.detail = "timed_out", (f"the simulator stopped answering after {record.steps}/"
                                                         f"{len(plan)} commands ({timeout_s:.0f} s)")
        elif score_msg is None:
            record.status, record.detail = "lost", "no stage score from the simulator"
        else:
            record.end_reason = "max_steps"
        record.wall_s = time.monotonic() - t0
        return record

    def cancel(self) -> None:
        self.streamer.stop()


def scripted_plan(contract) -> Callable[[str, object], np.ndarray]:
    from aloha_sim.scripted import plan_episode

    def make(task: str, response) -> np.ndarray:
        return plan_episode(task, object_poses_from_reset(response), contract)[:response.episode_steps]
    return make


class ReplayError(ValueError):
    """A demonstration that cannot be replayed (missing file, wrong task, wrong width)."""


def load_replay_actions(paths: Sequence[str | os.PathLike[str]], tasks: Sequence[str], joints: int
                        ) -> dict[str, np.ndarray]:
    """``{task: (T, joints) actions}`` from demonstration files, matched to tasks by their ``task`` attribute.

    A file without a ``task`` attribute is accepted only when a single task is evaluated.
    """
    from cosmos_policy.data.act_episode import EpisodeFileError, read_act_episode

    actions: dict[str, np.ndarray] = {}
    for path in paths:
        try:
            episode = read_act_episode(path, load_images=False)
        except EpisodeFileError as exc:
            raise ReplayError(str(exc)) from None
        task = episode.attrs.get("task")
        if task is None:
            if len(tasks) != 1:
                raise ReplayError(f"{path}: no `task` attribute; with several tasks ({list(tasks)}) each replayed "
                                  f"episode must name its task")
            task = tasks[0]
        if task not in tasks:
            raise ReplayError(f"{path}: a {task} demonstration, but the evaluated tasks are {list(tasks)}")
        if task in actions:
            raise ReplayError(f"{path}: a second {task} demonstration (give one --replay-episode per task)")
        if episode.action.ndim != 2 or episode.action.shape[1] != joints or not len(episode.action):
            raise ReplayError(f"{path}: /action has shape {episode.action.shape}, expected (T, {joints})")
        actions[task] = np.asarray(episode.action, dtype=np.float64)
    missing = [t for t in tasks if t not in actions]
    if missing:
        raise ReplayError(f"no demonstration to replay for {missing}: pass --replay-episode PATH.hdf5 per task")
    return actions


def replay_plan(actions: dict[str, np.ndarray]) -> Callable[[str, object], np.ndarray]:
    def make(task: str, response) -> np.ndarray:
        recorded = actions[task]
        steps = int(response.episode_steps) or len(recorded)
        if len(recorded) >= steps:
            return recorded[:steps]
        # a shorter demonstration: hold its last command for the rest of the episode
        return np.concatenate([recorded, np.repeat(recorded[-1:], steps - len(recorded), axis=0)])
    return make


class ProgressLine:
    """A status line rewritten in place on a terminal; elsewhere (launch, logs) only whole lines are printed."""

    def __init__(self, stream=None, live: bool | None = None):
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty() if live is None else live
        self._width = 0

    def update(self, text: str) -> None:
        if not self.live:
            return
        pad = max(0, self._width - len(text))
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self._width = len(text)

    def clear(self) -> None:
        if self.live and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0

    def print(self, text: str) -> None:
        self.clear()
        print(text, file=self.stream, flush=True)


def format_eta(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def format_batch_progress(done: int, total: int, elapsed_s: float) -> str:
    """``[ 3/20  15% | 8.1 s/episode | ETA 2m18s]``."""
    rate = elapsed_s / done if done else 0.0
    eta = format_eta(rate * (total - done)) if done else "?"
    return f"[{done:>{len(str(total))}}/{total} {done / total:4.0%} | {rate:.1f} s/episode | ETA {eta}]"


def format_record(record: EpisodeRecord) -> str:
    """``transfer_cube seed 1000: stage score 100/100 (held_by_left_at_end) SUCCESS | max_steps | 400 steps, 3.1 s``."""
    score = "no stage score" if record.stage_score is None else f"stage score {record.stage_score:.0f}/100"
    stage = f" ({record.stage})" if record.stage else ""
    text = f"{record.task} seed {record.seed}: {score}{stage}{' SUCCESS' if record.success else ''}"
    end = record.end_reason or record.status
    if record.status != RunStatus.COMPLETED.value:
        end = f"{end} {record.status.upper()}" if record.end_reason else record.status.upper()
        if record.detail:
            end += f": {record.detail}"
    return f"{text} | {end} | {record.steps} steps, {record.wall_s:.1f} s"
