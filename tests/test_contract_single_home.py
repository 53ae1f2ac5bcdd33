"""One home for each contract fact: the simulator, the fake arms, the bridge and the launch files read the start
pose, the camera size and the follower joint layout from the contract, so a changed contract changes them all.

Each test loads a contract that differs from the shipped one in the fact under test: a copy of the shipped value
anywhere (a constant, a YAML key, a launch default) makes it fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from ros_harness import ROOT

SHIPPED = ROOT / "config" / "aloha_contract.yaml"


def contract_with(tmp_path, monkeypatch=None, **changes):
    """The shipped contract with ``changes`` applied to its raw YAML (dotted keys), loaded from a temp file."""
    from aloha_contract import load_contract
    raw = yaml.safe_load(SHIPPED.read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = raw
        for parent in parents:
            node = node[parent]
        node[key] = value
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    if monkeypatch is not None:
        monkeypatch.setenv("ALOHA_CONTRACT", str(path))
    return load_contract(path)


START = {"waist": 0.1, "shoulder": -0.9, "elbow": 1.1, "forearm_roll": 0.05, "wrist_angle": -0.25, "wrist_rotate": 0.2}


def test_the_sim_starts_episodes_in_the_contract_start_pose(tmp_path):
    from aloha_sim.env import AlohaSimEnv
    contract = contract_with(tmp_path, **{"start_pose.arm_joints_rad": START, "start_pose.sim_finger_position_m": 0.03})
    env = AlohaSimEnv("transfer_cube", render=False, contract=contract)
    qpos = env.reset(0).qpos
    per_arm = len(contract.arm_joints) + 1
    finger = contract.gripper_calibration("sim").follower_finger_position_m
    for arm_i in range(len(contract.arms)):
        np.testing.assert_allclose(qpos[arm_i * per_arm:arm_i * per_arm + 6], list(START.values()), atol=1e-9)
        assert qpos[arm_i * per_arm + 6] == pytest.approx(finger.normalize(0.03), abs=1e-9)
    np.testing.assert_allclose(env.start_command()[:6], list(START.values()))


def test_the_fake_arms_start_in_the_contract_start_pose(tmp_path):
    from aloha_bringup.fake_arm import FakeArm
    contract = contract_with(tmp_path, **{"start_pose.arm_joints_rad": START})
    position, _ = FakeArm(contract, contract.gripper_calibration("real")).joint_states()
    np.testing.assert_allclose(position[contract.follower_arm_indices], list(START.values()))


def test_the_scripted_demos_take_the_start_pose_from_the_contract():
    from aloha_sim import tasks
    assert not hasattr(tasks, "START_ARM_JOINTS_RAD") and not hasattr(tasks, "START_FINGER_POSITION_M")


def test_the_sim_camera_size_defaults_to_the_contract(tmp_path):
    from aloha_sim import scene
    from aloha_sim.env import AlohaSimEnv
    contract = contract_with(tmp_path, **{"cameras.height": 240, "cameras.width": 320})
    env = AlohaSimEnv("transfer_cube", render=False, contract=contract)
    assert env.image_size == (240, 320)
    assert not hasattr(scene, "DEFAULT_IMAGE_SIZE"), "a second home for the camera size"


def test_sim_parameter_file_repeats_no_contract_fact():
    sim = yaml.safe_load((ROOT / "config" / "aloha_sim.yaml").read_text())["/**/aloha_sim"]["ros__parameters"]
    assert not {"image_height", "image_width", "camera_rate_hz"} & set(sim), sim


def test_the_sim_launch_files_take_the_camera_size_from_the_contract(tmp_path, monkeypatch):
    from aloha_bringup import wheel_launch as wl
    contract_with(tmp_path, monkeypatch, **{"cameras.height": 240, "cameras.width": 320})
    for name in ("sim.launch.py", "sim_scripted.launch.py"):
        nodes, _ = wl.evaluate(wl.load_description(wl.find_launch_file("aloha_bringup", name)), {})
        sim = " ".join(next(n for n in nodes if n.label == "aloha_sim").argv)
        assert "image_height:=240" in sim and "image_width:=320" in sim, (name, sim)


def test_sim_launch_defaults_are_the_sim_parameter_file():
    """Launch passes every declared argument: a default that differs from the YAML would silently override it."""
    from aloha_bringup import wheel_launch as wl
    from aloha_bringup.launch_defaults import SIM_LAUNCH_KEYS
    yaml_params = yaml.safe_load((ROOT / "config" / "aloha_sim.yaml").read_text())["/**/aloha_sim"]["ros__parameters"]
    description = wl.load_description(wl.find_launch_file("aloha_bringup", "sim.launch.py"))
    defaults = {e.name: e.default_value for e in description.entities if isinstance(e, wl.DeclareLaunchArgument)}
    for key in SIM_LAUNCH_KEYS:
        assert defaults[key] == str(yaml_params[key]), key


# a follower layout with the gripper joint and the observed finger in other places than 6 and 7
MOVED_LAYOUT = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "left_finger", "gripper",
                "right_finger"]


def test_gripper_and_finger_indices_come_from_the_layout(tmp_path):
    from aloha_contract.gripper import qpos_from_follower_positions
    contract = contract_with(tmp_path, follower_joint_names=MOVED_LAYOUT)
    assert (contract.follower_finger_index, contract.follower_gripper_index) == (6, 7)
    cal = contract.gripper_calibration("real")
    finger = cal.follower_finger_position_m
    arm = [0.1, -0.9, 1.1, 0.0, -0.3, 0.0]
    positions = [*arm, finger.unnormalize(0.25), 1.0, -finger.unnormalize(0.25)]
    qpos = qpos_from_follower_positions(contract, [positions, positions], cal)
    assert qpos[contract.gripper_indices] == pytest.approx([0.25, 0.25])  # from left_finger, not the joint
    np.testing.assert_allclose(qpos[:6], arm)


def test_the_driver_bridge_reads_the_layout_from_the_contract(tmp_path):
    from aloha_bringup.interbotix_bridge import FollowerStates
    contract = contract_with(tmp_path, follower_joint_names=MOVED_LAYOUT)
    cal = contract.gripper_calibration("real")
    finger, joint = cal.follower_finger_position_m, cal.follower_gripper_joint_rad
    states = FollowerStates(contract, cal)
    values = {"waist": 0.1, "shoulder": -0.9, "elbow": 1.1, "forearm_roll": 0.0, "wrist_angle": -0.3,
              "wrist_rotate": 0.0, "gripper": joint.unnormalize(0.7), "left_finger": finger.unnormalize(0.4),
              "right_finger": -finger.unnormalize(0.4)}
    names = sorted(values)  # any message order: matched by name
    for arm in contract.arms:
        states.update(arm, names, [values[n] for n in names], [], [], None, 0, 0.0)
    observed = states.observation().position
    assert observed[contract.gripper_indices] == pytest.approx([0.4, 0.4])  # the finger position
    assert states.measured_for_commands()[contract.gripper_indices] == pytest.approx([0.7, 0.7])  # the gripper joint


def test_the_sim_follower_states_follow_the_contract_layout(tmp_path):
    from aloha_sim.env import AlohaSimEnv
    contract = contract_with(tmp_path, follower_joint_names=MOVED_LAYOUT)
    env = AlohaSimEnv("transfer_cube", render=False, contract=contract)
    env.reset(0)
    state = env.follower_joint_states()["left"]
    assert state.names == MOVED_LAYOUT
    left_finger = state.position[MOVED_LAYOUT.index("left_finger")]
    assert left_finger == pytest.approx(contract.start_sim_finger_position_m, abs=1e-6)
    assert state.position[MOVED_LAYOUT.index("right_finger")] == pytest.approx(-left_finger)


def test_a_contract_without_the_new_keys_is_named(tmp_path):
    from aloha_contract import ContractError, load_contract
    raw = yaml.safe_load(SHIPPED.read_text())
    del raw["start_pose"]["arm_joints_rad"]["elbow"]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match=r"start_pose.arm_joints_rad lacks \['elbow'\]"):
        load_contract(path)
    raw = yaml.safe_load(SHIPPED.read_text())
    raw["follower_finger_joint"] = "thumb"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match="follower_finger_joint 'thumb' is not in follower_joint_names"):
        load_contract(path)
