"""The LIBERO and RoboCasa contracts, written once like ALOHA's, and the end-effector safety gate. Plain tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from aloha_contract import ContractError, load_contract
from aloha_contract.eef_gate import EndEffectorGate
from cosmos_policy.config import load_layout
from cosmos_policy.deploy import default_deploy

ROOT = Path(__file__).resolve().parents[1]
LIBERO = ROOT / "config" / "libero_contract.yaml"
ROBOCASA = ROOT / "config" / "robocasa_contract.yaml"


@pytest.mark.parametrize("path, layout_name", [(LIBERO, "libero"), (ROBOCASA, "robocasa")])
def test_contract_matches_its_layout(path, layout_name):
    c = load_contract(path)
    layout = load_layout(layout_name)
    assert c.command_space == "delta_eef"
    assert len(c.state_names) == layout.proprio_dim == 9
    assert len(c.joint_names) == layout.action_dim == 7
    assert sorted(c.cameras) == sorted(layout.cameras)
    assert c.control_rate_hz == default_deploy(layout).control_hz == 20.0
    assert c.chunk_steps == default_deploy(layout).execute_steps == 16
    prefix = "libero/" if layout_name == "libero" else "robocasa/"
    for key in ("joint_states", "joint_commands", "stage_score", "policy_run"):
        assert c.topic(key).startswith(prefix), key
    assert c.service("reset_episode").startswith(prefix) and c.action("run_policy").startswith(prefix)
    assert set(c.raw["cameras"]["sources"]) == set(c.cameras)


def test_libero_state_order_is_the_releases_proprio():
    c = load_contract(LIBERO)
    assert c.state_names[:2] == ["gripper_qpos_0", "gripper_qpos_1"]
    assert c.state_names[2:5] == ["eef_pos_x", "eef_pos_y", "eef_pos_z"]
    assert c.state_names[5:] == ["eef_quat_x", "eef_quat_y", "eef_quat_z", "eef_quat_w"]
    assert c.gripper_indices == [6] and c.joint_names[6] == "gripper"


def test_aloha_contract_is_unchanged_by_the_end_effector_keys():
    c = load_contract()
    assert c.command_space == "joint_position"
    assert c.state_names == c.joint_names and len(c.joint_names) == 14
    assert c.gripper_indices == [6, 13]


def test_package_ships_links_to_the_config_files():
    for name in ("libero_contract.yaml", "robocasa_contract.yaml"):
        link = ROOT / "src" / "libero_sim" / "libero_sim" / name
        assert link.is_symlink() and link.resolve() == (ROOT / "config" / name).resolve()


def _write(tmp_path, **changes) -> Path:
    raw = yaml.safe_load(LIBERO.read_text())
    for key, value in changes.items():
        section, _, sub = key.partition("__")
        if sub:
            raw[section][sub] = value
        else:
            raw[section] = value
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_broken_end_effector_contracts_name_the_key(tmp_path):
    with pytest.raises(ContractError, match="command_limits.hold needs 7 values"):
        load_contract(_write(tmp_path, command_limits__hold=[0.0] * 6))
    with pytest.raises(ContractError, match="command_space 'torque' unknown"):
        load_contract(_write(tmp_path, command_space="torque"))
    with pytest.raises(ContractError, match="gripper_command_indices"):
        load_contract(_write(tmp_path, gripper_command_indices=[7]))


def test_gate_passes_clips_and_refuses():
    gate = EndEffectorGate(load_contract(LIBERO))
    gate.reset()
    np.testing.assert_array_equal(gate.last_safe_target, [0, 0, 0, 0, 0, 0, -1])
    assert gate.check([0.2, -0.1, 0.0, 0.0, 0.0, 0.3, 1.0]) is None
    # holding after a command keeps its gripper, never its motion
    np.testing.assert_array_equal(gate.last_safe_target, [0, 0, 0, 0, 0, 0, 1.0])
    assert gate.check([1.03, 0, 0, 0, 0, 0, 1.0]) is None  # within the margin: passes, sent clipped
    np.testing.assert_array_equal(gate.safe_command([1.03, 0, 0, 0, 0, 0, 1.0]), [1.0, 0, 0, 0, 0, 0, 1.0])
    violation = gate.check([0, 0, 1.5, 0, 0, 0, 1.0])
    assert violation is not None and "delta_z 1.500 outside [-1, 1]" in violation.detail
    assert "NaN" in gate.check([0, np.nan, 0, 0, 0, 0, 0]).detail
    assert "7" in gate.check([0.0] * 14).detail
    np.testing.assert_array_equal(gate.last_safe_target, [0, 0, 0, 0, 0, 0, 1.0])  # refusals leave the hold as it was
