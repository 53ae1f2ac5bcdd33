"""The launch files, evaluated and run by the wheel launcher exactly as `ros2 launch` would run them."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
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
    assert by_label["scripted_driver"].shutdown_on_exit and by_label["aloha_sim"].shutdown_on_exit


def test_eval_launch_passes_planning_candidates_to_the_goals():
    nodes, _ = evaluate("eval.launch.py", policy_mode="planning", num_candidates=4)
    argv = next(n for n in nodes if n.label == "aloha_eval").argv
    assert argv[argv.index("--num-candidates") + 1] == "4" and argv[argv.index("--mode") + 1] == "planning"
    assert argv[argv.index("--action-steps") + 1] == "0"  # 0: the checkpoint's denoising steps


def test_eval_launch_passes_denoising_steps_to_the_goals():
    nodes, _ = evaluate("eval.launch.py", action_steps=10)
    argv = next(n for n in nodes if n.label == "aloha_eval").argv
    assert argv[argv.index("--action-steps") + 1] == "10"


@pytest.mark.parametrize("name", ["eval.launch.py", "policy.launch.py"])
def test_a_policy_params_file_goes_over_the_node_yaml_and_under_the_arguments(name):
    nodes, _ = evaluate(name, policy_params="/tmp/overrides.yaml", checkpoint="runs/x")
    argv = next(n for n in nodes if n.label == "policy_node").argv
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "--params-file"]
    assert len(files) == 2 and files[0].endswith("aloha_bringup/config/policy.yaml")
    assert files[1] == "/tmp/overrides.yaml"
    assert argv.index("/tmp/overrides.yaml") < argv.index("checkpoint:=runs/x")  # a later entry wins
    nodes, _ = evaluate(name)  # by default the node YAML again: nothing changes
    argv = next(n for n in nodes if n.label == "policy_node").argv
    files = [argv[i + 1] for i, a in enumerate(argv) if a == "--params-file"]
    assert files[0] == files[1]


def test_the_shipped_parameter_overlays_set_only_parameters_the_node_has():
    """rclpy ignores a YAML key the node never declares: a typo in an overlay would silently change nothing."""
    import yaml

    def params(path):
        return yaml.safe_load(path.read_text())["/**/policy_node"]["ros__parameters"]

    known = set(params(ROOT / "config" / "policy.yaml"))
    overlay = params(ROOT / "config" / "policy_ensemble.yaml")
    assert overlay and set(overlay) <= known
    assert overlay["temporal_ensemble_coeff"] >= 0.0  # on (the node: negative = off)


def test_policy_launch_runs_planning_episodes_when_asked():
    nodes, _ = evaluate("policy.launch.py", planning_checkpoint="runs/planning", policy_mode="planning",
                        num_candidates=4)
    by_label = {n.label: n for n in nodes}
    runner = " ".join(by_label["run_policy"].argv)
    assert "policy_mode:=planning" in runner and "num_candidates:=4" in runner
    assert "planning_checkpoint:=runs/planning" in " ".join(by_label["policy_node"].argv)
    direct = " ".join(next(n for n in evaluate("policy.launch.py")[0] if n.label == "run_policy").argv)
    assert "policy_mode:=direct" in direct


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


@pytest.mark.ros
def test_a_graph_whose_sim_is_refused_on_a_busy_domain_ends(start_node, test_node):
    """Measured defect: the refused second sim left its evaluation (and policy) nodes running on the domain, where
    they reset and command the first run's simulator. Without the shutdown this launch never ends."""
    first = start_node("aloha_sim", "sim_node", params={"image_height": 64, "image_width": 64})
    assert first.wait_for_output("ALOHA sim ready", 60), first.output
    launcher = NodeProcess([sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "eval.launch.py",
                            "driver:=scripted", "episodes:=50", "image_height:=64", "image_width:=64"],
                           {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert wait_until(lambda: launcher.proc.poll() is not None, 90), launcher.output
    finally:
        launcher.stop()
    assert "another simulator or robot is already running" in launcher.output, launcher.output
    assert "episode 2/50" not in launcher.output, launcher.output
    assert first.proc.poll() is None, first.output


# ---- use_sim_time: a lockstep simulator is the clock of every other node ----

# (launch file, its arguments): every graph whose simulator can run in lockstep
SIM_GRAPHS = [("sim_scripted.launch.py", {}), ("policy.launch.py", {}), ("eval.launch.py", {})]


def sim_time_of(node) -> str | None:
    """The use_sim_time value a node is started with (None: not set)."""
    values = [a.split(":=", 1)[1] for a in node.argv if a.startswith("use_sim_time:=")]
    return values[-1] if values else None



@pytest.mark.parametrize("name,arguments", SIM_GRAPHS)
@pytest.mark.parametrize("mode", ["lockstep", "realtime"])
def test_lockstep_graphs_run_on_the_simulator_clock(name, arguments, mode):
    nodes, _ = evaluate(name, mode=mode, **arguments)
    assert "aloha_sim" in {n.label for n in nodes}
    for node in nodes:
        # the sim publishes /clock (lockstep) and never follows it; everything else follows it in lockstep only
        expected = "true" if mode == "lockstep" and node.label != "aloha_sim" else "false"
        assert sim_time_of(node) == expected, (name, mode, node.label, node.argv)


def test_the_real_robot_never_runs_on_sim_time():
    nodes, _ = evaluate("policy.launch.py", robot="real", hardware="fake", mode="lockstep")
    assert all(sim_time_of(n) in (None, "false") for n in nodes), [n.argv for n in nodes]


def test_dict_parameters_get_the_types_launch_ros_gives_them():
    """launch_ros reads a substitution's text as YAML ("True" -> bool) and keeps a Python str a string."""
    from aloha_bringup import wheel_launch as wl
    context = wl.Context({"mode": "lockstep", "empty": "", "n": "1000"})
    expression = wl.PythonExpression(["'", wl.LaunchConfiguration("mode"), "' == 'lockstep'"])
    args = wl._param_args([{"a": expression, "b": wl.LaunchConfiguration("empty"), "c": wl.LaunchConfiguration("n"),
                            "d": "1000", "e": True, "f": [1, 2], "g": "transfer_cube"}], context)
    assert args == ["-p", "a:=true", "-p", "b:=''", "-p", "c:=1000", "-p", "d:='1000'", "-p", "e:=true",
                    "-p", "f:=[1, 2]", "-p", "g:=transfer_cube"]


@pytest.mark.ros
def test_lockstep_nodes_get_use_sim_time_as_a_bool(ros_domain, test_node):
    """Run under the wheel launcher: the parameter reaches each node with the type real launch gives it."""
    from rcl_interfaces.msg import ParameterType
    from rcl_interfaces.srv import GetParameters
    launcher = NodeProcess([sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "sim_scripted.launch.py",
                            "mode:=lockstep", "episodes:=1", "tasks:=transfer_cube", "image_height:=48",
                            "image_width:=64"], {**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        def use_sim_time(node_name: str):
            client = test_node.create_client(GetParameters, f"/{node_name}/get_parameters")
            assert client.wait_for_service(timeout_sec=60), launcher.output
            future = client.call_async(GetParameters.Request(names=["use_sim_time"]))
            assert wait_until(future.done, 10), launcher.output
            value = future.result().values[0]
            return value.type, value.bool_value

        assert use_sim_time("scripted_driver") == (ParameterType.PARAMETER_BOOL, True)
        assert use_sim_time("aloha_sim") == (ParameterType.PARAMETER_BOOL, False)
    finally:
        launcher.stop()


def test_stopping_escalates_from_sigint_to_sigterm_to_sigkill_as_launch_does(capfd, monkeypatch):
    # launch's ExecuteProcess: SIGINT, SIGTERM after sigterm_timeout, SIGKILL after sigkill_timeout. A node
    # started with SIGINT ignored (a background job's children) stops at the SIGTERM; one ignoring both is killed
    from aloha_bringup import wheel_launch
    from aloha_bringup.wheel_launch import NodeProcess as LaunchedNode
    monkeypatch.setattr(wheel_launch, "SIGTERM_TIMEOUT_S", 1.0)
    monkeypatch.setattr(wheel_launch, "SIGKILL_TIMEOUT_S", 1.0)
    ignores_int = ("import signal, sys, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                   "def on_term(*_):\n    print('got SIGTERM', flush=True)\n    sys.exit(0)\n"
                   "signal.signal(signal.SIGTERM, on_term)\nprint('up', flush=True)\ntime.sleep(60)\n")
    ignores_both = ("import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
                    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('up', flush=True)\ntime.sleep(60)\n")
    ends = "import time\ntime.sleep(1.0)\n"
    start = time.monotonic()
    code = wheel_launch.supervise([LaunchedNode("stubborn", [sys.executable, "-c", ignores_int], False),
                                   LaunchedNode("deaf", [sys.executable, "-c", ignores_both], False),
                                   LaunchedNode("ends", [sys.executable, "-c", ends], True)], {})
    elapsed = time.monotonic() - start
    out = capfd.readouterr().out
    assert code == 0, out
    assert "[launch] stubborn still running: sending SIGTERM" in out and "got SIGTERM" in out, out
    assert "[launch] deaf still running: sending SIGKILL" in out, out
    assert "stubborn still running: sending SIGKILL" not in out, out
    assert elapsed >= 2.0, elapsed  # it waited out both timeouts before the SIGKILL
