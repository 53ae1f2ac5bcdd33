"""How well a policy's predicted values tell good episodes from bad ones, from evaluation reports.

Planning picks the candidate with the highest predicted value, so the value is only useful if it ranks
outcomes. Each episode of a report is one point: its predicted value (the mean, or the last, of the values
the policy node reported per chunk; the episode's ``final_value`` for reports older than per-chunk values)
against its outcome, the final stage score / 100. Figures per report and task:

- ROC AUC of the value for "succeeded" and for "reached any stage" (None without both classes);
- the mean predicted value against the mean outcome, and their mean squared difference (Brier score);
- a reliability table: episodes binned by predicted value, the mean outcome of each bin;
- for planning reports, the share of chunks whose candidates all scored the same (spread 0): there the
  winner is the first proposal, chosen by nothing the value knows (the majority mean gives 0 to every
  candidate most of whose samples predict failure).

The value is trained on discounted returns (gamma^(T-1-t) x R), so a calibrated value early in an episode
sits below the episode's final outcome; the ranking figures do not depend on that.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from cosmos_policy.metrics import roc_auc

from .report import EpisodeRecord, ReportError, records_of

AGGREGATES = ("mean", "last")


def episode_value(record: EpisodeRecord, aggregate: str = "mean") -> float | None:
    """The episode's predicted value: mean or last of its scored chunks, else its final value, else None."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate '{aggregate}' unknown (known: {', '.join(AGGREGATES)})")
    scored = [float(v) for v in record.chunk_values if v is not None and math.isfinite(float(v))]
    if scored:
        return float(np.mean(scored)) if aggregate == "mean" else scored[-1]
    if record.final_value is not None and math.isfinite(record.final_value) and record.final_value >= 0:
        return float(record.final_value)
    return None


@dataclass
class Calibration:
    """Predicted value against outcome over one set of episodes."""

    label: str
    task: str
    values: list[float] = field(default_factory=list)
    outcomes: list[float] = field(default_factory=list)  # final stage score / 100
    successes: list[bool] = field(default_factory=list)
    without_value: int = 0  # episodes with no value reported (not counted above)
    planning_chunks: int = 0  # scored planning chunks (planning reports only)
    tied_chunks: int = 0  # of which every candidate had the same value

    @property
    def episodes(self) -> int:
        return len(self.values)

    def bins(self, edges: Sequence[float] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)) -> list[dict[str, Any]]:
        """Per bin of predicted value: its range, episodes, mean predicted value and mean outcome."""
        values, outcomes = np.asarray(self.values), np.asarray(self.outcomes)
        rows = []
        for i, (lo, hi) in enumerate(zip(edges[:-1], edges[1:])):
            last = i == len(edges) - 2
            inside = (values >= lo) & ((values <= hi) if last else (values < hi))
            n = int(inside.sum())
            rows.append({"lo": float(lo), "hi": float(hi), "episodes": n,
                         "mean_value": float(values[inside].mean()) if n else None,
                         "mean_outcome": float(outcomes[inside].mean()) if n else None})
        return rows

    def summary(self) -> dict[str, Any]:
        v, o = np.asarray(self.values), np.asarray(self.outcomes)
        return {
            "label": self.label, "task": self.task, "episodes": self.episodes, "without_value": self.without_value,
            "successes": int(sum(self.successes)), "reached_a_stage": int((o > 0).sum()),
            "mean_value": float(v.mean()) if v.size else None,
            "mean_outcome": float(o.mean()) if o.size else None,
            "brier": float(np.mean((v - o) ** 2)) if v.size else None,
            "auc_success": roc_auc(v, self.successes),
            "auc_reached_a_stage": roc_auc(v, o > 0),
            "planning_chunks": self.planning_chunks, "tied_chunks": self.tied_chunks,
        }


def calibrate(report: Mapping[str, Any], aggregate: str = "mean") -> list[Calibration]:
    """One :class:`Calibration` per task of the report, plus ``all`` when it has several tasks.

    Episodes without a stage score (a failed reset, no score source) have no outcome and are left out.
    """
    tasks = list(report.get("tasks", {}))
    config = report.get("config") or {}
    # a direct chunk's spread is 0 by definition, and so is a single candidate's (num_candidates 0: the node's)
    planning = config.get("mode") == "planning" and config.get("num_candidates") != 1
    out = []
    for task in tasks + (["all"] if len(tasks) > 1 else []):
        cal = Calibration(label=str(report.get("label", "")), task=task)
        for record in records_of(report, None if task == "all" else task):
            if planning:
                spreads = [float(x) for x in record.chunk_value_spreads if x is not None and math.isfinite(float(x))]
                cal.planning_chunks += len(spreads)
                cal.tied_chunks += sum(x == 0.0 for x in spreads)
            if record.stage_score is None:
                continue
            value = episode_value(record, aggregate)
            if value is None:
                cal.without_value += 1
                continue
            cal.values.append(value)
            cal.outcomes.append(float(record.stage_score) / 100.0)
            cal.successes.append(bool(record.success))
        out.append(cal)
    if not any(c.episodes for c in out):
        raise ReportError(f"report '{report.get('label', '?')}': no episode carries a predicted value "
                          "(scripted and replay reports have none: calibrate a policy driver's report)")
    return out


def _fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def format_tied(summary: Mapping[str, Any]) -> str:
    n, k = summary["planning_chunks"], summary["tied_chunks"]
    return f"{k}/{n} ({k / n:.0%})" if n else "-"


def calibration_table(calibrations: Sequence[Calibration]) -> str:
    """Markdown: one row per report and task."""
    lines = ["| report | task | episodes | successes | reached a stage | mean value | mean outcome | Brier | "
             "AUC success | AUC reached a stage | planning chunks tied |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for cal in calibrations:
        s = cal.summary()
        lines.append(f"| {s['label']} | {s['task']} | {s['episodes']} | {s['successes']} | {s['reached_a_stage']} | "
                     f"{_fmt(s['mean_value'])} | {_fmt(s['mean_outcome'])} | {_fmt(s['brier'], 3)} | "
                     f"{_fmt(s['auc_success'])} | {_fmt(s['auc_reached_a_stage'])} | {format_tied(s)} |")
    return "\n".join(lines) + "\n"


def plot_calibration(calibrations: Sequence[Calibration], path: str | os.PathLike[str]) -> Path:
    """Left: predicted value against final stage score, one point per episode. Right: reliability bins."""
    from matplotlib.figure import Figure

    shown = [c for c in calibrations if c.episodes and c.task != "all"]
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    scatter, reliability = fig.subplots(1, 2)
    rng = np.random.default_rng(0)  # jitter only spreads points that share a stage score
    for cal in shown:
        name = f"{cal.label} / {cal.task}"
        o = np.asarray(cal.outcomes) * 100
        scatter.scatter(cal.values, o + rng.uniform(-3, 3, o.size), s=12, alpha=0.6, label=name)
        rows = [r for r in cal.bins() if r["episodes"]]
        reliability.plot([r["mean_value"] for r in rows], [r["mean_outcome"] for r in rows], "o-", label=name)
    scatter.set_ylim(-6, 106)
    scatter.set_xlabel("predicted value (per episode)")
    scatter.set_ylabel("final stage score (jittered)")
    scatter.set_title("value against outcome, one point per episode")
    reliability.plot([0, 1], [0, 1], "k--", lw=0.8, label="calibrated")
    reliability.set_xlim(0, 1)
    reliability.set_ylim(-0.02, 1.02)
    reliability.set_xlabel("mean predicted value in the bin (bins of 0.2)")
    reliability.set_ylabel("mean outcome (stage score / 100)")
    reliability.set_title("reliability")
    for ax in (scatter, reliability):
        ax.legend(fontsize="small")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
