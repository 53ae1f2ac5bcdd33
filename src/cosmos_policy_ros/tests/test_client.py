"""The RunPolicy client's plain logic: end reasons, classification, results, formatting, goal validation."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from cosmos_policy_ros.client import (
    EndReason,
    GoalSpec,
    GoalStatus,
    Progress,
    RunResult,
    RunStatus,
    classify,
    end_reason_counts,
    format_progress,
    format_result,
)


def result_message(**kw):
    fields = dict(end_reason=1, end_detail="", steps_executed=400, chunks_executed=8, final_stage_score=75.0,
                  final_value=0.5, chunk_latency_ms=[60.0, 70.0], obs_to_command_ms=[5.0], tick_period_ms=[20.0],
                  stall_ticks=0)
    fields.update(kw)
    return SimpleNamespace(**fields)


@pytest.mark.parametrize("reason, status, expected", [
    (EndReason.MAX_STEPS, GoalStatus.SUCCEEDED, RunStatus.COMPLETED),
    (EndReason.SUCCEEDED, GoalStatus.SUCCEEDED, RunStatus.COMPLETED),
    (EndReason.MAX_DURATION, GoalStatus.ABORTED, RunStatus.COMPLETED),
    (EndReason.STALE_SENSOR, GoalStatus.ABORTED, RunStatus.FAULT),
    (EndReason.UNSAFE_COMMAND, GoalStatus.ABORTED, RunStatus.REFUSED),
    (EndReason.INFERENCE_ERROR, GoalStatus.SUCCEEDED, RunStatus.FAULT),  # the reason wins over the status
    (EndReason.PREEMPTED, GoalStatus.ABORTED, RunStatus.PREEMPTED),
    (EndReason.CANCELED, GoalStatus.CANCELED, RunStatus.CANCELED),
    (EndReason.MAX_STEPS, GoalStatus.CANCELED, RunStatus.CANCELED),
    (EndReason.SUCCEEDED, GoalStatus.ABORTED, RunStatus.LOST),  # aborted with the default (zero) reason
    (42, GoalStatus.SUCCEEDED, RunStatus.LOST),
    (None, None, RunStatus.LOST),
])
def test_classify(reason, status, expected):
    assert classify(reason, status) is expected


def test_only_graph_failures_fail():
    assert {s for s in RunStatus if s.failed} == {RunStatus.FAULT, RunStatus.REJECTED, RunStatus.NO_SERVER,
                                                  RunStatus.TIMED_OUT, RunStatus.LOST}
    assert [r for r in EndReason if r.is_fault] == [EndReason.STALE_SENSOR, EndReason.UNSAFE_COMMAND,
                                                    EndReason.INFERENCE_ERROR]


def test_end_reason_names():
    assert EndReason.parse("stale_sensor") is EndReason.STALE_SENSOR
    assert EndReason.parse(" Unsafe_Command ") is EndReason.UNSAFE_COMMAND
    assert EndReason.parse(7) is EndReason.INFERENCE_ERROR and EndReason.parse("1") is EndReason.MAX_STEPS
    assert EndReason.MAX_STEPS.label == "max_steps"
    with pytest.raises(ValueError, match="unknown.*stale_sensor"):
        EndReason.parse("stale")


def test_constants_match_the_action_and_goal_status_messages():
    interfaces = pytest.importorskip("aloha_interfaces.action", reason="needs the built aloha_interfaces")
    action_msgs = pytest.importorskip("action_msgs.msg")
    result = interfaces.RunPolicy.Result
    for reason in EndReason:
        assert getattr(result, f"END_{reason.name}") == reason.value
    assert len([n for n in dir(result) if n.startswith("END_")]) == len(EndReason)
    for status in GoalStatus:
        assert getattr(action_msgs.GoalStatus, f"STATUS_{status.name}") == status.value


def test_run_result_from_message():
    r = RunResult.from_message(result_message(), GoalStatus.SUCCEEDED, wall_s=9.5)
    assert r.status is RunStatus.COMPLETED and r.end_reason is EndReason.MAX_STEPS and not r.failed
    assert (r.steps_executed, r.chunks_executed, r.final_stage_score, r.final_value) == (400, 8, 75.0, 0.5)
    assert r.chunk_latency_ms == [60.0, 70.0] and r.tick_period_ms == [20.0] and r.wall_s == 9.5
    assert r.chunk_values == [] and r.chunk_value_spreads == []  # a server older than per-chunk values
    # per-chunk values: a planning fallback's NaN becomes None (JSON has no NaN)
    r = RunResult.from_message(result_message(chunk_values=[0.7, float("nan")], chunk_value_spreads=[0.2, float("nan")]))
    assert r.chunk_values == [pytest.approx(0.7), None] and r.chunk_value_spreads == [pytest.approx(0.2), None]
    # negative score: no score source
    assert RunResult.from_message(result_message(final_stage_score=-1.0)).final_stage_score is None
    fault = RunResult.from_message(result_message(end_reason=5, end_detail="cam_high: no image for 0.5 s"),
                                   GoalStatus.ABORTED)
    assert fault.failed and fault.status is RunStatus.FAULT
    unknown = RunResult.from_message(result_message(end_reason=99, end_detail="x"))
    assert unknown.status is RunStatus.LOST and unknown.end_detail == "unknown end reason 99: x"


def test_format_result():
    ok = RunResult.from_message(result_message(), GoalStatus.SUCCEEDED, wall_s=9.06)
    assert format_result(ok) == "stage score 75/100 | max_steps | 400 steps, 8 chunks, 9.1 s"
    fault = RunResult.from_message(result_message(end_reason=6, end_detail="wrist_angle: jump 0.8 rad",
                                                  final_stage_score=-1.0, steps_executed=30), GoalStatus.ABORTED)
    assert format_result(fault).startswith(
        "stage score - | unsafe_command (REFUSED): wrist_angle: jump 0.8 rad | 30 steps")
    assert not fault.failed  # the safety gate stopped the policy: the policy failed, the graph did not
    rejected = RunResult.failure(RunStatus.REJECTED, "rejected the goal")
    assert "rejected (REJECTED): rejected the goal" in format_result(rejected)
    late = RunResult.from_message(result_message(planning_fallbacks=3), GoalStatus.SUCCEEDED, wall_s=9.06)
    assert late.planning_fallbacks == 3
    assert format_result(late) == "stage score 75/100 | max_steps | 400 steps, 8 chunks (3 unplanned: out of time), 9.1 s"


def test_format_progress_is_one_line():
    p = Progress(step=200, chunk_index=4, chunk_latency_ms=64.2, predicted_value=0.714, stage_score=50.0)
    assert format_progress(p, 400) == "[##########----------] step 200/400 chunk 4 | 64 ms | value 0.71 | stage 50"
    p = Progress.from_message(SimpleNamespace(step=10, chunk_index=1, chunk_latency_ms=5.0, predicted_value=0.2,
                                              value_spread=0.3, stage_score=-1.0))
    assert format_progress(p) == "step 10 chunk 1 | 5 ms | value 0.20 (spread 0.30) | stage -"


def test_goal_spec_validation():
    assert GoalSpec(task="transfer_cube", mode="planning", max_steps=400).max_steps == 400
    with pytest.raises(ValueError, match="task is empty"):
        GoalSpec(task="  ")
    with pytest.raises(ValueError, match="policy mode 'best' must be one of"):
        GoalSpec(task="t", mode="best")
    with pytest.raises(ValueError, match="max_steps=-1 must be >= 0"):
        GoalSpec(task="t", max_steps=-1)


def test_goal_spec_to_message():
    pytest.importorskip("aloha_interfaces.action", reason="needs the built aloha_interfaces")
    msg = GoalSpec(task="insert the peg", mode="planning", max_steps=500, num_candidates=4, seed=1003).to_message()
    assert (msg.task, msg.mode, msg.max_steps, msg.num_candidates, msg.seed) == ("insert the peg", 1, 500, 4, 1003)


def test_end_reason_counts():
    results = [RunResult.from_message(result_message()), RunResult.from_message(result_message()),
               RunResult.failure(RunStatus.NO_SERVER, "x")]
    assert end_reason_counts(results) == {"max_steps": 2, "no_server": 1}
