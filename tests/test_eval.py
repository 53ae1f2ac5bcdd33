"""aloha_eval across processes: scripted and replay drivers through the real sim, the policy driver against a
fake RunPolicy server (report, timing, --min-success, faults), and eval.launch.py's node graph."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from ros_harness import ROOT, NodeProcess, package_executable

FAKE = Path(__file__).parent / "nodes" / "fake_run_policy_server.py"
SMALL_LOCKSTEP = {"mode": "lockstep", "image_height": 64, "image_width": 64}


def aloha_eval(*args: str, timeout_s: float = 400) -> NodeProcess:
    proc = NodeProcess([package_executable("cosmos_policy_ros", "aloha_eval"), *args],
                       {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        proc.proc.wait(timeout=timeout_s)
    finally:
        proc.stop()
    return proc


@pytest.fixture
def fake_sim_and_policy(ros_domain):
    started = []

    def start(*args: str) -> NodeProcess:
        server = NodeProcess([sys.executable, str(FAKE), "--with-sim", *args], {**os.environ, "PYTHONUNBUFFERED": "1"})
        started.append(server)
        assert server.wait_for_output("fake RunPolicy server ready", 30), server.output
        return server

    yield start
    for server in started:
        server.stop()


@pytest.mark.ros
def test_scripted_driver_through_the_sim_succeeds_on_every_episode(start_node, tmp_path):
    sim = start_node("aloha_sim", "sim_node", params=SMALL_LOCKSTEP)
    out = tmp_path / "scripted.json"
    proc = aloha_eval("--driver", "scripted", "--task", "transfer_cube,insertion", "--episodes", "2",
                      "--out", str(out))
    assert proc.proc.returncode == 0, proc.output + sim.output
    report = json.loads(out.read_text())
    assert report["driver"] == "scripted" and report["clock"] == "lockstep"  # detected from /clock
    for task in ("transfer_cube", "insertion"):
        summary = report["tasks"][task]["summary"]
        assert (summary["episodes"], summary["successes"]) == (2, 2), summary
        assert summary["stage_score_counts"] == {"0": 0, "25": 0, "50": 0, "75": 0, "100": 2}
        assert [e["seed"] for e in report["tasks"][task]["episodes"]] == [1000, 1001]
    assert report["overall"]["timing"] is None
    assert out.with_suffix(".png").stat().st_size > 0
    assert "all tasks" in proc.output and "4/4 (100%)" in proc.output


@pytest.mark.ros
def test_replay_driver_replays_a_demonstration_open_loop(start_node, tmp_path):
    """A demonstration planned for seed 1000's layout, replayed on seed 1000, succeeds without feedback."""
    from aloha_contract import load_contract
    from aloha_sim.scripted import plan_episode
    from aloha_sim.tasks import load_task
    from cosmos_policy.data.act_episode import Episode, write_act_episode

    contract = load_contract()
    plan = plan_episode("transfer_cube", load_task("transfer_cube").sample_object_poses(1000), contract)
    state = np.zeros_like(plan)
    demo = write_act_episode(tmp_path / "episode_0.hdf5", Episode(qpos=state, qvel=state, effort=state, action=plan,
                                                                  attrs={"sim": True, "task": "transfer_cube"}))
    sim = start_node("aloha_sim", "sim_node", params=SMALL_LOCKSTEP)
    out = tmp_path / "replay.json"
    proc = aloha_eval("--driver", "replay", "--replay-episode", str(demo), "--task", "transfer_cube",
                      "--episodes", "1", "--clock", "lockstep", "--out", str(out), "--no-plot")
    assert proc.proc.returncode == 0, proc.output + sim.output
    summary = json.loads(out.read_text())["tasks"]["transfer_cube"]["summary"]
    assert summary["successes"] == 1 and summary["end_reasons"] == {"max_steps": 1}
    assert not out.with_suffix(".png").exists()


@pytest.mark.ros
def test_policy_driver_reports_timing_and_fails_below_min_success(fake_sim_and_policy, tmp_path):
    # two fake chunks per episode, +25 each: every episode ends at stage score 50
    server = fake_sim_and_policy("--score-per-chunk", "--episode-steps", "20")
    out = tmp_path / "policy.json"
    proc = aloha_eval("--driver", "policy", "--task", "insertion", "--episodes", "2", "--seed-start", "1000",
                      "--mode", "planning", "--min-success", "0.5", "--out", str(out))
    assert proc.proc.returncode == 3, proc.output + server.output
    assert "insertion: success 0/2 = 0% below --min-success 50%" in proc.output
    assert "goal: task='Pick up the red peg" in server.output and "mode=1 max_steps=20 seed=1001" in server.output
    report = json.loads(out.read_text())
    summary = report["tasks"]["insertion"]["summary"]
    assert summary["successes"] == 0 and summary["stage_score_counts"]["50"] == 2
    assert summary["mean_stage_score"] == 50.0 and summary["failed_episodes"] == 0
    timing = report["tasks"]["insertion"]["timing"]
    # the fake's chunk latencies 10, 20 per episode; tick periods 19, 21, 20, 24 ms; 15 ms obs->command; 2 stalls
    assert timing["chunk_latency_ms"]["p50"] == pytest.approx(15.0) and timing["chunk_latency_ms"]["n"] == 4
    assert timing["control_period_error_ms"]["p50"] == pytest.approx(1.0)
    assert timing["control_period_error_ms"]["max"] == pytest.approx(4.0)
    assert timing["obs_to_command_ms"]["p99"] == pytest.approx(15.0)
    assert timing["stall_ticks"]["total"] == 4
    assert "chunk latency ms" in proc.output


@pytest.mark.ros
def test_policy_driver_fault_exits_1_and_still_writes_the_report(fake_sim_and_policy, tmp_path):
    server = fake_sim_and_policy("--fault-at-step", "10", "--end-reason", "inference_error", "--episode-steps", "40")
    out = tmp_path / "policy.json"
    proc = aloha_eval("--driver", "policy", "--task", "transfer_cube", "--episodes", "2", "--out", str(out),
                      "--no-plot")
    assert proc.proc.returncode == 1, proc.output + server.output
    summary = json.loads(out.read_text())["tasks"]["transfer_cube"]["summary"]
    assert summary["failed_episodes"] == 2 and summary["failures"] == {"inference_error": 2}
    assert "FAILED 2: inference_error 2" in proc.output


def long_evaluation_after(fake_sim_and_policy, out: Path, line: str) -> NodeProcess:
    """A 500-episode aloha_eval against the fake server (+25 per chunk), returned once `line` is printed."""
    server = fake_sim_and_policy("--score-per-chunk", "--episode-steps", "20")
    proc = NodeProcess([package_executable("cosmos_policy_ros", "aloha_eval"), "--driver", "policy", "--task",
                        "insertion", "--episodes", "500", "--out", str(out), "--no-plot"],
                       {**os.environ, "PYTHONUNBUFFERED": "1"})
    if not proc.wait_for_output(line, 120):
        proc.stop()
        pytest.fail(proc.output + server.output)
    return proc


@pytest.mark.ros
def test_a_killed_evaluation_keeps_the_episodes_it_finished(fake_sim_and_policy, tmp_path):
    """The report is rewritten after every episode: a run killed before it could write one (a launch's SIGKILL
    after an ignored Ctrl-C lost 57 planning episodes once) keeps everything but the running episode."""
    out = tmp_path / "policy.json"
    proc = long_evaluation_after(fake_sim_and_policy, out, "insertion seed 1001: stage score")
    try:
        proc.proc.kill()
        proc.proc.wait(timeout=10)
    finally:
        proc.stop()
    report = json.loads(out.read_text())
    episodes = report["tasks"]["insertion"]["episodes"]
    assert len(episodes) >= 2 and [e["seed"] for e in episodes[:2]] == [1000, 1001]
    assert report["config"]["in_progress"] is True and report["config"]["episodes"] == 500
    assert report["tasks"]["insertion"]["summary"]["stage_score_counts"]["50"] == len(episodes)


@pytest.mark.ros
def test_sigterm_ends_an_evaluation_as_ctrl_c_does(fake_sim_and_policy, tmp_path):
    """Launch sends SIGTERM 5 s after an unanswered Ctrl-C: the evaluator still summarises and closes its report."""
    import signal

    out = tmp_path / "policy.json"
    proc = long_evaluation_after(fake_sim_and_policy, out, "insertion seed 1000: stage score")
    try:
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(timeout=30) == 130, proc.output
    finally:
        proc.stop()
    assert "aloha_eval: interrupted after" in proc.output and "report:" in proc.output
    report = json.loads(out.read_text())
    assert report["config"]["in_progress"] is False and report["config"]["interrupted"] is True


@pytest.mark.ros
def test_a_resumed_evaluation_runs_only_the_missing_seeds(fake_sim_and_policy, tmp_path):
    """--resume keeps the finished episodes of --out (a failed one runs again) and refuses a report of another
    evaluation without touching it."""
    from cosmos_policy_ros.evaluation.report import EpisodeRecord, build_report, write_report

    server = fake_sim_and_policy("--score-per-chunk", "--episode-steps", "20")
    out = tmp_path / "policy.json"
    earlier = [EpisodeRecord(task="insertion", seed=1001, stage_score=75.0, end_reason="max_steps"),
               EpisodeRecord(task="insertion", seed=1002, stage_score=None, status="fault", end_reason="lost")]
    write_report(build_report("policy", earlier, tasks=["insertion"], clock="realtime", label="policy",
                              config={"mode": "direct", "max_steps": 0, "num_candidates": 0}), out)
    before = out.read_text()
    refused = aloha_eval("--driver", "policy", "--task", "insertion", "--episodes", "3", "--mode", "planning",
                         "--out", str(out), "--no-plot", "--resume")
    assert refused.proc.returncode == 2, refused.output
    assert "cannot resume a different evaluation: mode 'direct' (this run: 'planning')." in refused.output
    assert out.read_text() == before and "seed=1000" not in server.output

    proc = aloha_eval("--driver", "policy", "--task", "insertion", "--episodes", "3", "--out", str(out),
                      "--no-plot", "--resume")
    assert proc.proc.returncode == 0, proc.output + server.output
    assert "1 finished episodes kept" in proc.output
    # seed 1001 is kept, not run again; 1000 and the faulted 1002 run
    assert "seed=1000" in server.output and "seed=1002" in server.output and "seed=1001" not in server.output
    report = json.loads(out.read_text())
    episodes = report["tasks"]["insertion"]["episodes"]
    assert [(e["seed"], e["stage_score"]) for e in episodes] == [(1000, 50.0), (1001, 75.0), (1002, 50.0)]
    assert report["config"]["resumed_episodes"] == 1 and report["tasks"]["insertion"]["summary"]["episodes"] == 3


@pytest.mark.ros
def test_policy_driver_stops_at_a_rejected_goal(fake_sim_and_policy, tmp_path):
    fake_sim_and_policy("--reject")
    proc = aloha_eval("--driver", "policy", "--task", "transfer_cube", "--episodes", "3",
                      "--out", str(tmp_path / "r.json"), "--no-plot")
    assert proc.proc.returncode == 1, proc.output
    assert "REJECTED" in proc.output and "[1/3" in proc.output and "[2/3" not in proc.output


@pytest.mark.ros
def test_policy_driver_with_the_policy_node_through_the_sim(start_node, tmp_path):
    """The real policy node (with its hold test double instead of a model) in lockstep with the real sim."""
    sim = start_node("aloha_sim", "sim_node", params=SMALL_LOCKSTEP)
    policy = start_node("cosmos_policy_ros", "policy_node", params={"fake_policy": "hold", "clock_mode": "lockstep",
                                                                     "execute_steps": 25, "smoothing_window": 5})
    out = tmp_path / "policy.json"
    proc = aloha_eval("--driver", "policy", "--task", "transfer_cube", "--episodes", "1", "--max-steps", "100",
                      "--out", str(out), "--no-plot")
    assert proc.proc.returncode == 0, proc.output + policy.output + sim.output
    report = json.loads(out.read_text())
    episode = report["tasks"]["transfer_cube"]["episodes"][0]
    assert report["clock"] == "lockstep"
    assert (episode["status"], episode["end_reason"], episode["steps"]) == ("completed", "max_steps", 100)
    assert episode["stage_score"] == 0.0 and len(episode["tick_period_ms"]) > 0
    assert report["tasks"]["transfer_cube"]["timing"]["chunk_latency_ms"]["n"] == episode["chunks"] > 0
    # the node's own parameters, read over ROS: what made these episodes beside the goal options
    node = report["config"]["policy_node"]
    assert (node["fake_policy"], node["execute_steps"], node["smoothing_window"]) == ("hold", 25, 5)
    assert node["temporal_ensemble_coeff"] < 0 and "policy node /policy_node: checkpoint" in proc.output


def evaluate_eval_launch(**overrides):
    from aloha_bringup import wheel_launch as wl
    description = wl.load_description(ROOT / "launch" / "eval.launch.py")
    nodes, _ = wl.evaluate(description, {k: str(v) for k, v in overrides.items()})
    return {n.label: n for n in nodes}


def test_eval_launch_starts_the_policy_node_only_for_the_policy_driver():
    nodes = evaluate_eval_launch(checkpoint="runs/tiny", device="cuda", image_height=96, image_width=128)
    assert set(nodes) == {"aloha_sim", "policy_node", "aloha_eval"}
    # a policy node that dies ends the evaluation (measured: aloha_eval waited on for a server that had crashed)
    assert nodes["aloha_eval"].shutdown_on_exit and nodes["policy_node"].shutdown_on_exit
    policy = " ".join(nodes["policy_node"].argv)
    assert "checkpoint:=runs/tiny" in policy and "device:=cuda" in policy and "clock_mode:=lockstep" in policy
    assert "aloha_bringup/config/policy.yaml" in policy  # the node's YAML first, the launch arguments on top
    sim = " ".join(nodes["aloha_sim"].argv)
    assert "mode:=lockstep" in sim and "image_width:=128" in sim
    evaluator = nodes["aloha_eval"].argv
    assert evaluator[evaluator.index("--driver") + 1] == "policy"
    assert evaluator[evaluator.index("--seed-start") + 1] == "1000"

    nodes = evaluate_eval_launch(driver="scripted", episodes=3)
    assert set(nodes) == {"aloha_sim", "aloha_eval"}
    evaluator = nodes["aloha_eval"].argv
    assert evaluator[evaluator.index("--episodes") + 1] == "3"


def test_eval_launch_arguments_parse_as_aloha_eval_options():
    from rclpy.utilities import remove_ros_args

    from cosmos_policy_ros.evaluation.cli import build_parser, validate

    argv = evaluate_eval_launch(driver="scripted")["aloha_eval"].argv
    parser = build_parser()
    args = parser.parse_args(remove_ros_args(argv)[1:])
    validate(args, parser)
    assert args.driver == "scripted" and args.replay_episode == [] and args.label == "" and args.out == ""
    assert args.tasks == ["transfer_cube", "insertion"] and args.clock == "lockstep" and args.resume is False
    resumed = evaluate_eval_launch(driver="scripted", resume="true")["aloha_eval"].argv
    assert parser.parse_args(remove_ros_args(resumed)[1:]).resume is True
