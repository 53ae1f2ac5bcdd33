"""policy.launch.py: what it starts for the sim and the real robot, and the main job end to end."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import pytest


def evaluate(**overrides):
    from aloha_bringup import wheel_launch as wl
    description = wl.load_description(wl.find_launch_file("aloha_bringup", "policy.launch.py"))
    return wl.evaluate(description, {k: str(v) for k, v in overrides.items()})


def labels(nodes):
    return {n.label: n for n in nodes}


def test_sim_graph_with_the_shipped_checkpoint_by_default():
    nodes = labels(evaluate()[0])
    assert {"aloha_sim", "policy_node", "run_policy"} <= set(nodes)
    policy_args = " ".join(nodes["policy_node"].argv)
    assert re.search(r"checkpoint:=\S+/cosmos_policy_ros/checkpoints/aloha_sim_default", policy_args)
    assert "clock_mode:=lockstep" in policy_args  # the main job: deterministic, immune to a busy CPU
    assert re.search(r"--params-file \S+/aloha_bringup/config/policy.yaml", policy_args)
    assert nodes["run_policy"].shutdown_on_exit and nodes["policy_node"].shutdown_on_exit


def test_arguments_reach_the_nodes():
    nodes = labels(evaluate(mode="lockstep", checkpoint="/x/ckpt", device="cuda", task="insertion", episodes=3,
                            image_height=48, image_width=64)[0])
    policy_args = " ".join(nodes["policy_node"].argv)
    assert "checkpoint:=/x/ckpt" in policy_args and "device:=cuda" in policy_args
    assert "clock_mode:=lockstep" in policy_args
    sim_args = " ".join(nodes["aloha_sim"].argv)
    assert "mode:=lockstep" in sim_args and "image_height:=48" in sim_args
    runner = " ".join(nodes["run_policy"].argv)
    assert "tasks:=insertion" in runner and "episodes:=3" in runner and "seed_start:=1000" in runner


def test_episodes_zero_waits_for_goals():
    assert "run_policy" not in labels(evaluate(episodes=0)[0])


def test_real_robot_starts_no_simulator_and_no_episodes():
    nodes = labels(evaluate(robot="real", hardware="fake")[0])  # the Interbotix packages are absent here
    assert "aloha_sim" not in nodes and "run_policy" not in nodes
    assert {"policy_node", "aloha_driver"} <= set(nodes)
    # the real robot keeps the wall clock whatever the sim's mode argument says (lockstep by default)
    assert "clock_mode:=realtime" in " ".join(nodes["policy_node"].argv)


@pytest.mark.ros
def test_policy_launch_runs_episodes_through_the_action(ros_domain, tmp_path):
    """The README's main job with a tiny random checkpoint at small size in lockstep: exits 0 with scores."""
    ckpt = tiny_checkpoint(tmp_path / "ckpt", execute_steps=50)
    cmd = [sys.executable, "-m", "aloha_bringup.wheel_launch", "aloha_bringup", "policy.launch.py",
           f"checkpoint:={ckpt}", "episodes:=1", "mode:=lockstep", "image_height:=48", "image_width:=64"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=400, env={**os.environ})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    assert "policy ready" in out
    for task in ("transfer_cube", "insertion"):
        assert re.search(rf"{task}.*stage score", out), out[-5000:]


def tiny_checkpoint(directory, hw=(48, 64), execute_steps=25):
    """A tiny random checkpoint whose chunks stay within 1 mrad of the sim's start pose (safe to execute)."""
    from aloha_contract import load_contract
    from aloha_sim.env import AlohaSimEnv
    from aloha_sim.tasks import load_tasks
    from cosmos_policy.checkpoint import save_checkpoint
    from cosmos_policy.config import NetworkConfig, load_layout
    from cosmos_policy.data.text import build_text_cache
    from cosmos_policy.deploy import DeployConfig
    from cosmos_policy.diffusion import CosmosPolicyModel

    network = NetworkConfig.preset_config("tiny")
    model = CosmosPolicyModel(network, dataclasses.replace(load_layout("aloha"), camera_hw=hw))
    start = AlohaSimEnv("transfer_cube", cameras=[], render=False, contract=load_contract()).start_command()
    stats = {"actions_min": list(start - 1e-3), "actions_max": list(start + 1e-3), "proprio_min": [-2.0] * 14,
             "proprio_max": [2.0] * 14}
    texts = [spec.description for spec in load_tasks().values()]
    return save_checkpoint(directory, model, statistics=stats,
                           text_cache=build_text_cache(texts, d_text=network.text_embed_dim,
                                                       max_length=network.text_max_tokens),
                           deploy=DeployConfig(control_hz=50.0, execute_steps=execute_steps, action_steps=1))


@pytest.mark.ros
def test_planning_goal_runs_best_of_n_with_the_planning_checkpoint(start_node, test_node, tmp_path):
    """mode planning: the base checkpoint proposes, the planning checkpoint scores; feedback carries the spread."""
    from ros_harness import wait_until
    from test_policy_node import action_client, reset_sim, start_sim, wait_result

    from aloha_contract import load_contract
    from aloha_interfaces.action import RunPolicy

    contract = load_contract()
    base = tiny_checkpoint(tmp_path / "base")
    planner = tiny_checkpoint(tmp_path / "planner")
    start_sim(start_node, mode="lockstep")
    policy = start_node("cosmos_policy_ros", "policy_node", params={
        "checkpoint": str(base), "planning_checkpoint": str(planner), "clock_mode": "lockstep",
        "world_model_samples": 2, "value_samples": 3, "planning_depth": 2,
        "publish_predicted_images": True, "predicted_images_period_s": 0.0})
    assert policy.wait_for_output("policy ready", 120), policy.output
    assert "2 world model x 3 value samples per candidate, depth 2" in policy.output, policy.output
    client = action_client(test_node, contract)
    assert client.wait_for_server(timeout_sec=30)
    assert wait_until(lambda: policy.output.count("subscribed to") == 3, 30), policy.output
    description = reset_sim(test_node, contract).task_description
    from std_msgs.msg import Float32MultiArray
    candidates = []
    test_node.create_subscription(Float32MultiArray, contract.topic("policy_candidate_values"),
                                  lambda m: candidates.append(list(m.data)), 10)
    from sensor_msgs.msg import Image
    predicted = {}
    for cam in contract.cameras:
        test_node.create_subscription(Image, contract.topic("policy_predicted_image", camera=cam),
                                      lambda m, cam=cam: predicted.setdefault(cam, []).append(m), 10)
    feedback = []
    future = client.send_goal_async(RunPolicy.Goal(task=description, mode=RunPolicy.Goal.MODE_PLANNING,
                                                   max_steps=50, num_candidates=3, seed=5),
                                    feedback_callback=lambda fb: feedback.append(fb.feedback))
    assert wait_until(future.done, 15) and future.result().accepted
    result = wait_result(future.result(), 300).result
    assert result.end_reason == RunPolicy.Result.END_MAX_STEPS, result.end_detail
    assert result.chunks_executed == 2 and feedback
    assert all(0.0 <= f.predicted_value <= 1.0 and f.value_spread >= 0.0 for f in feedback)
    assert any(f.value_spread > 0.0 for f in feedback)  # three candidates scored differently
    # the live view carries every candidate's value; the chunk executed is the best one, its spread the feedback's
    assert wait_until(lambda: len(candidates) >= 2, 10)
    assert all(len(values) == 3 for values in candidates)
    spreads = sorted(round(max(v) - min(v), 4) for v in candidates)
    assert any(abs(s - round(f.value_spread, 4)) < 1e-3 for f in feedback for s in spreads)
    # asked for, the winner's predicted future images are published for every camera, as in direct mode
    assert wait_until(lambda: len(predicted) == len(contract.cameras), 10), predicted.keys()
    assert all(m.width > 0 and m.height > 0 and m.encoding == "rgb8" for msgs in predicted.values() for m in msgs)
