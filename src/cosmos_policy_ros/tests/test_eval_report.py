"""The report maths of aloha_eval: percentiles, distributions, summaries, timing, merged tables, plots."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cosmos_policy_ros.evaluation.report import (
    EpisodeRecord,
    ReportError,
    below_min_success,
    build_report,
    distribution,
    format_summary,
    load_report,
    merge_table,
    on_common_seeds,
    percentile,
    period_errors_ms,
    records_of,
    resumable_records,
    seed_range,
    stats,
    summarize_task,
    summarize_timing,
    write_report,
)

LEVELS = [25.0, 50.0, 75.0, 100.0]


def episode(task="transfer_cube", seed=1000, score=100.0, **kw) -> EpisodeRecord:
    return EpisodeRecord(task=task, seed=seed, stage_score=score, success=score == 100.0, **kw)


def test_percentile_interpolates_between_order_statistics():
    values = [1.0, 2.0, 3.0, 4.0]
    assert percentile(values, 50) == 2.5
    assert percentile(values, 0) == 1.0 and percentile(values, 100) == 4.0
    assert percentile(list(range(101)), 99) == 99.0
    assert percentile([5.0], 99) == 5.0


def test_percentile_ignores_non_finite_and_is_none_when_empty():
    assert percentile([1.0, float("nan"), 3.0, float("inf")], 50) == 2.0
    assert percentile([], 50) is None
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_stats_and_period_errors():
    s = stats([10.0, 20.0, 30.0])
    assert s == {"n": 3, "p50": 20.0, "p99": pytest.approx(29.8), "mean": 20.0, "max": 30.0}
    assert stats([]) == {"n": 0, "p50": None, "p99": None, "mean": None, "max": None}
    np.testing.assert_allclose(period_errors_ms([19.0, 20.0, 23.5, float("nan")], 20.0), [1.0, 0.0, 3.5])


def test_distribution_lists_every_stage_level_in_order():
    assert distribution([100.0, 0.0, 100.0, 50.0], LEVELS) == {"0": 1, "25": 0, "50": 1, "75": 0, "100": 2}
    # a score outside the task's levels gets its own key; missing scores count as "none"
    assert distribution([30.0, None, float("nan")], [100.0]) == {"0": 0, "30": 1, "100": 0, "none": 2}
    assert distribution([], LEVELS) == {"0": 0, "25": 0, "50": 0, "75": 0, "100": 0}


def test_summarize_task_success_rate_mean_and_failures():
    records = [episode(score=100.0, end_reason="max_steps"), episode(seed=1001, score=50.0, end_reason="max_steps"),
               episode(seed=1002, score=25.0, status="fault", end_reason="stale_sensor"),
               episode(seed=1003, score=None, status="reset_failed")]
    s = summarize_task(records, LEVELS)
    assert s["episodes"] == 4 and s["successes"] == 1 and s["success_rate"] == 0.25
    assert s["mean_stage_score"] == pytest.approx((100 + 50 + 25) / 3)  # unscored episodes are left out
    assert s["stage_score_counts"] == {"0": 0, "25": 1, "50": 1, "75": 0, "100": 1, "none": 1}
    assert s["failed_episodes"] == 2 and s["failures"] == {"stale_sensor": 1, "reset_failed": 1}
    assert s["end_reasons"] == {"max_steps": 2, "stale_sensor": 1, "reset_failed": 1}
    empty = summarize_task([], LEVELS)
    assert empty["success_rate"] is None and empty["mean_stage_score"] is None


def test_a_low_score_is_not_a_failure():
    s = summarize_task([episode(score=0.0, end_reason="max_steps")], LEVELS)
    assert s["successes"] == 0 and s["failed_episodes"] == 0


def test_timing_pools_episodes():
    records = [episode(chunk_latency_ms=[10.0, 20.0], tick_period_ms=[20.0, 21.0], obs_to_command_ms=[5.0],
                       stall_ticks=0),
               episode(seed=1001, chunk_latency_ms=[30.0], tick_period_ms=[17.0], obs_to_command_ms=[7.0],
                       stall_ticks=3)]
    t = summarize_timing(records, 20.0)
    assert t["chunk_latency_ms"]["p50"] == 20.0 and t["chunk_latency_ms"]["n"] == 3
    assert t["control_period_error_ms"]["p50"] == 1.0 and t["control_period_error_ms"]["max"] == 3.0
    assert t["obs_to_command_ms"]["p50"] == 6.0
    assert t["stall_ticks"] == {"total": 3, "per_episode_mean": 1.5, "episodes_with_stalls": 1}
    assert summarize_timing([episode()]) is None  # scripted / replay: no node timing


def make_report(driver="policy", label=None, scores=(100.0, 50.0), timing=True, tasks=("transfer_cube",)):
    records = []
    for task in tasks:
        for i, score in enumerate(scores):
            kw = {}
            if timing:
                kw = dict(chunk_latency_ms=[60.0 + i], tick_period_ms=[20.0, 22.0], obs_to_command_ms=[8.0])
            records.append(episode(task=task, seed=1000 + i, score=score, end_reason="max_steps", **kw))
    return build_report(driver, records, tasks=list(tasks), levels_by_task={t: LEVELS for t in tasks},
                        clock="lockstep", label=label)


def test_build_report_round_trips_through_json(tmp_path):
    report = make_report(tasks=("transfer_cube", "insertion"))
    assert report["tasks"]["insertion"]["summary"]["success_rate"] == 0.5
    assert report["overall"]["summary"]["episodes"] == 4
    path = write_report(report, tmp_path / "eval" / "policy.json")
    loaded = load_report(path)
    assert loaded == json.loads(json.dumps(report))
    assert [r.seed for r in records_of(loaded, "insertion")] == [1000, 1001]
    assert records_of(loaded)[0].chunk_latency_ms == [60.0]


def test_load_report_errors_name_the_file(tmp_path):
    with pytest.raises(ReportError, match="missing.json: report not found"):
        load_report(tmp_path / "missing.json")
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(ReportError, match="x.json: not an aloha_eval report"):
        load_report(tmp_path / "x.json")
    (tmp_path / "y.json").write_text("{")
    with pytest.raises(ReportError, match="y.json: not JSON"):
        load_report(tmp_path / "y.json")


def test_below_min_success_names_each_task():
    report = make_report(tasks=("transfer_cube", "insertion"))
    assert below_min_success(report, 0.5) == []
    assert below_min_success(report, 0.6) == [
        "transfer_cube: success 1/2 = 50% below --min-success 60%",
        "insertion: success 1/2 = 50% below --min-success 60%"]


def test_summary_fits_a_screen_and_shows_timing():
    text = format_summary(make_report(tasks=("transfer_cube", "insertion")))
    lines = text.splitlines()
    assert len(lines) < 25 and max(map(len, lines)) <= 100
    assert "transfer_cube" in text and "1/2 (50%)" in text and "all tasks" in text and "2/4 (50%)" in text
    assert "0/0/1/0/1 (0/25/50/75/100)" in text
    assert "chunk latency ms" in text and "lockstep: wall-clock periods" in text
    assert "timing" not in format_summary(make_report(timing=False))


def test_seed_range():
    assert seed_range(make_report(scores=(1.0, 2.0, 3.0))) == "1000-1002"
    assert seed_range(make_report(scores=(1.0,))) == "1000"


def test_merge_table_puts_reports_side_by_side():
    table = merge_table([make_report("policy"), make_report("scripted", scores=(100.0, 100.0), timing=False),
                         make_report("replay", scores=(0.0, 25.0), timing=False)])
    lines = table.splitlines()
    assert lines[0] == "| task | metric | policy | scripted | replay |"
    assert "| transfer_cube | success | 1/2 (50%) | 2/2 (100%) | 0/2 (0%) |" in lines
    assert "|  | mean stage score | 75.0 | 100.0 | 12.5 |" in lines
    assert "|  | stage scores 0/25/50/75/100 | 0/0/1/0/1 | 0/0/0/0/2 | 1/1/0/0/0 |" in lines
    # timing only for reports that have it (the policy driver)
    assert "| policy node timing | policy |" in lines
    assert any(line.startswith("| chunk latency p50 / p99 (ms) | 60.5 / 61.0 |") for line in lines)


def test_merge_table_disambiguates_labels_and_missing_tasks():
    a = make_report("policy", label="tiny", tasks=("transfer_cube",))
    b = make_report("policy", label="tiny", tasks=("transfer_cube", "insertion"))  # overlaps: its own column
    table = merge_table([a, b])
    assert "| task | metric | tiny | tiny (2) |" in table
    assert "| insertion | success | - | 1/2 (50%) |" in table
    with pytest.raises(ReportError, match="nothing to merge"):
        merge_table([])


def test_plots_are_written(tmp_path):
    from cosmos_policy_ros.evaluation.plots import plot_merged, plot_report

    report = make_report(tasks=("transfer_cube", "insertion"))
    scripted = make_report("scripted", timing=False)
    for path in (plot_report(report, tmp_path / "policy.png"), plot_report(scripted, tmp_path / "s.png"),
                 plot_merged([report, scripted], tmp_path / "merged.png")):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reports_of_one_label_with_disjoint_tasks_share_a_column():
    from cosmos_policy_ros.evaluation.report import combine_by_label
    a = {"label": "replay", "driver": "replay", "tasks": {"transfer_cube": {}}, "overall": {"timing": None}}
    b = {"label": "replay", "driver": "replay", "tasks": {"insertion": {}}, "overall": {"timing": None}}
    c = {"label": "scripted", "driver": "scripted", "tasks": {"transfer_cube": {}}, "overall": {"timing": None}}
    combined = combine_by_label([a, c, b])
    assert [r["label"] for r in combined] == ["replay", "scripted"]
    assert set(combined[0]["tasks"]) == {"transfer_cube", "insertion"}
    assert set(a["tasks"]) == {"transfer_cube"}  # inputs untouched


def test_reports_compared_on_their_common_seeds():
    full = make_report(label="direct", scores=(100.0, 50.0, 0.0, 0.0), tasks=("transfer_cube", "insertion"))
    early = make_report(label="planning", scores=(0.0, 100.0), tasks=("transfer_cube",))  # stopped after 2 seeds
    cut = on_common_seeds([full, early])
    assert [r["label"] for r in cut] == ["direct", "planning"]
    direct = cut[0]["tasks"]["transfer_cube"]
    assert [e["seed"] for e in direct["episodes"]] == [1000, 1001]
    assert direct["summary"]["mean_stage_score"] == 75.0 and direct["summary"]["successes"] == 1
    assert direct["summary"]["stage_score_counts"] == {"0": 0, "25": 0, "50": 1, "75": 0, "100": 1}
    # a task only one report has keeps all of its seeds; the overall summary follows the cut
    assert cut[0]["tasks"]["insertion"]["summary"]["episodes"] == 4 and cut[0]["overall"]["summary"]["episodes"] == 6
    assert cut[0]["created"] == full["created"] and cut[0]["overall"]["timing"]["chunk_latency_ms"]["n"] == 6
    table = merge_table(cut)
    assert "| transfer_cube | success | 1/2 (50%) | 1/2 (50%) |" in table
    assert "lockstep / 1000-1001" in table


def test_resumable_records_keep_the_finished_episodes_of_the_same_evaluation():
    report = make_report(label="planning", scores=(100.0, 0.0, 50.0))
    report["config"] = {"mode": "planning", "num_candidates": 4, "max_steps": 0}
    report["tasks"]["transfer_cube"]["episodes"][1]["status"] = "fault"  # tried again by the resumed run
    same = dict(driver="policy", label="planning", clock="lockstep", tasks=["transfer_cube", "insertion"],
                seeds=range(1000, 1050),
                config={"mode": "planning", "num_candidates": 4, "max_steps": 0, "action_steps": 0})
    kept = resumable_records(report, **same)
    assert [(r.seed, r.stage_score) for r in kept] == [(1000, 100.0), (1002, 50.0)]
    # cut short (the node shut down mid-episode): run again; ended by the safety gate: the policy's outcome
    report["tasks"]["transfer_cube"]["episodes"][0]["status"] = "canceled"
    report["tasks"]["transfer_cube"]["episodes"][2]["status"] = "refused"
    assert [r.seed for r in resumable_records(report, **same)] == [1002]

    for change, named in ((dict(label="direct"), "label 'planning' (this run: 'direct')"),
                          (dict(clock="realtime"), "clock 'lockstep' (this run: 'realtime')"),
                          (dict(config={**same["config"], "num_candidates": 8}), "num_candidates 4 (this run: 8)"),
                          (dict(tasks=["insertion"]), "tasks ['transfer_cube'] that this run"),
                          (dict(seeds=range(1001, 1011)), "seeds 1000..1000 (1) outside this run's 1001-1010")):
        with pytest.raises(ReportError, match="cannot resume a different evaluation") as err:
            resumable_records(report, **{**same, **change}, path="eval/p.json")
        assert named in str(err.value) and str(err.value).startswith("eval/p.json")


NODE = {"checkpoint": "/ckpt/small", "execute_steps": 0, "smoothing_window": 9, "temporal_ensemble_coeff": -1.0,
        "use_sim_time": True}


def test_a_resumed_evaluation_refuses_other_policy_node_settings():
    """Chunk execution is the node's, not the goal's: a resumed report must not mix two settings."""
    report = make_report(label="small", scores=(100.0, 0.0))
    report["config"] = {"mode": "direct", "policy_node": NODE}
    same = dict(driver="policy", label="small", clock="lockstep", tasks=["transfer_cube"], seeds=range(1000, 1050),
                config={"mode": "direct"})
    assert len(resumable_records(report, **same, policy_node={**NODE, "use_sim_time": False})) == 2  # not a setting
    assert len(resumable_records(report, **same, policy_node=None)) == 2  # could not be read: no evidence
    ensembling = {**NODE, "execute_steps": 10, "temporal_ensemble_coeff": 0.01}
    with pytest.raises(ReportError, match="cannot resume a different evaluation") as err:
        resumable_records(report, **same, policy_node=ensembling)
    assert "policy node execute_steps 0 (this run: 10)" in str(err.value)
    assert "policy node temporal_ensemble_coeff -1.0 (this run: 0.01)" in str(err.value)
    with pytest.raises(ReportError, match="policy node checkpoint '/ckpt/small' \\(this run: unset\\)"):
        resumable_records(report, **same, policy_node={k: v for k, v in NODE.items() if k != "checkpoint"})


def test_merged_tables_show_chunk_execution_and_refuse_to_join_two_settings():
    plain = make_report("policy", label="small", tasks=("transfer_cube",))
    plain["config"] = {"policy_node": NODE}
    ensembled = make_report("policy", label="small te10", tasks=("transfer_cube",))
    ensembled["config"] = {"policy_node": {**NODE, "execute_steps": 10, "temporal_ensemble_coeff": 0.01}}
    scripted = make_report("scripted", timing=False)
    lines = merge_table([plain, ensembled, scripted]).splitlines()
    assert ("|  | policy node | execute_steps 0, smoothing_window 9, temporal_ensemble_coeff -1.0 | "
            "execute_steps 10, smoothing_window 9, temporal_ensemble_coeff 0.01 | - |") in lines
    assert not any("policy node |" in line for line in merge_table([scripted]).splitlines())
    # one label over disjoint tasks joins into a column only when the node ran alike
    insertion = make_report("policy", label="small", tasks=("insertion",))
    insertion["config"] = {"policy_node": {**NODE, "execute_steps": 10}}
    with pytest.raises(ReportError, match="labelled 'small' ran different policy node settings"):
        merge_table([plain, insertion])
    insertion["config"]["policy_node"] = NODE
    assert "| insertion | success | 1/2 (50%) |" in merge_table([plain, insertion])
