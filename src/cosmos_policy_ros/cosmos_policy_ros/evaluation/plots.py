"""PNG plots of evaluation reports (matplotlib without pyplot: no display, no global figure state)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .report import _unique_labels, period_errors_ms, records_of


def _figure(rows: int, cols: int, size: tuple[float, float]):
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    return fig, axes


def _stage_bars(ax, report: Mapping[str, Any]) -> None:
    tasks = list(report["tasks"])
    width = 0.8 / max(1, len(tasks))
    for i, task in enumerate(tasks):
        counts = report["tasks"][task]["summary"]["stage_score_counts"]
        keys = [k for k in counts if k != "none"]
        x = np.arange(len(keys)) + i * width - 0.4 + width / 2
        s = report["tasks"][task]["summary"]
        ax.bar(x, [counts[k] for k in keys], width,
               label=f"{task}: success {s['successes']}/{s['episodes']}")
        ax.set_xticks(np.arange(len(keys)), keys)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("final stage score")
    ax.set_ylabel("episodes")
    ax.set_title(f"{report['label']}: stage scores per task")
    ax.legend(fontsize="small")


def plot_report(report: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Stage-score distribution per task and, for the policy driver, per-step timing."""
    timing = report["overall"]["timing"]
    fig, axes = _figure(1, 3 if timing else 1, (15 if timing else 6, 4))
    _stage_bars(axes[0][0], report)
    if timing:
        nominal = timing["nominal_period_ms"]
        ax = axes[0][1]
        for record in records_of(report):
            if record.tick_period_ms:
                ax.plot(np.arange(1, len(record.tick_period_ms) + 1), record.tick_period_ms, lw=0.6, alpha=0.6)
        ax.axhline(nominal, color="k", ls="--", lw=0.8, label=f"{nominal:g} ms")
        ax.set_xlabel("control step")
        ax.set_ylabel("tick period (ms)")
        ax.set_title(f"control period per step ({report['clock']})")
        ax.legend(fontsize="small")
        ax = axes[0][2]
        records = records_of(report)
        series = {"chunk latency": [v for r in records for v in r.chunk_latency_ms],
                  "obs -> command": [v for r in records for v in r.obs_to_command_ms],
                  "|period - 20 ms|": list(period_errors_ms([v for r in records for v in r.tick_period_ms],
                                                            nominal))}
        series = {k: v for k, v in series.items() if v}
        if series:
            ax.boxplot(list(series.values()), whis=(1, 99), showfliers=False)
            ax.set_xticks(np.arange(1, len(series) + 1), list(series))
        ax.set_ylabel("ms (whiskers p1-p99)")
        ax.set_title("latencies")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path


def plot_merged(reports: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    """Success rate and mean stage score per task, one bar per report (policy, scripted, replay...)."""
    labels = _unique_labels(reports)
    tasks: list[str] = []
    for r in reports:
        tasks += [t for t in r["tasks"] if t not in tasks]
    fig, axes = _figure(1, 2, (12, 4))
    width = 0.8 / max(1, len(reports))
    x = np.arange(len(tasks))
    for i, (label, report) in enumerate(zip(labels, reports)):
        summaries = [report["tasks"].get(t, {}).get("summary") for t in tasks]
        rate = [100 * (s["success_rate"] or 0) if s else 0 for s in summaries]
        mean = [(s["mean_stage_score"] or 0) if s else 0 for s in summaries]
        offset = x + i * width - 0.4 + width / 2
        axes[0][0].bar(offset, rate, width, label=label)
        axes[0][1].bar(offset, mean, width, label=label)
    for ax, title in zip(axes[0], ("success rate (%)", "mean stage score")):
        ax.set_xticks(x, tasks)
        ax.set_ylim(0, 105)
        ax.set_title(title)
        ax.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
