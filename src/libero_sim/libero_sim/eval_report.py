"""The LIBERO evaluation report: trials -> success per task, per suite and per seed, a summary and a PNG plot.

Plain Python (matplotlib without pyplot), no ROS: the evaluator writes it, the tests check it on made-up trials.
Averaging follows the release: the success rate of each suite is computed per seed (one full evaluation), then
the three seeds' rates are averaged; the overall figure is the mean over suites.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import protocol


@dataclass
class TrialRecord:
    """One evaluation episode as the evaluator saw it."""

    suite: str
    task_id: int
    init_index: int
    seed: int
    task: str = ""
    success: bool = False
    final_stage_score: float | None = None
    steps: int = 0
    chunks: int = 0
    end_reason: str = ""
    end_detail: str = ""
    failed: bool = False  # the graph failed (no result, a fault): counted as an unsuccessful trial and listed
    wall_s: float = 0.0
    chunk_latency_ms: list[float] = field(default_factory=list)
    tick_period_ms: list[float] = field(default_factory=list)


def _rate(values: Sequence[bool]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def build_report(records: Sequence[TrialRecord], *, checkpoint: str, label: str = "",
                 settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Success per task and suite for each seed, seed-averaged rates, faults and timing."""
    seeds = sorted({r.seed for r in records})
    suites = [s for s in dict.fromkeys(r.suite for r in records)]
    per_suite: dict[str, Any] = {}
    for suite in suites:
        rows = [r for r in records if r.suite == suite]
        tasks: dict[str, Any] = {}
        for task_id in sorted({r.task_id for r in rows}):
            trs = [r for r in rows if r.task_id == task_id]
            by_seed = {str(s): _rate([r.success for r in trs if r.seed == s]) for s in seeds}
            rates = [v for v in by_seed.values() if v is not None]
            tasks[str(task_id)] = {"task": trs[0].task, "trials": len(trs), "successes": sum(r.success for r in trs),
                                   "success_rate_by_seed": by_seed,
                                   "success_rate": float(np.mean(rates)) if rates else None}
        by_seed = {str(s): _rate([r.success for r in rows if r.seed == s]) for s in seeds}
        rates = [v for v in by_seed.values() if v is not None]
        per_suite[suite] = {"trials": len(rows), "successes": sum(r.success for r in rows),
                            "success_rate_by_seed": by_seed, "success_rate": float(np.mean(rates)) if rates else None,
                            "tasks": tasks}
    suite_rates = [v["success_rate"] for v in per_suite.values() if v["success_rate"] is not None]
    latencies = [v for r in records for v in r.chunk_latency_ms]
    periods = [v for r in records for v in r.tick_period_ms]
    steps = sum(r.steps for r in records)
    wall = sum(r.wall_s for r in records)
    return {
        "kind": "libero_eval", "label": label or Path(checkpoint).name or "policy", "checkpoint": checkpoint,
        "settings": dict(settings or {}), "seeds": seeds, "suites": per_suite,
        "average_success_rate": float(np.mean(suite_rates)) if suite_rates else None,
        "paper": {"suites": protocol.PAPER_SUCCESS, "average": protocol.PAPER_AVERAGE},
        "failed_trials": [asdict(r) | {"chunk_latency_ms": [], "tick_period_ms": []} for r in records if r.failed],
        "timing": {"trials": len(records), "steps": steps, "wall_s": wall,
                   "steps_per_s": steps / wall if wall > 0 else None,
                   "chunk_latency_ms_median": float(np.median(latencies)) if latencies else None,
                   "tick_period_ms_median": float(np.median(periods)) if periods else None},
        "trials": [asdict(r) for r in records],
    }


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:5.1f}%"


def format_summary(report: Mapping[str, Any]) -> str:
    lines = [f"libero_eval: {report['label']} ({report['checkpoint']}), seeds {report['seeds']}"]
    for suite, s in report["suites"].items():
        paper = report["paper"]["suites"].get(suite)
        seeds = ", ".join(f"{k}: {_pct(v)}" for k, v in s["success_rate_by_seed"].items())
        lines.append(f"  {suite:15s} {_pct(s['success_rate'])}  ({s['successes']}/{s['trials']} trials; per seed "
                     f"{seeds}){f'  paper {paper:.1f}%' if paper is not None else ''}")
        for task_id, t in s["tasks"].items():
            lines.append(f"    task {task_id:>2}: {_pct(t['success_rate'])} ({t['successes']}/{t['trials']})  {t['task']}")
    lines.append(f"  average        {_pct(report['average_success_rate'])}  (paper {report['paper']['average']:.1f}% "
                 f"with the released checkpoint on a GPU)")
    timing = report["timing"]
    if timing["steps_per_s"]:
        lat = timing["chunk_latency_ms_median"]
        lines.append(f"  {timing['steps']} steps in {timing['wall_s']:.0f} s: {timing['steps_per_s']:.2f} steps/s "
                     f"through ROS" + (f", median chunk latency {lat:.0f} ms" if lat is not None else ""))
    if report["failed_trials"]:
        lines.append(f"  {len(report['failed_trials'])} trial(s) failed in the graph (counted as unsuccessful): "
                     + "; ".join(f"{f['suite']}/{f['task_id']} init {f['init_index']}: {f['end_detail']}"
                                 for f in report["failed_trials"][:3]))
    return "\n".join(lines)


def write_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=1) + "\n")
    return path


def plot_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Per-task success rate, one panel per suite, with the suite's rate and the paper's as lines."""
    from matplotlib.figure import Figure

    suites = list(report["suites"])
    fig = Figure(figsize=(4.5 * max(1, len(suites)), 4), layout="constrained")
    axes = fig.subplots(1, max(1, len(suites)), squeeze=False)[0]
    for ax, suite in zip(axes, suites):
        s = report["suites"][suite]
        ids = list(s["tasks"])
        rates = [100 * (s["tasks"][i]["success_rate"] or 0.0) for i in ids]
        ax.bar(range(len(ids)), rates, color="tab:blue")
        ax.set_xticks(range(len(ids)), ids)
        ax.axhline(100 * (s["success_rate"] or 0.0), color="tab:blue", ls="--", lw=1,
                   label=f"this run {_pct(s['success_rate']).strip()}")
        paper = report["paper"]["suites"].get(suite)
        if paper is not None:
            ax.axhline(paper, color="k", ls=":", lw=1, label=f"paper {paper:.1f}%")
        ax.set_ylim(0, 105)
        ax.set_xlabel("task id")
        ax.set_ylabel("success (%)")
        ax.set_title(f"{suite} ({s['trials']} trials)")
        ax.legend(fontsize="small", loc="lower right")
    fig.suptitle(f"LIBERO: {report['label']}, seeds {report['seeds']}, average "
                 f"{_pct(report['average_success_rate']).strip()}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
