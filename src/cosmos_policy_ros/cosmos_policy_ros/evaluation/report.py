"""Evaluation reports as plain data: per-episode records, statistics, the summary, merged tables.

No ROS here: ``aloha_eval`` fills :class:`EpisodeRecord` objects over ROS, this module turns them into
the JSON report (``build_report``), the one-screen summary (``format_summary``) and, for several
reports side by side (policy, scripted, replay), a markdown table (``merge_table``).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from .node_settings import settings_differences, settings_summary

REPORT_FORMAT = "aloha_eval/1"
FAILED_STATUSES = ("fault", "rejected", "no_server", "timed_out", "lost", "reset_failed")
NOMINAL_PERIOD_MS = 20.0


class ReportError(ValueError):
    """A report file that cannot be read or merged."""


@dataclass
class EpisodeRecord:
    """One evaluated episode.

    ``stage_score`` is None when no score arrived; ``status`` is a :class:`~cosmos_policy_ros.client.RunStatus`
    value (``completed``, ``fault``, ...) or ``reset_failed``; timing arrays are the policy node's
    (empty for the scripted and replay drivers).
    """

    task: str
    seed: int
    stage_score: float | None
    stage: str = ""
    success: bool = False
    status: str = "completed"
    end_reason: str = ""
    detail: str = ""
    steps: int = 0
    chunks: int = 0
    wall_s: float = 0.0
    final_value: float | None = None
    stall_ticks: int = 0
    planning_fallbacks: int = 0  # planning chunks that ran out of time (realtime only)
    chunk_latency_ms: list[float] = field(default_factory=list)
    chunk_values: list[float | None] = field(default_factory=list)  # per chunk; None: a planning fallback
    chunk_value_spreads: list[float | None] = field(default_factory=list)
    obs_to_command_ms: list[float] = field(default_factory=list)
    tick_period_ms: list[float] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.status in FAILED_STATUSES

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for key in ("chunk_latency_ms", "obs_to_command_ms", "tick_period_ms"):
            d[key] = [round(float(v), 3) for v in d[key]]
        for key in ("chunk_values", "chunk_value_spreads"):
            d[key] = [None if v is None else round(float(v), 4) for v in d[key]]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EpisodeRecord:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# ---- statistics ----
def finite(values: Iterable[float]) -> np.ndarray:
    arr = np.asarray(list(values), dtype=np.float64)
    return arr[np.isfinite(arr)]


def percentile(values: Iterable[float], q: float) -> float | None:
    """The q-th percentile (0-100, linear interpolation between order statistics); None when empty."""
    arr = finite(values)
    if not 0 <= q <= 100:
        raise ValueError(f"percentile q={q} must be within [0, 100]")
    return float(np.percentile(arr, q)) if arr.size else None


def stats(values: Iterable[float]) -> dict[str, float | int | None]:
    """``{n, p50, p99, mean, max}`` of the finite values (None entries when there are none)."""
    arr = finite(values)
    if not arr.size:
        return {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
    return {"n": int(arr.size), "p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)),
            "mean": float(arr.mean()), "max": float(arr.max())}


def period_errors_ms(tick_period_ms: Iterable[float], nominal_ms: float = NOMINAL_PERIOD_MS) -> np.ndarray:
    """|tick period - nominal period| per executed step, in ms."""
    return np.abs(finite(tick_period_ms) - nominal_ms)


def score_key(score: float) -> str:
    return f"{score:g}"


def distribution(scores: Iterable[float | None], levels: Sequence[float] = ()) -> dict[str, int]:
    """Episodes per stage score, every level listed (zero counts too), in ascending order.

    ``levels`` are the task's stage scores (0 is always added); a score outside them gets its own key,
    episodes without a score count under ``"none"``.
    """
    counts: dict[float, int] = {float(level): 0 for level in (0, *levels)}
    missing = 0
    for s in scores:
        if s is None or not math.isfinite(float(s)):
            missing += 1
            continue
        counts[float(s)] = counts.get(float(s), 0) + 1
    out = {score_key(k): counts[k] for k in sorted(counts)}
    if missing:
        out["none"] = missing
    return out


def summarize_task(records: Sequence[EpisodeRecord], levels: Sequence[float] = ()) -> dict[str, Any]:
    """Success rate, stage-score distribution and mean, end reasons and faults of one task's episodes."""
    scores = [r.stage_score for r in records]
    scored = finite(s for s in scores if s is not None)
    successes = sum(bool(r.success) for r in records)
    end_reasons: dict[str, int] = {}
    failures: dict[str, int] = {}
    for r in records:
        key = r.end_reason or r.status
        end_reasons[key] = end_reasons.get(key, 0) + 1
        if r.failed:
            failures[key] = failures.get(key, 0) + 1
    return {
        "episodes": len(records),
        "successes": successes,
        "success_rate": successes / len(records) if records else None,
        "mean_stage_score": float(scored.mean()) if scored.size else None,
        "stage_score_counts": distribution(scores, levels),
        "failed_episodes": sum(failures.values()),
        "failures": failures,
        "end_reasons": end_reasons,
        "mean_wall_s": float(np.mean([r.wall_s for r in records])) if records else None,
    }


def summarize_timing(records: Sequence[EpisodeRecord], nominal_period_ms: float = NOMINAL_PERIOD_MS
                     ) -> dict[str, Any] | None:
    """Policy-node timing over episodes: chunk latency, control-period error, obs->command, stalls.

    None when no episode carries timing (scripted and replay drivers).
    """
    timed = [r for r in records if r.chunk_latency_ms or r.tick_period_ms or r.obs_to_command_ms]
    if not timed:
        return None
    stalls = [int(r.stall_ticks) for r in timed]
    return {
        "nominal_period_ms": nominal_period_ms,
        "chunk_latency_ms": stats(v for r in timed for v in r.chunk_latency_ms),
        "control_period_error_ms": stats(period_errors_ms([v for r in timed for v in r.tick_period_ms],
                                                          nominal_period_ms)),
        "obs_to_command_ms": stats(v for r in timed for v in r.obs_to_command_ms),
        "stall_ticks": {"total": int(sum(stalls)), "per_episode_mean": float(np.mean(stalls)),
                        "episodes_with_stalls": int(sum(s > 0 for s in stalls))},
    }


def build_report(driver: str, records: Sequence[EpisodeRecord], *, tasks: Sequence[str],
                 levels_by_task: Mapping[str, Sequence[float]] | None = None, clock: str = "unknown",
                 label: str | None = None, config: Mapping[str, Any] | None = None,
                 nominal_period_ms: float = NOMINAL_PERIOD_MS) -> dict[str, Any]:
    """The JSON-ready report: per task a summary, timing and the episodes, plus an overall summary."""
    levels_by_task = levels_by_task or {}
    per_task = {}
    for task in tasks:
        mine = [r for r in records if r.task == task]
        per_task[task] = {"summary": summarize_task(mine, levels_by_task.get(task, ())),
                          "timing": summarize_timing(mine, nominal_period_ms),
                          "episodes": [r.to_dict() for r in mine]}
    all_levels = sorted({float(x) for levels in levels_by_task.values() for x in levels})
    return {
        "format": REPORT_FORMAT,
        "driver": driver,
        "label": label or driver,
        "clock": clock,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": dict(config or {}),
        "tasks": per_task,
        "overall": {"summary": summarize_task(list(records), all_levels),
                    "timing": summarize_timing(list(records), nominal_period_ms)},
    }


def records_of(report: Mapping[str, Any], task: str | None = None) -> list[EpisodeRecord]:
    tasks = report["tasks"] if task is None else {task: report["tasks"][task]}
    return [EpisodeRecord.from_dict(e) for t in tasks.values() for e in t["episodes"]]


# goal options that make two runs different evaluations (a resumed report must not mix them)
RESUME_KEYS = ("mode", "max_steps", "num_candidates", "action_steps", "replay_episode")
# episodes a resumed run keeps: those that ran as asked, and those the safety gate ended (the policy's outcome);
# a cancelled or preempted one was cut short (e.g. the node shutting down), a failed one is the graph's fault
KEPT_STATUSES = ("completed", "refused")


def resumable_records(report: Mapping[str, Any], *, driver: str, label: str, clock: str, tasks: Sequence[str],
                      seeds: range, config: Mapping[str, Any], path: str | os.PathLike[str] = "the report",
                      policy_node: Mapping[str, Any] | None = None) -> list[EpisodeRecord]:
    """The finished episodes of an earlier run of the same evaluation, which a resumed run keeps and skips.

    "The same evaluation" is the same driver, label (which names the checkpoint in a results table), clock and
    goal options, and the same policy node parameters where both runs could read them (`policy_node`), over
    seeds within this run's `seeds`; anything else raises :class:`ReportError` naming the
    difference, and the report is left as it is. Only episodes that ran to their end are kept (KEPT_STATUSES):
    a failed, cancelled or preempted one is tried again.
    """
    old = report.get("config") or {}
    differences = [f"{what} {theirs!r} (this run: {mine!r})" for what, theirs, mine in (
        ("driver", report.get("driver"), driver), ("label", report.get("label"), label),
        ("clock", report.get("clock"), clock),
        *((key, old[key], config.get(key)) for key in RESUME_KEYS if key in old)) if theirs != mine]
    if old.get("policy_node") and policy_node:
        differences += settings_differences(old["policy_node"], policy_node)
    others = sorted(set(report["tasks"]) - set(tasks))
    if others:
        differences.append(f"tasks {others} that this run (--tasks {','.join(tasks)}) would drop")
    outside = sorted({r.seed for r in records_of(report)} - set(seeds))
    if outside:
        differences.append(f"seeds {outside[0]}..{outside[-1]} ({len(outside)}) outside this run's "
                           f"{seeds.start}-{seeds.stop - 1} (widen --seed-start / --episodes)")
    if differences:
        raise ReportError(f"{path}: cannot resume a different evaluation: {'; '.join(differences)}. Give another "
                          f"--out (or resume with the same options)")
    kept: dict[tuple[str, int], EpisodeRecord] = {}
    for record in records_of(report):
        if record.status in KEPT_STATUSES:
            kept[(record.task, record.seed)] = record
    return sorted(kept.values(), key=lambda r: (r.task, r.seed))


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(report, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def load_report(path: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path}: report not found (aloha_eval writes it with --out)") from None
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: not JSON ({exc})") from None
    if not isinstance(report, dict) or report.get("format") != REPORT_FORMAT:
        raise ReportError(f"{path}: not an aloha_eval report (expected \"format\": \"{REPORT_FORMAT}\")")
    return report


def below_min_success(report: Mapping[str, Any], min_success: float) -> list[str]:
    """Tasks whose success rate is below ``min_success`` (0-1), each as a sentence."""
    out = []
    for task, entry in report["tasks"].items():
        s = entry["summary"]
        rate = s["success_rate"]
        if rate is None or rate < min_success:
            shown = "no episodes" if rate is None else f"{s['successes']}/{s['episodes']} = {rate:.0%}"
            out.append(f"{task}: success {shown} below --min-success {min_success:.0%}")
    return out


# ---- text ----
def _fmt(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_success(summary: Mapping[str, Any]) -> str:
    if not summary["episodes"]:
        return "-"
    return f"{summary['successes']}/{summary['episodes']} ({summary['success_rate']:.0%})"


def format_counts(counts: Mapping[str, int]) -> tuple[str, str]:
    """(``"0/25/50/75/100"``, ``"1/0/0/2/7"``) from a stage-score distribution."""
    return "/".join(counts), "/".join(str(n) for n in counts.values())


def seed_range(report: Mapping[str, Any]) -> str:
    seeds = sorted({e["seed"] for t in report["tasks"].values() for e in t["episodes"]})
    if not seeds:
        return "none"
    if seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"{seeds[0]}-{seeds[-1]}" if len(seeds) > 1 else str(seeds[0])
    return ",".join(map(str, seeds))


def format_timing(timing: Mapping[str, Any], clock: str) -> list[str]:
    note = " (lockstep: wall-clock periods are not the robot's)" if clock == "lockstep" else ""
    lines = [f"policy node timing{note}:", f"  {'':24s}{'p50':>9s}{'p99':>9s}{'n':>8s}"]
    for key, name in (("chunk_latency_ms", "chunk latency ms"),
                      ("control_period_error_ms", "|period - 20 ms| ms"),
                      ("obs_to_command_ms", "obs -> command ms")):
        s = timing[key]
        lines.append(f"  {name:24s}{_fmt(s['p50']):>9s}{_fmt(s['p99']):>9s}{s['n']:>8d}")
    st = timing["stall_ticks"]
    lines.append(f"  stall ticks at chunk boundaries: {st['total']} ({st['episodes_with_stalls']} episodes "
                 f"with stalls)")
    return lines


def format_summary(report: Mapping[str, Any], title: str = "aloha_eval") -> str:
    """The one-screen summary printed at the end of ``aloha_eval`` (and ``run_policy``)."""
    lines = [f"{title}: {report['label']} (driver {report['driver']}, clock {report['clock']}, "
             f"seeds {seed_range(report)})"]
    header = f"{'task':16s}{'success':>16s}{'mean score':>12s}  {'stage scores':s}"
    lines.append(header)
    rows = list(report["tasks"].items())
    if len(rows) > 1:
        rows.append(("all tasks", report["overall"]))
    for task, entry in rows:
        s = entry["summary"]
        levels, counts = format_counts(s["stage_score_counts"])
        row = f"{task:16s}{format_success(s):>16s}{_fmt(s['mean_stage_score']):>12s}  {counts} ({levels})"
        if s["failed_episodes"]:
            reasons = ", ".join(f"{k} {n}" for k, n in s["failures"].items())
            row += f"  FAILED {s['failed_episodes']}: {reasons}"
        lines.append(row)
    timing = report["overall"]["timing"]
    if timing is not None:
        lines += format_timing(timing, report["clock"])
    return "\n".join(lines)


def _unique_labels(reports: Sequence[Mapping[str, Any]]) -> list[str]:
    labels: list[str] = []
    for r in reports:
        label = str(r.get("label") or r.get("driver"))
        base, n = label, 2
        while label in labels:
            label, n = f"{base} ({n})", n + 1
        labels.append(label)
    return labels


def node_settings_of(report: Mapping[str, Any]) -> dict[str, Any] | None:
    """The policy node's parameters a report recorded (None: not a policy run, or a report older than them)."""
    return (report.get("config") or {}).get("policy_node")


def combine_by_label(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Reports with the same label and disjoint tasks (e.g. one run per task) become one column; the timing
    kept is the first report's that has one."""
    combined: list[dict[str, Any]] = []
    for r in reports:
        label = r.get("label") or r.get("driver")
        into = next((c for c in combined if (c.get("label") or c.get("driver")) == label
                     and not set(c["tasks"]) & set(r["tasks"])), None)
        if into is None:
            combined.append({**r, "tasks": dict(r["tasks"]), "overall": dict(r["overall"])})
            continue
        theirs, mine = node_settings_of(into), node_settings_of(r)
        if theirs and mine and settings_differences(theirs, mine):
            raise ReportError(f"reports labelled {label!r} ran different policy node settings "
                              f"({'; '.join(settings_differences(theirs, mine))}): give them different labels")
        into["tasks"].update(r["tasks"])
        if into["overall"].get("timing") is None:
            into["overall"]["timing"] = r["overall"].get("timing")
    return combined


def on_common_seeds(reports: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The reports cut to the seeds that every report holding a task has for it, their summaries recomputed.

    For comparing an evaluation that stopped early (e.g. seeds 1000-1029 of a planned 50) with complete ones
    on the same episodes: a column over more seeds would not be comparable.
    """
    reports = combine_by_label(reports)
    seeds: dict[str, set[int]] = {}
    for r in reports:
        for task, entry in r["tasks"].items():
            mine = {int(e["seed"]) for e in entry["episodes"]}
            seeds[task] = seeds[task] & mine if task in seeds else mine
    out = []
    for r in reports:
        records = [rec for task in r["tasks"] for rec in records_of(r, task) if rec.seed in seeds[task]]
        levels = {task: [float(k) for k in entry["summary"]["stage_score_counts"] if k not in ("none", "0")]
                  for task, entry in r["tasks"].items()}
        cut = build_report(r["driver"], records, tasks=list(r["tasks"]), levels_by_task=levels, clock=r["clock"],
                           label=r.get("label"), config=r.get("config"))
        out.append({**cut, "created": r.get("created", cut["created"])})
    return out


def merge_table(reports: Sequence[Mapping[str, Any]]) -> str:
    """Several reports side by side as markdown (one column per label), for docs/results.md."""
    if not reports:
        raise ReportError("nothing to merge: give at least one report")
    reports = combine_by_label(reports)
    labels = _unique_labels(reports)
    tasks: list[str] = []
    for r in reports:
        tasks += [t for t in r["tasks"] if t not in tasks]

    def row(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    lines = [row(["task", "metric", *labels]), row(["---"] * (2 + len(labels)))]
    for task in tasks:
        summaries = [r["tasks"].get(task, {}).get("summary") for r in reports]
        level_names = next((format_counts(s["stage_score_counts"])[0] for s in summaries if s), "")
        metrics = [
            ("success", lambda s: format_success(s)),
            ("mean stage score", lambda s: _fmt(s["mean_stage_score"])),
            (f"stage scores {level_names}", lambda s: format_counts(s["stage_score_counts"])[1]),
        ]
        for i, (name, cell) in enumerate(metrics):
            lines.append(row([task if i == 0 else "", name, *(cell(s) if s else "-" for s in summaries)]))
    lines.append(row(["", "clock / seeds", *(f"{r['clock']} / {seed_range(r)}" for r in reports)]))
    shown = [settings_summary(node_settings_of(r)) for r in reports]
    if any(shown):
        lines.append(row(["", "policy node", *(s or "-" for s in shown)]))

    timed = [(label, r["overall"]["timing"]) for label, r in zip(labels, reports) if r["overall"]["timing"]]
    if timed:
        lines += ["", row(["policy node timing", *(label for label, _ in timed)]), row(["---"] * (1 + len(timed)))]
        for key, name in (("chunk_latency_ms", "chunk latency p50 / p99 (ms)"),
                          ("control_period_error_ms", "\\|period - 20 ms\\| p50 / p99 (ms)"),
                          ("obs_to_command_ms", "observation -> command p50 / p99 (ms)")):
            lines.append(row([name, *(f"{_fmt(t[key]['p50'])} / {_fmt(t[key]['p99'])}" for _, t in timed)]))
        lines.append(row(["stall ticks (total)", *(str(t["stall_ticks"]["total"]) for _, t in timed)]))
    return "\n".join(lines) + "\n"
