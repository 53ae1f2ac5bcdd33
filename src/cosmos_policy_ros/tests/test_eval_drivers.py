"""aloha_eval's plain parts: replayed demonstrations, progress and episode lines, merging from the CLI."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest

from cosmos_policy_ros.evaluation.cli import build_parser, main, validate
from cosmos_policy_ros.evaluation.drivers import (
    ProgressLine,
    ReplayError,
    fill_from_result,
    format_batch_progress,
    format_eta,
    format_record,
    load_replay_actions,
    replay_plan,
    task_levels,
    task_text,
)
from cosmos_policy_ros.evaluation.report import EpisodeRecord, build_report, write_report


def write_demo(path, steps=5, task="transfer_cube", joints=14):
    from cosmos_policy.data.act_episode import Episode, write_act_episode
    state = np.zeros((steps, 14))
    attrs = {"sim": True} if task is None else {"sim": True, "task": task}
    action = np.arange(steps * joints, dtype=np.float64).reshape(steps, joints)
    return write_act_episode(path, Episode(qpos=state, qvel=state, effort=state, action=action, attrs=attrs))


def test_replay_actions_are_matched_to_tasks(tmp_path):
    a = write_demo(tmp_path / "a.hdf5", task="transfer_cube")
    b = write_demo(tmp_path / "b.hdf5", task="insertion", steps=3)
    actions = load_replay_actions([a, b], ["transfer_cube", "insertion"], 14)
    assert actions["transfer_cube"].shape == (5, 14) and actions["insertion"].shape == (3, 14)
    # no task attribute: fine for a single task
    c = write_demo(tmp_path / "c.hdf5", task=None)
    assert load_replay_actions([c], ["insertion"], 14)["insertion"].shape == (5, 14)


@pytest.mark.parametrize("files, tasks, message", [
    (["a"], ["insertion"], "a transfer_cube demonstration, but the evaluated tasks are"),
    (["a", "a2"], ["transfer_cube"], "a second transfer_cube demonstration"),
    (["a"], ["transfer_cube", "insertion"], r"no demonstration to replay for \['insertion'\]"),
    (["none"], ["transfer_cube", "insertion"], "no `task` attribute"),
    (["missing"], ["transfer_cube"], "episode file not found"),
])
def test_replay_errors_name_the_file_and_the_fix(tmp_path, files, tasks, message):
    write_demo(tmp_path / "a.hdf5")
    write_demo(tmp_path / "a2.hdf5")
    write_demo(tmp_path / "none.hdf5", task=None)
    with pytest.raises(ReplayError, match=message):
        load_replay_actions([tmp_path / f"{f}.hdf5" for f in files], tasks, 14)


def test_replay_plan_truncates_or_holds_the_last_command():
    recorded = np.arange(5, dtype=np.float64)[:, None] * np.ones((1, 14))
    make = replay_plan({"transfer_cube": recorded})
    np.testing.assert_array_equal(make("transfer_cube", SimpleNamespace(episode_steps=3))[:, 0], [0, 1, 2])
    np.testing.assert_array_equal(make("transfer_cube", SimpleNamespace(episode_steps=7))[:, 0], [0, 1, 2, 3, 4, 4, 4])


def test_a_policy_result_fills_the_episode_with_its_timing_and_per_chunk_values():
    from cosmos_policy_ros.client import RunResult, RunStatus

    record = EpisodeRecord(task="transfer_cube", seed=1000, stage_score=None)
    fill_from_result(record, RunResult(RunStatus.COMPLETED, steps_executed=100, chunks_executed=2, final_value=0.4,
                                       chunk_latency_ms=[50.0, 60.0], chunk_values=[0.7, None],
                                       chunk_value_spreads=[0.1, None], planning_fallbacks=1))
    assert (record.steps, record.chunks, record.final_value, record.planning_fallbacks) == (100, 2, 0.4, 1)
    assert record.chunk_values == [0.7, None] and record.chunk_value_spreads == [0.1, None]
    assert record.chunk_latency_ms == [50.0, 60.0]


def test_task_text_and_levels():
    assert task_text("transfer_cube").startswith("Pick up the red cube")
    assert task_text("fold the towel") == "fold the towel"  # real robot: the text as given
    assert task_levels("insertion") == [25.0, 50.0, 75.0, 100.0] and task_levels("fold the towel") == []


def test_episode_and_batch_lines():
    ok = EpisodeRecord(task="insertion", seed=1003, stage_score=100.0, stage="inserted", success=True,
                       end_reason="max_steps", steps=500, wall_s=12.34)
    assert format_record(ok) == ("insertion seed 1003: stage score 100/100 (inserted) SUCCESS | max_steps | "
                                 "500 steps, 12.3 s")
    fault = EpisodeRecord(task="insertion", seed=1004, stage_score=25.0, status="fault", end_reason="stale_sensor",
                          detail="cam_high: no image for 0.5 s", steps=120)
    assert "| stale_sensor FAULT: cam_high: no image for 0.5 s | 120 steps" in format_record(fault)
    reset = EpisodeRecord(task="insertion", seed=1, stage_score=None, status="reset_failed", detail="no answer")
    assert "no stage score | RESET_FAILED: no answer" in format_record(reset)
    assert format_batch_progress(3, 20, 30.0) == "[ 3/20  15% | 10.0 s/episode | ETA 2m50s]"
    assert format_eta(4000) == "1h06m" and format_eta(5) == "5s"


def test_progress_line_rewrites_on_a_terminal_only():
    term = io.StringIO()
    line = ProgressLine(term, live=True)
    line.update("step 10/400")
    line.update("step 20")
    line.print("done")
    assert term.getvalue() == "\rstep 10/400\rstep 20    \r       \rdone\n"
    log = io.StringIO()
    quiet = ProgressLine(log, live=False)
    quiet.update("step 10/400")
    quiet.print("done")
    assert log.getvalue() == "done\n"


def test_cli_validation_names_the_problem(capsys):
    parser = build_parser()
    for argv, message in [(["--task", "fold"], "unknown ['fold']"),
                          (["--driver", "replay"], "needs --replay-episode"),
                          (["--replay-episode", "x.hdf5"], "only for --driver replay"),
                          (["--episodes", "0"], "--episodes 0"),
                          (["--min-success", "80"], "between 0 and 1")]:
        with pytest.raises(SystemExit):
            validate(parser.parse_args(argv), parser)
        assert message in capsys.readouterr().err


def test_merge_from_the_command_line(tmp_path, capsys):
    reports = []
    for driver, score in (("policy", 50.0), ("scripted", 100.0)):
        record = EpisodeRecord(task="transfer_cube", seed=1000, stage_score=score, success=score == 100.0)
        reports.append(write_report(build_report(driver, [record], tasks=["transfer_cube"], clock="lockstep"),
                                    tmp_path / f"{driver}.json"))
    out = tmp_path / "docs" / "results.md"
    assert main(["aloha_eval", "--merge", *map(str, reports), "--out", str(out)]) == 0
    assert "| transfer_cube | success | 0/1 (0%) | 1/1 (100%) |" in out.read_text()
    assert out.with_suffix(".png").exists() and "| task | metric | policy | scripted |" in capsys.readouterr().out
    assert main(["aloha_eval", "--merge", str(tmp_path / "nope.json")]) == 2
    # an evaluation stopped early, compared on the seeds both have
    more = [EpisodeRecord(task="transfer_cube", seed=1001, stage_score=0.0)]
    longer = write_report(build_report("policy", [EpisodeRecord(task="transfer_cube", seed=1000, stage_score=50.0),
                                                  *more], tasks=["transfer_cube"], clock="lockstep", label="longer"),
                          tmp_path / "longer.json")
    assert main(["aloha_eval", "--merge", str(longer), str(reports[1]), "--out", str(out)]) == 0
    assert "| transfer_cube | success | 0/2 (0%) | 1/1 (100%) |" in out.read_text()
    assert main(["aloha_eval", "--merge", str(longer), str(reports[1]), "--common-seeds", "--out", str(out)]) == 0
    assert "| transfer_cube | success | 0/1 (0%) | 1/1 (100%) |" in out.read_text()
