"""The release's LIBERO protocol as data, the reset naming of a trial, and the evaluation report. Plain tests."""

from __future__ import annotations

import json

import pytest

from libero_sim import protocol
from libero_sim.eval_report import TrialRecord, build_report, format_summary, plot_report, write_report
from libero_sim.evaluation import main as libero_eval


def test_default_plan_is_the_release_protocol():
    trials = protocol.plan_trials(list(protocol.SUITES), None, protocol.TRIALS_PER_TASK, list(protocol.SEEDS))
    assert len(trials) == 3 * 4 * 10 * 50
    assert protocol.SEEDS == (195, 196, 197)
    # seed-major: one full pass per seed, as the release's three runs
    assert [t.seed for t in trials[:2000]] == [195] * 2000 and trials[2000].seed == 196
    first_task = trials[:50]
    assert {(t.suite, t.task_id) for t in first_task} == {("libero_spatial", 0)}
    assert [t.init_index for t in first_task] == list(range(50))
    assert trials[0].reset_task == "libero_spatial/0"
    assert (protocol.CHUNK_EXECUTE_STEPS, protocol.DENOISING_STEPS) == (16, {"action": 5, "future_state": 1, "value": 1})
    assert (protocol.SETTLE_STEPS, protocol.JPEG_QUALITY, protocol.IMAGE_HW) == (10, 95, (256, 256))


def test_plan_refuses_more_trials_than_init_states_and_counts_robocasa_tasks():
    with pytest.raises(protocol.TrialSpecError, match="60 trials asked, the suite has 50 init states"):
        protocol.plan_trials(["libero_goal"], [3], 60, [195], init_states={("libero_goal", 3): 50})
    robocasa = protocol.plan_trials(["robocasa"], None, 50, [195])
    assert len(robocasa) == 24 * 50 and len(protocol.ROBOCASA_TASKS) == 24


def test_reset_task_naming():
    assert protocol.parse_reset_task("libero_10/7", 12) == ("libero_10", 7, 12)
    assert protocol.parse_reset_task("libero_goal/2/5", 99) == ("libero_goal", 2, 5)
    for bad in ("libero_10", "libero_10/x", "/3", "libero_10/-1"):
        with pytest.raises(protocol.TrialSpecError, match="reset task"):
            protocol.parse_reset_task(bad, 0)
    assert protocol.max_steps("libero_spatial") == 220 and protocol.max_steps("libero_10") == 520


def _records():
    records = []
    for seed, wins in ((195, (1, 1, 0, 1)), (196, (1, 0, 0, 1))):
        for (task_id, init), win in zip(((0, 0), (0, 1), (1, 0), (1, 1)), wins):
            records.append(TrialRecord("libero_spatial", task_id, init, seed, task=f"task {task_id}",
                                       success=bool(win), final_stage_score=100.0 * win, steps=40, wall_s=2.0,
                                       chunk_latency_ms=[150.0], tick_period_ms=[50.0]))
    records.append(TrialRecord("libero_goal", 0, 0, 195, task="goal", failed=True, end_reason="stale_sensor",
                               end_detail="agentview: no image"))
    records.append(TrialRecord("libero_goal", 0, 0, 196, task="goal", success=True, final_stage_score=100.0))
    return records


def test_report_averages_per_seed_then_over_seeds_and_suites(tmp_path):
    report = build_report(_records(), checkpoint="runs/libero_tiny", settings={"trials_per_task": 2})
    spatial = report["suites"]["libero_spatial"]
    assert spatial["success_rate_by_seed"] == {"195": 0.75, "196": 0.5}
    assert spatial["success_rate"] == pytest.approx(0.625)
    assert spatial["tasks"]["0"]["success_rate"] == pytest.approx(0.75)  # (2/2 + 1/2) / 2
    assert spatial["tasks"]["1"]["success_rate_by_seed"] == {"195": 0.5, "196": 0.5}
    goal = report["suites"]["libero_goal"]
    assert goal["success_rate"] == pytest.approx(0.5)  # a trial failed in the graph counts as unsuccessful
    assert report["average_success_rate"] == pytest.approx((0.625 + 0.5) / 2)
    assert [f["end_reason"] for f in report["failed_trials"]] == ["stale_sensor"]
    assert report["label"] == "libero_tiny" and report["paper"]["average"] == 98.5
    text = format_summary(report)
    assert "libero_spatial" in text and "62.5%" in text and "paper 98.5%" in text and "failed in the graph" in text
    path = write_report(report, tmp_path / "r.json")
    assert json.loads(path.read_text())["seeds"] == [195, 196]
    png = plot_report(report, tmp_path / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_eval_command_refuses_bad_arguments(capsys):
    with pytest.raises(SystemExit) as exc:
        libero_eval(["--suites", "libero_100"])
    assert exc.value.code == 2 and "libero_100" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        libero_eval(["--trials", "0"])
    assert exc.value.code == 2
