"""Value calibration from evaluation reports: episode values, ranking, reliability bins, the CLI."""

from __future__ import annotations

import json

import pytest

from cosmos_policy_ros.evaluation.calibration import calibrate, calibration_table, episode_value
from cosmos_policy_ros.evaluation.cli import main
from cosmos_policy_ros.evaluation.report import (
    EpisodeRecord,
    ReportError,
    build_report,
    load_report,
    records_of,
    write_report,
)

LEVELS = [25.0, 50.0, 75.0, 100.0]


def episode(seed, score, values, task="transfer_cube", **kw) -> EpisodeRecord:
    return EpisodeRecord(task=task, seed=seed, stage_score=score, success=score == 100.0, chunk_values=list(values),
                         chunk_value_spreads=[0.0 if v is not None else None for v in values], **kw)


def report_of(records, label="planning", tasks=("transfer_cube",)):
    return build_report("policy", records, tasks=list(tasks), levels_by_task={t: LEVELS for t in tasks},
                        clock="lockstep", label=label)


def test_episode_value_is_the_mean_or_last_of_the_scored_chunks():
    record = episode(1000, 0.0, [0.2, None, 0.6, 0.4])  # None: a planning fallback, unscored
    assert episode_value(record) == pytest.approx(0.4)
    assert episode_value(record, "last") == pytest.approx(0.4)
    assert episode_value(episode(1000, 0.0, [0.9, 0.1]), "last") == pytest.approx(0.1)
    # a report older than per-chunk values: the final value; none at all: None
    assert episode_value(EpisodeRecord("transfer_cube", 1, 0.0, final_value=0.7)) == pytest.approx(0.7)
    assert episode_value(EpisodeRecord("transfer_cube", 1, 0.0, final_value=None)) is None
    with pytest.raises(ValueError, match="median"):
        episode_value(record, "median")


def test_values_that_rank_outcomes_give_auc_one_and_reversed_give_zero():
    scores = [100.0, 50.0, 25.0, 0.0, 0.0]
    ranked = report_of([episode(1000 + i, s, [s / 100 * 0.8 + 0.1]) for i, s in enumerate(scores)])
    s = calibrate(ranked)[0].summary()
    assert (s["auc_success"], s["auc_reached_a_stage"]) == (1.0, 1.0)
    assert (s["successes"], s["reached_a_stage"], s["episodes"]) == (1, 3, 5)
    reversed_ = report_of([episode(1000 + i, s, [0.9 - s / 100 * 0.8]) for i, s in enumerate(scores)])
    s = calibrate(reversed_)[0].summary()
    assert (s["auc_success"], s["auc_reached_a_stage"]) == (0.0, 0.0)
    # all failed: no success AUC, but "reached a stage" still ranks
    s = calibrate(report_of([episode(1, 25.0, [0.8]), episode(2, 0.0, [0.3])]))[0].summary()
    assert s["auc_success"] is None and s["auc_reached_a_stage"] == 1.0


def test_brier_and_reliability_bins_come_from_the_episodes():
    records = [episode(1, 100.0, [0.9]), episode(2, 0.0, [0.85]), episode(3, 50.0, [0.1]), episode(4, 0.0, [0.3])]
    cal = calibrate(report_of(records))[0]
    # (0.9-1)^2 + (0.85-0)^2 + (0.1-0.5)^2 + (0.3-0)^2, over 4
    assert cal.summary()["brier"] == pytest.approx((0.01 + 0.7225 + 0.16 + 0.09) / 4)
    bins = {(b["lo"], b["hi"]): b for b in cal.bins()}
    assert bins[(0.8, 1.0)]["episodes"] == 2 and bins[(0.8, 1.0)]["mean_outcome"] == pytest.approx(0.5)
    assert bins[(0.8, 1.0)]["mean_value"] == pytest.approx(0.875)
    assert bins[(0.0, 0.2)]["mean_outcome"] == pytest.approx(0.5)
    assert bins[(0.2, 0.4)]["mean_outcome"] == pytest.approx(0.0)
    assert bins[(0.4, 0.6)]["episodes"] == 0 and bins[(0.4, 0.6)]["mean_outcome"] is None
    assert calibrate(report_of([episode(1, 0.0, [1.0])]))[0].bins()[-1]["episodes"] == 1  # 1.0 is in the last bin


def test_per_task_and_all_and_what_is_left_out():
    records = [episode(1, 100.0, [0.9]), episode(2, 0.0, [0.2]),
               episode(1, 50.0, [0.5], task="insertion"), episode(2, None, [0.4], task="insertion"),
               episode(3, 0.0, [], task="insertion")]
    cals = {c.task: c for c in calibrate(report_of(records, tasks=("transfer_cube", "insertion")))}
    assert set(cals) == {"transfer_cube", "insertion", "all"}
    assert cals["insertion"].episodes == 1  # no score: left out; no value: counted as without_value
    assert cals["insertion"].without_value == 1
    assert cals["all"].episodes == 3
    table = calibration_table(list(cals.values()))
    assert "| planning | insertion | 1 |" in table and table.count("\n") == 5


def test_a_report_without_values_is_refused_by_name():
    scripted = build_report("scripted", [EpisodeRecord("transfer_cube", 1, 100.0, success=True)],
                            tasks=["transfer_cube"], label="scripted")
    with pytest.raises(ReportError, match="'scripted'.*no episode carries a predicted value"):
        calibrate(scripted)


def test_per_chunk_values_round_trip_through_the_report_file(tmp_path):
    path = write_report(report_of([episode(1, 0.0, [0.51234567, None])]), tmp_path / "r.json")
    assert json.loads(path.read_text())["tasks"]["transfer_cube"]["episodes"][0]["chunk_values"] == [0.5123, None]
    assert records_of(load_report(path))[0].chunk_value_spreads == [0.0, None]


def test_cli_writes_the_table_and_plot_and_refuses_bad_reports(tmp_path, capsys):
    path = write_report(report_of([episode(i, 100.0 if i % 2 else 0.0, [0.3 + 0.4 * (i % 2)]) for i in range(6)]),
                        tmp_path / "planning.json")
    out = tmp_path / "cal" / "calibration.md"
    assert main(["aloha_eval", "--calibration", str(path), "--calibration-value", "last", "--out", str(out)]) == 0
    text = out.read_text()
    assert "the last of its chunks" in text and "| planning | transfer_cube | 6 | 3 | 3 |" in text
    assert "1.00 | 1.00 |" in text  # both AUCs
    assert out.with_suffix(".png").stat().st_size > 10_000
    scripted = write_report(build_report("scripted", [EpisodeRecord("transfer_cube", 1, 100.0)],
                                         tasks=["transfer_cube"], label="scripted"), tmp_path / "scripted.json")
    assert main(["aloha_eval", "--calibration", str(scripted), "--out", str(out)]) == 2
    assert "no episode carries a predicted value" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["aloha_eval", "--calibration", str(path), "--merge", str(path)])
    with pytest.raises(SystemExit):
        main(["aloha_eval", "--calibration", str(path), "--common-seeds"])
    assert "--common-seeds cuts the reports of --merge" in capsys.readouterr().err


def test_planning_chunks_whose_candidates_all_tied_are_counted():
    """Spread 0 in a planning report: every candidate got the same value, the first proposal ran unchosen."""
    records = [EpisodeRecord("transfer_cube", 1000, 0.0, chunk_values=[0.0, 0.0, None],
                             chunk_value_spreads=[0.0, 0.0, None]),  # None: a fallback, not scored
               EpisodeRecord("transfer_cube", 1001, 25.0, chunk_values=[0.2, 0.0], chunk_value_spreads=[0.15, 0.0])]
    planning = build_report("policy", records, tasks=["transfer_cube"], clock="lockstep", label="planning",
                            config={"mode": "planning"})
    summary = calibrate(planning)[0].summary()
    assert (summary["planning_chunks"], summary["tied_chunks"]) == (4, 3)
    assert "| 3/4 (75%) |" in calibration_table(calibrate(planning))
    # a direct chunk has no candidates to tie: its spread of 0 is not counted
    direct = build_report("policy", records, tasks=["transfer_cube"], clock="lockstep", label="direct",
                          config={"mode": "direct"})
    assert calibrate(direct)[0].summary()["planning_chunks"] == 0
    assert calibration_table(calibrate(direct)).rstrip().endswith("| - |")
    single = build_report("policy", records, tasks=["transfer_cube"], clock="lockstep", label="best-of-1",
                          config={"mode": "planning", "num_candidates": 1})
    assert calibrate(single)[0].summary()["planning_chunks"] == 0
