"""run_policy against a fake RunPolicy server: exit status, goal contents, faults, rejection, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
from ros_harness import NodeProcess, package_executable

pytestmark = pytest.mark.ros

FAKE = Path(__file__).parent / "nodes" / "fake_run_policy_server.py"


@pytest.fixture
def fake_server(ros_domain):
    started = []

    def start(*args: str) -> NodeProcess:
        server = NodeProcess([sys.executable, str(FAKE), *args], {**os.environ, "PYTHONUNBUFFERED": "1"})
        started.append(server)
        assert server.wait_for_output("fake RunPolicy server ready", 30), server.output
        return server

    yield start
    for server in started:
        server.stop()


def run_policy(*args: str, timeout_s: float = 120) -> NodeProcess:
    proc = NodeProcess([package_executable("cosmos_policy_ros", "run_policy"), *args],
                       {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        proc.proc.wait(timeout=timeout_s)
    finally:
        proc.stop()
    return proc


def test_normal_run_resets_each_episode_and_exits_0(fake_server):
    server = fake_server("--with-sim", "--score-per-chunk", "--episode-steps", "40")
    proc = run_policy("--task", "transfer_cube,insertion", "--episodes", "2", "--seed-start", "7")
    out = proc.output
    assert proc.proc.returncode == 0, out + server.output
    # one reset per episode with its own seed; the goal carries the reset's task text and length
    assert re.findall(r"reset: task=(\w+) seed=(\d+)", server.output) == [
        ("transfer_cube", "7"), ("transfer_cube", "8"), ("insertion", "7"), ("insertion", "8")]
    goals = re.findall(r"goal: task='([^']*)' mode=0 max_steps=(\d+) seed=(\d+)", server.output)
    assert [g[1:] for g in goals] == [("40", "7"), ("40", "8"), ("40", "7"), ("40", "8")]
    assert goals[0][0].startswith("Pick up the red cube") and goals[2][0].startswith("Pick up the red peg")
    # progress per chunk on one line, a result per episode, a summary per task
    assert "step 20/40 chunk 2" in out and "stage 50" in out
    assert "episode 2/2 insertion seed 8: stage score 100/100" in out
    assert re.search(r"transfer_cube\s+2/2 \(100%\)", out) and re.search(r"insertion\s+2/2 \(100%\)", out)


def test_a_policy_scoring_zero_is_not_a_failure(fake_server):
    fake_server("--with-sim", "--episode-steps", "20")
    proc = run_policy("--task", "transfer_cube", "--episodes", "1", "--mode", "planning")
    assert proc.proc.returncode == 0, proc.output
    assert "stage score 0/100" in proc.output


def test_faulted_run_exits_non_zero_and_names_the_fault(fake_server):
    fake_server("--fault-at-step", "20", "--end-reason", "stale_sensor")
    proc = run_policy("--task", "transfer_cube", "--episodes", "3", "--reset", "false", "--max-steps", "100")
    assert proc.proc.returncode == 1, proc.output
    assert "stale_sensor FAULT: fake: stale_sensor at step 20" in proc.output
    assert "episode 2/3" not in proc.output  # stops at the first fault without --keep-going


def test_rejected_goal_exits_non_zero(fake_server):
    fake_server("--reject")
    proc = run_policy("--task", "insertion", "--reset", "false")
    assert proc.proc.returncode == 1, proc.output
    assert "REJECTED" in proc.output


def test_missing_server_exits_non_zero(ros_domain):
    proc = run_policy("--task", "insertion", "--server-timeout", "1")
    assert proc.proc.returncode == 1, proc.output
    assert "no RunPolicy action server at /aloha/run_policy" in proc.output


def test_ros_parameters_configure_it_as_a_launch_node(fake_server):
    server = fake_server("--with-sim", "--episode-steps", "20")
    proc = run_policy("--ros-args", "-p", "tasks:=insertion", "-p", "episodes:=2", "-p", "seed_start:=30",
                      "-p", "policy_mode:=planning", "-p", "max_steps:=10")
    assert proc.proc.returncode == 0, proc.output
    assert re.findall(r"mode=(\d) max_steps=(\d+) seed=(\d+)", server.output) == [("1", "10", "30"), ("1", "10", "31")]


def test_ctrl_c_cancels_the_running_goal(fake_server):
    server = fake_server("--chunk-period", "0.05")
    proc = NodeProcess([package_executable("cosmos_policy_ros", "run_policy"), "--task", "transfer_cube",
                        "--reset", "false", "--max-steps", "1000000"], {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.wait_for_output("chunk 3 ", 60), proc.output
        os.killpg(proc.proc.pid, signal.SIGINT)
        assert proc.proc.wait(timeout=30) == 130, proc.output
    finally:
        proc.stop()
    assert server.wait_for_output("canceled at step", 10), server.output
    assert "cancelled:" in proc.output and "Traceback" not in proc.output


def test_a_server_that_dies_mid_run_is_a_failure_not_a_hang(fake_server):
    server = fake_server("--chunk-period", "0.05")
    proc = NodeProcess([package_executable("cosmos_policy_ros", "run_policy"), "--task", "transfer_cube",
                        "--reset", "false", "--max-steps", "1000000"], {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.wait_for_output("chunk 2 ", 60), proc.output
        os.killpg(server.proc.pid, signal.SIGKILL)
        assert proc.proc.wait(timeout=60) == 1, proc.output
    finally:
        proc.stop()
    assert "went away during the run" in proc.output
