"""What the simulated leader arms report for a command: the Interbotix layout of the contract, gripper joint on the
leader calibration (no ROS)."""

import numpy as np
import pytest
import yaml

from aloha_contract import load_contract
from aloha_sim.leader_arms import leader_joint_states

# the gripper joint and the observed finger elsewhere than 6 and 7: the layout comes from the contract
MOVED_LAYOUT = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate", "left_finger", "gripper",
                "right_finger"]


def test_leader_states_follow_the_contract_layout(tmp_path):
    raw = yaml.safe_load(load_contract().source.read_text())
    raw["follower_joint_names"] = MOVED_LAYOUT
    path = tmp_path / "contract.yaml"
    path.write_text(yaml.safe_dump(raw))
    contract = load_contract(path)
    cal = contract.gripper_calibration("sim")
    left, right = [0.1, -0.9, 1.1, 0.0, -0.3, 0.2], [-0.1, -0.8, 1.0, 0.1, -0.2, -0.2]
    states = leader_joint_states(contract, [*left, 1.0, *right, 0.0], cal)
    assert {arm: s.robot for arm, s in states.items()} == {"left": "leader_left", "right": "leader_right"}
    pos = states["left"].position
    assert states["left"].names == MOVED_LAYOUT
    np.testing.assert_allclose(pos[:6], left)
    assert pos[MOVED_LAYOUT.index("gripper")] == pytest.approx(cal.leader_gripper_joint_rad.open)
    assert pos[MOVED_LAYOUT.index("left_finger")] == pytest.approx(-pos[MOVED_LAYOUT.index("right_finger")])
    assert states["right"].position[MOVED_LAYOUT.index("gripper")] == pytest.approx(cal.leader_gripper_joint_rad.close)


def test_a_command_of_the_wrong_length_is_refused():
    contract = load_contract()
    with pytest.raises(ValueError, match=r"expected \(14,\)"):
        leader_joint_states(contract, np.zeros(7), contract.gripper_calibration("sim"))
