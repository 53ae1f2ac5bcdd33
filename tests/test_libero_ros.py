"""LIBERO and RoboCasa through ROS 2: the refusals at start (always), a LIBERO task driven end to end by the policy
node with a tiny libero-layout checkpoint through libero.launch.py (needs .venv-libero: reported as skipped, not
run, without it), and the release's full protocol (needs the released checkpoint and a GPU: deselected by
scripts/test.sh, skipped without the weights)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ros_harness import ROOT

LIBERO_PYTHON = Path(os.environ.get("LIBERO_PYTHON", ROOT / ".venv-libero" / "bin" / "python"))
needs_libero = pytest.mark.skipif(not LIBERO_PYTHON.exists(), reason=f"NOT RUN: {LIBERO_PYTHON} not found (optional "
                                  f"LIBERO extra: ./scripts/setup_libero.sh)")
RELEASE_CHECKPOINT = os.environ.get("COSMOS_LIBERO_CHECKPOINT", "")


@pytest.mark.ros
def test_libero_node_without_its_venv_refuses_naming_the_setup_script(start_node, tmp_path):
    node = start_node("libero_sim", "libero_sim_node", params={"libero_python": str(tmp_path / "missing" / "python")})
    assert node.proc.wait(timeout=60) == 1, node.output
    assert "[libero_sim] error:" in node.output and "./scripts/setup_libero.sh" in node.output
    assert "Traceback" not in node.output


@pytest.mark.ros
def test_robocasa_node_refuses_naming_what_to_install(start_node, monkeypatch):
    monkeypatch.delenv("ROBOCASA_PYTHON", raising=False)
    node = start_node("libero_sim", "robocasa_sim_node")
    assert node.proc.wait(timeout=60) == 1, node.output
    out = node.output
    assert "[robocasa_sim] error:" in out and "RoboCasa is not installed" in out, out
    assert ".venv-robocasa" in out and "download_kitchen_assets" in out and "Traceback" not in out


@pytest.mark.ros
def test_policy_node_refuses_a_checkpoint_of_another_layout_for_libero(start_node):
    node = start_node("cosmos_policy_ros", "policy_node",
                      params={"contract_file": ROOT / "config" / "libero_contract.yaml",
                              "checkpoint": ROOT / "checkpoints" / "aloha_sim_default"})
    assert node.proc.wait(timeout=120) == 1, node.output
    assert "layout aloha" in node.output and "does not fit the contract" in node.output, node.output


def _tiny_checkpoint(out: Path) -> Path:
    """A random tiny libero-layout checkpoint knowing libero_spatial's task texts (asked of the LIBERO worker)."""
    cmd = [sys.executable, "-m", "libero_sim.tiny_checkpoint", "--out", str(out), "--suites", "libero_spatial"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


@pytest.mark.ros
@pytest.mark.slow
@needs_libero
def test_launch_drives_a_libero_task_through_ros_with_a_tiny_checkpoint(ros_domain, tmp_path):
    """libero.launch.py on the CPU: sim node (lockstep), policy node (libero contract, tiny checkpoint), libero_eval:
    one trial of libero_spatial task 0 for 3 chunks of 16 steps. The checkpoint is untrained: success is ~0."""
    checkpoint = _tiny_checkpoint(tmp_path / "libero_tiny")
    report_path = tmp_path / "eval" / "libero.json"
    cmd = [sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "libero.launch.py",
           f"checkpoint:={checkpoint}", "suites:=libero_spatial", "tasks:=0", "trials:=1", "seeds:=195",
           "max_steps:=48", f"out:={report_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={**os.environ})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "LIBERO sim ready: libero_spatial/0" in out and "layout libero" in out, out
    assert re.search(r"1/1 libero_spatial/0 init 0 seed 195: (success|failure) after \d+ steps", out), out
    report = json.loads(report_path.read_text())
    trial = report["trials"][0]
    assert not trial["failed"], trial["end_detail"]
    assert trial["end_reason"] in ("max_steps", "succeeded")
    if trial["end_reason"] == "max_steps":  # 3 chunks of 16 executed open loop
        assert (trial["steps"], trial["chunks"]) == (48, 3)
    assert report["suites"]["libero_spatial"]["trials"] == 1
    assert report_path.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "paper 98.5%" in out


@pytest.mark.gpu
@pytest.mark.weights
@pytest.mark.skipif(not RELEASE_CHECKPOINT, reason="NOT RUN: needs the released LIBERO checkpoint imported with "
                    "`cosmos-policy import-release` (set COSMOS_LIBERO_CHECKPOINT) and a CUDA GPU")
@needs_libero
def test_release_protocol_reproduces_the_papers_libero_figure(ros_domain, tmp_path):
    """The full protocol (4 suites x 10 tasks x 50 trials, seeds 195-197): the paper reports 98.5% on average."""
    report_path = tmp_path / "libero_release.json"
    cmd = [sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "libero.launch.py",
           f"checkpoint:={RELEASE_CHECKPOINT}", "device:=cuda", f"out:={report_path}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-5000:]
    report = json.loads(report_path.read_text())
    assert report["average_success_rate"] >= 0.95, report["average_success_rate"]


@pytest.mark.ros
@pytest.mark.slow
@needs_libero
def test_sim_node_serves_the_contract_in_lockstep(start_node, test_node):
    """The LIBERO node seen from another process: reset by suite/task/init index, one step per stamped 7-D command,
    proprio and both cameras with the step's stamp, a 0/100 stage score, refusals held still."""
    import time

    from builtin_interfaces.msg import Time
    from ros_harness import wait_until
    from sensor_msgs.msg import Image, JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile, vector_to_joint_state
    from aloha_interfaces.msg import StageScore
    from aloha_interfaces.srv import ResetEpisode
    from libero_sim.sim_node import shipped_contract

    c = load_contract(shipped_contract())
    got: dict[str, list] = {}

    def keep(name):
        return lambda msg: got.setdefault(name, []).append(msg)

    test_node.create_subscription(JointState, c.topic("joint_states"), keep("state"), qos_profile(c, "joint_states"))
    test_node.create_subscription(StageScore, c.topic("stage_score"), keep("score"), qos_profile(c, "stage_score"))
    for cam in c.cameras:
        test_node.create_subscription(Image, c.camera_topic(cam), keep(cam), qos_profile(c, "images"))
    pub = test_node.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
    sim = start_node("libero_sim", "libero_sim_node", params={"image_height": 64, "image_width": 64,
                                                              "camera_every_steps": 2, "peer_check_s": 0.5})
    client = test_node.create_client(ResetEpisode, c.service("reset_episode"))
    assert client.wait_for_service(timeout_sec=120), sim.output
    assert wait_until(lambda: pub.get_subscription_count() > 0, 20), sim.output

    bad = client.call_async(ResetEpisode.Request(task="libero_spatial/0", seed=50))
    assert wait_until(bad.done, 60) and not bad.result().success
    assert "init-state index 50 outside 0..49" in bad.result().message
    got.clear()
    future = client.call_async(ResetEpisode.Request(task="libero_object/2", seed=4))
    assert wait_until(future.done, 180), sim.output
    response = future.result()
    assert response.success and response.episode_steps == 280 and response.task_description, response.message
    assert wait_until(lambda: got.get("state") and got.get("agentview") and got.get("wrist"), 10)
    state = got["state"][-1]
    assert list(state.name) == c.state_names and len(state.position) == 9
    frame = got["agentview"][-1]
    assert (frame.height, frame.width, frame.encoding) == (64, 64, "rgb8") and frame.header.stamp == state.header.stamp
    t0 = state.header.stamp.sec + state.header.stamp.nanosec * 1e-9

    up = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0, -1.0]
    for k in range(1, 3):  # each command stamped with the sim time it answers advances one step
        n = len(got["state"])
        stamp = t0 + (k - 1) * c.control_period_s
        sec = int(stamp)
        pub.publish(vector_to_joint_state(up, c.joint_names, Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9)))))
        assert wait_until(lambda n=n: len(got["state"]) > n, 20), sim.output
    assert got["state"][-1].position[4] > state.position[4]  # the end effector went up
    assert wait_until(lambda: got["score"][-1].episode_step == 2, 5)
    score = got["score"][-1]
    assert score.score in (0.0, 100.0) and score.source == "sim" and score.task == response.task_description
    assert len(got["agentview"]) == 2  # reset + step 2: frames every 2 steps
    n = len(got["state"])
    pub.publish(vector_to_joint_state([0, 0, 5.0, 0, 0, 0, -1], c.joint_names, Time(sec=99)))  # stale stamp: ignored
    time.sleep(1.0)
    assert len(got["state"]) == n
    assert "lockstep: ignoring a command" in sim.output
    # out of the box, stamped now: refused, the step runs with the hold command (the arm stays where it is)
    z = got["state"][-1].position[4]
    stamp = t0 + 2 * c.control_period_s
    sec = int(stamp)
    pub.publish(vector_to_joint_state([0, 0, 5.0, 0, 0, 0, -1], c.joint_names,
                                      Time(sec=sec, nanosec=int(round((stamp - sec) * 1e9)))))
    assert wait_until(lambda: len(got["state"]) > n, 20), sim.output
    assert got["state"][-1].position[4] - z < 0.01  # an up command at full scale moved it ~0.01-0.02 per step above
    assert wait_until(lambda: "refused command [invalid]: delta_z 5.000 outside" in sim.output, 5), sim.output
