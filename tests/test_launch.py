"""The launch files, evaluated and run by the wheel launcher exactly as `ros2 launch` would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ros_harness import ROOT, NodeProcess, wait_until

# the real-hardware graph needs the Interbotix and RealSense packages: evaluated here with the fake hardware,
# and against a made-up prefix holding those packages in tests/test_aloha_driver.py
LAUNCH_FILES = sorted(p.name for p in (ROOT / "launch").glob("*.launch.py") if p.name != "robot_hardware_real.launch.py")
ARGUMENTS = {"robot.launch.py": {"hardware": "fake"}}


def evaluate(name, **overrides):
    from aloha_bringup import wheel_launch as wl
    description = wl.load_description(wl.find_launch_file("aloha_bringup", name))
    return wl.evaluate(description, {k: str(v) for k, v in overrides.items()})


@pytest.mark.parametrize("name", LAUNCH_FILES)
def test_every_launch_file_evaluates_to_existing_executables(name):
    nodes, _ = evaluate(name, **ARGUMENTS.get(name, {}))
    assert nodes, f"{name} starts no node"
    for node in nodes:
        assert Path(node.argv[0]).exists() and os.access(node.argv[0], os.X_OK), node.argv[0]
        assert "--ros-args" in node.argv


def test_arguments_reach_node_parameters():
    nodes, _ = evaluate("sim_scripted.launch.py", tasks="insertion", episodes=7, mode="lockstep")
    by_label = {n.label: n for n in nodes}
    assert set(by_label) == {"aloha_sim", "scripted_driver"}
    sim_args = " ".join(by_label["aloha_sim"].argv)
    assert "mode:=lockstep" in sim_args
    assert re.search(r"--params-file \S+/aloha_bringup/config/aloha_sim.yaml", sim_args)
    driver_args = " ".join(by_label["scripted_driver"].argv)
    assert "episodes:=7" in driver_args and "tasks:=insertion" in driver_args
    assert by_label["scripted_driver"].shutdown_on_exit and not by_label["aloha_sim"].shutdown_on_exit


def test_bad_arguments_are_named():
    from aloha_bringup.wheel_launch import LaunchError
    with pytest.raises(LaunchError, match="unknown launch arguments.*episode"):
        evaluate("sim_scripted.launch.py", episode=3)
    with pytest.raises(LaunchError, match="mode:=fast not one of"):
        evaluate("sim_scripted.launch.py", mode="fast")


@pytest.mark.ros
def test_main_job_runs_scripted_episodes_over_ros(ros_domain):
    """The README's main job, small images and lockstep so that it is quick: exits 0 with a summary."""
    cmd = [sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "sim_scripted.launch.py",
           "episodes:=1", "seed_start:=3", "mode:=lockstep", "image_height:=64", "image_width:=64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env={**os.environ})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    for task in ("transfer_cube", "insertion"):
        assert re.search(rf"{task} episode 1/1 seed 3: stage score \d+/100", out), out
        assert f"{task}: 1 episodes" in out
    assert "score distribution" in out


@pytest.mark.ros
def test_ctrl_c_stops_every_node(ros_domain):
    launcher = NodeProcess([sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "sim.launch.py",
                            "image_height:=64", "image_width:=64"], {**os.environ, "PYTHONUNBUFFERED": "1"})
    assert launcher.wait_for_output("ALOHA sim ready", 60), launcher.output
    pids = [int(p) for p in re.findall(r"started \S+ \[pid (\d+)\]", launcher.output)]
    os.kill(launcher.proc.pid, signal.SIGINT)
    assert launcher.proc.wait(timeout=20) == 0, launcher.output

    def gone(pid: int) -> bool:
        stat = Path(f"/proc/{pid}/stat")
        return not stat.exists() or stat.read_text().split()[2] == "Z"

    assert pids and wait_until(lambda: all(gone(pid) for pid in pids), 5), pids
