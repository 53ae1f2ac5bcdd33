"""The robot contract: loading, topic names, gripper normalisation, command validation."""

import numpy as np
import pytest
import yaml

from aloha_contract import ContractError, InvalidCommand, check_joint_command, load_contract
from aloha_contract.gripper import follower_targets_from_command, leader_command_from_positions, qpos_from_follower_positions


@pytest.fixture(scope="module")
def contract():
    return load_contract()


def test_act_joint_order_and_topics(contract):
    assert contract.joint_names[:7] == ["left_waist", "left_shoulder", "left_elbow", "left_forearm_roll",
                                        "left_wrist_angle", "left_wrist_rotate", "left_gripper"]
    assert contract.joint_names[7] == "right_waist" and contract.gripper_indices == [6, 13]
    # relative: resolved in the node's (robot's) namespace
    assert contract.camera_topic("cam_left_wrist") == "cam_left_wrist/camera/color/image_rect_raw"
    assert contract.follower_joint_states_topic("right") == "follower_right/joint_states"
    assert contract.control_period_s == pytest.approx(0.02)
    with pytest.raises(ContractError, match="topic 'cmd_vel' is not in the contract"):
        contract.topic("cmd_vel")


def test_broken_contract_files_are_named(tmp_path):
    with pytest.raises(ContractError, match="not found"):
        load_contract(tmp_path / "nope.yaml")
    raw = yaml.safe_load(open(load_contract().source))
    raw["arm_joints"] = raw["arm_joints"][:5]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match="needs 14"):
        load_contract(bad)
    del raw["topics"]
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(ContractError, match=r"missing keys \['topics'\]"):
        load_contract(bad)


@pytest.mark.parametrize("profile", ["real", "sim"])
def test_gripper_normalisation_round_trips(contract, profile):
    cal = contract.gripper_calibration(profile)
    for rng in (cal.follower_finger_position_m, cal.leader_gripper_joint_rad, cal.follower_gripper_joint_rad):
        assert rng.normalize(rng.open) == pytest.approx(1.0) and rng.normalize(rng.close) == pytest.approx(0.0)
        for x in np.linspace(-0.2, 1.2, 15):
            assert rng.normalize(rng.unnormalize(x)) == pytest.approx(x)


def test_real_gripper_constants_match_the_aloha_stack(contract):
    cal = contract.gripper_calibration("real")
    assert (cal.follower_finger_position_m.open, cal.follower_finger_position_m.close) == (0.0579, 0.0440)
    assert (cal.leader_gripper_joint_rad.open, cal.leader_gripper_joint_rad.close) == (0.8298, -0.0552)
    assert (cal.follower_gripper_joint_rad.open, cal.follower_gripper_joint_rad.close) == (1.6214, 0.6197)


def test_observation_uses_finger_position_and_command_uses_gripper_joint(contract):
    cal = contract.gripper_calibration("real")
    # index 6 (gripper joint angle) deliberately far off: the observation must ignore it
    left = [0.1, -0.9, 1.1, 0.0, -0.3, 0.2, 99.0, 0.0579, -0.0579]
    right = [0.0, -1.0, 1.2, 0.1, -0.2, 0.0, -99.0, 0.0440, -0.0440]
    qpos = qpos_from_follower_positions(contract, [left, right], cal)
    assert qpos.shape == (14,) and qpos[6] == pytest.approx(1.0) and qpos[13] == pytest.approx(0.0)
    np.testing.assert_allclose(qpos[:6], left[:6])
    targets = follower_targets_from_command(contract, qpos, cal)
    assert targets[0][1] == pytest.approx(1.6214) and targets[1][1] == pytest.approx(0.6197)
    np.testing.assert_allclose(targets[1][0], right[:6])
    with pytest.raises(ValueError, match="left follower joint_states: got 8 positions"):
        qpos_from_follower_positions(contract, [left[:8], right], cal)


def test_leader_gripper_joint_maps_to_normalised_action(contract):
    cal = contract.gripper_calibration("real")
    leader = [0.0] * 6 + [0.8298, 0.02, -0.02]
    closed = [0.0] * 6 + [-0.0552, 0.01, -0.01]
    action = leader_command_from_positions(contract, [leader, closed], cal)
    assert action[6] == pytest.approx(1.0) and action[13] == pytest.approx(0.0)


def test_valid_command_passes(contract):
    cmd = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5] * 2)
    np.testing.assert_array_equal(check_joint_command(cmd, contract), cmd)


@pytest.mark.parametrize("mutate, message", [
    (lambda c: c[:13], r"shape \(13,\)"),
    (lambda c: np.r_[c[:3], np.nan, c[4:]], r"NaN/inf for \['left_forearm_roll'\]"),
    (lambda c: np.r_[c[:8], 2.0, c[9:]], "right_shoulder=2.000 rad outside joint limits"),
    (lambda c: np.r_[c[:6], 1.5, c[7:]], "left_gripper=1.500 outside the normalised gripper range"),
    (lambda c: ["a"] * 14, "not numeric"),
])
def test_bad_commands_are_refused_with_the_joint_named(contract, mutate, message):
    cmd = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5] * 2)
    with pytest.raises(InvalidCommand, match=message):
        check_joint_command(mutate(cmd), contract)


@pytest.mark.parametrize("delta", [0.6, -0.6])
def test_jumps_are_refused_in_both_directions(contract, delta):
    current = np.array([0, -0.96, 1.16, 0, -0.3, 0, 0.5] * 2)
    cmd = current.copy()
    cmd[0] += delta  # waist: +-0.6 stays inside the joint limits, so only the jump check can refuse it
    with pytest.raises(InvalidCommand, match="left_waist would jump 0.600 rad"):
        check_joint_command(cmd, contract, current=current)
    cmd[0] = current[0] + delta / 2
    check_joint_command(cmd, contract, current=current)
