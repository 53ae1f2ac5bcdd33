"""Arm IK: reaches FK poses exactly and keeps the natural (unflipped) wrist."""

import numpy as np
import pytest

from aloha_contract import load_contract
from aloha_sim.kinematics import ArmKinematics
from aloha_sim.scene import load_model

START_ARM_JOINTS_RAD = load_contract().start_arm_joints_rad

JOINTS = ["waist", "shoulder", "elbow", "forearm_roll", "wrist_angle", "wrist_rotate"]


@pytest.mark.parametrize("arm", ["left", "right"])
def test_ik_reaches_forward_kinematics_poses(arm):
    kin = ArmKinematics(load_model("bimanual_viperx_transfer_cube.xml"), arm, JOINTS)
    rng = np.random.default_rng(0)
    for _ in range(20):
        q_true = np.array(START_ARM_JOINTS_RAD) + rng.uniform(-0.5, 0.5, 6)
        q_true[4] = rng.uniform(0.3, 1.2)  # wrist clearly bent
        pos, quat = kin.tool_pose(q_true)
        q, residual = kin.solve(pos, quat, START_ARM_JOINTS_RAD)
        assert residual < 1e-5
        reached_pos, reached_quat = kin.tool_pose(q)
        assert np.allclose(reached_pos, pos, atol=1e-5)
        assert abs(abs(float(np.dot(reached_quat, quat))) - 1.0) < 1e-8
        assert abs(q[3]) <= np.pi / 2  # forearm not flipped over


def test_ik_keeps_rolls_at_zero_for_poses_along_the_arm():
    kin = ArmKinematics(load_model("bimanual_viperx_transfer_cube.xml"), "right", JOINTS)
    q = np.array(START_ARM_JOINTS_RAD)
    for pitch in np.linspace(-0.1, 1.2, 30):  # the wrist passes through straight on the way
        q_true = np.array([0.2, -0.5, 0.9, 0.0, pitch, 0.0])
        q, _ = kin.solve(*kin.tool_pose(q_true), q)
        assert np.allclose(q, q_true, atol=1e-4)
