"""The per-robot file (ports, models, camera serials, calibration) and what is generated from it."""

import pytest
import yaml

from aloha_bringup.interbotix_config import realsense_parameters, realsense_remappings, write_mode_configs
from aloha_contract import ContractError, load_contract
from aloha_contract.robot_config import ROBOT_CONFIG_ENV_VAR, load_robot_config


@pytest.fixture(scope="module")
def contract():
    return load_contract()


@pytest.fixture
def robot_file(tmp_path, contract):
    """A copy of the shipped robot file to edit."""
    shipped = load_robot_config(contract=contract).source
    raw = yaml.safe_load(shipped.read_text())
    path = tmp_path / "robot.yaml"

    def write(**changes):
        data = {**raw, **changes}
        path.write_text(yaml.safe_dump(data))
        return path
    return write


def test_shipped_file_names_every_arm_and_camera_of_the_contract(contract):
    robot = load_robot_config(contract=contract)
    assert [a.robot for a in robot.followers] == ["follower_left", "follower_right"]
    assert [a.robot for a in robot.leaders] == ["leader_left", "leader_right"]
    assert robot.arm("follower_left").port == "/dev/ttyDXL_follower_left"
    assert robot.arm("follower_right").side == "right"
    assert [c.name for c in robot.cameras] == contract.cameras
    contract.gripper_calibration(robot.gripper_calibration)


def test_env_var_selects_another_robot_file(robot_file, contract, monkeypatch):
    path = robot_file(gripper_calibration="sim")
    monkeypatch.setenv(ROBOT_CONFIG_ENV_VAR, str(path))
    assert load_robot_config(contract=contract).gripper_calibration == "sim"


def test_mistakes_in_the_robot_file_are_named(robot_file, contract):
    raw = yaml.safe_load(load_robot_config(contract=contract).source.read_text())
    arms = dict(raw["arms"])
    arms["follower_lft"] = arms.pop("follower_left")
    with pytest.raises(ContractError, match=r"missing \['follower_left'\], unknown \['follower_lft'\]"):
        load_robot_config(robot_file(arms=arms), contract)
    with pytest.raises(ContractError, match="arms.follower_left.port is missing"):
        load_robot_config(robot_file(arms={**raw["arms"], "follower_left": {"model": "aloha_vx300s"}}), contract)
    with pytest.raises(ContractError, match="profile 'lab7' not in contract"):
        load_robot_config(robot_file(gripper_calibration="lab7"), contract)
    with pytest.raises(ContractError, match=r"\['cam_low'\], not cameras of the contract"):
        load_robot_config(robot_file(cameras={"serial_numbers": {"cam_low": "1"}}), contract)
    with pytest.raises(ContractError, match=r"\['cam_high'\] must be quoted strings"):
        load_robot_config(robot_file(cameras={"serial_numbers": {"cam_high": 12345}}), contract)
    with pytest.raises(ContractError, match="robot config file not found"):
        load_robot_config(robot_file().parent / "nope.yaml", contract)


def test_mode_configs_carry_each_arms_port(tmp_path, robot_file, contract):
    raw = yaml.safe_load(load_robot_config(contract=contract).source.read_text())
    arms = {**raw["arms"], "follower_left": {"model": "aloha_vx300s", "port": "/dev/ttyUSB7"}}
    robot = load_robot_config(robot_file(arms=arms), contract)
    paths = write_mode_configs(robot, tmp_path / "modes")
    assert sorted(paths) == ["follower_left", "follower_right", "leader_left", "leader_right"]
    follower = yaml.safe_load(paths["follower_left"].read_text())
    assert follower["port"] == "/dev/ttyUSB7"
    assert follower["groups"]["arm"]["operating_mode"] == "position" and follower["groups"]["arm"]["torque_enable"]
    assert follower["singles"]["gripper"]["operating_mode"] == "current_based_position"
    leader = yaml.safe_load(paths["leader_right"].read_text())
    assert leader["port"] == "/dev/ttyDXL_leader_right" and leader["groups"]["arm"]["torque_enable"] is False
    before = paths["follower_left"].stat().st_mtime_ns
    assert write_mode_configs(robot, tmp_path / "modes") == paths
    assert paths["follower_left"].stat().st_mtime_ns == before  # unchanged content is not rewritten


def test_realsense_parameters_and_topics():
    params = realsense_parameters("cam_high", "012345678901", 60, 640, 480, False)
    assert params["serial_no"] == "_012345678901"  # the driver strips '_': keeps the serial a string
    assert params["rgb_camera.color_profile"] == "640x480x60" and params["rgb_camera.color_format"] == "RGB8"
    assert params["camera_name"] == "cam_high" and params["enable_depth"] is False
    assert realsense_parameters("cam_high", "", 60, 640, 480, False)["serial_no"] == ""
    # private names on both sides: the rules hold under any robot namespace; the contract's own name is not
    # remapped onto itself
    assert realsense_remappings(load_contract(), "cam_high") == [("~/color/image_raw", "~/color/image_rect_raw")]
