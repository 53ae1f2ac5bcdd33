"""The per-robot facts of one physical ALOHA: arm models and serial ports, camera serial numbers, calibration.

Everything every ALOHA shares (topics, joint order, robot names) is in the contract; what a lab edits for
its own robot is in ``config/aloha_robot.yaml`` (shipped next to the contract file, or ``$ALOHA_ROBOT_CONFIG``).
This module checks that file against the contract, so that a typo in an arm or camera name fails at start
with the key and the file named instead of leaving an arm or camera silently unconfigured.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .contract import Contract, ContractError, default_contract_path, load_contract

ROBOT_CONFIG_ENV_VAR = "ALOHA_ROBOT_CONFIG"
ROBOT_CONFIG_FILE_NAME = "aloha_robot.yaml"


@dataclass(frozen=True)
class ArmConfig:
    """One Interbotix arm: its robot name (namespace), role, motor-config model and serial port."""

    robot: str  # e.g. follower_left: the xs_sdk namespace and the prefix of its topics and services
    side: str  # contract arm, e.g. left
    role: str  # "follower" | "leader"
    model: str  # interbotix_xsarm_control/config/<model>.yaml, e.g. aloha_vx300s
    port: str  # e.g. /dev/ttyDXL_follower_left


@dataclass(frozen=True)
class CameraConfig:
    name: str  # contract camera name, e.g. cam_high
    serial_number: str  # "" when not configured yet


@dataclass(frozen=True)
class RobotConfig:
    """Typed view of the robot file. Build it with :func:`load_robot_config`."""

    source: Path
    gripper_calibration: str
    arms: tuple[ArmConfig, ...]
    cameras: tuple[CameraConfig, ...]
    camera_fps: int
    camera_auto_exposure: bool

    @property
    def followers(self) -> list[ArmConfig]:
        return [a for a in self.arms if a.role == "follower"]

    @property
    def leaders(self) -> list[ArmConfig]:
        return [a for a in self.arms if a.role == "leader"]

    def arm(self, robot: str) -> ArmConfig:
        for a in self.arms:
            if a.robot == robot:
                return a
        raise ContractError(f"{self.source}: no arm '{robot}' (known: {[a.robot for a in self.arms]})")

    def unset_camera_serials(self) -> list[str]:
        return [c.name for c in self.cameras if not c.serial_number]


def default_robot_config_path(contract: Contract | None = None) -> Path:
    """``$ALOHA_ROBOT_CONFIG`` if set, else ``aloha_robot.yaml`` next to the contract file."""
    override = os.environ.get(ROBOT_CONFIG_ENV_VAR)
    if override:
        return Path(override)
    contract_path = contract.source if contract is not None else default_contract_path()
    return Path(contract_path).parent / ROBOT_CONFIG_FILE_NAME


def _section(raw: dict[str, Any], key: str, source: Path) -> Any:
    if key not in raw:
        raise ContractError(f"{source}: missing key '{key}' (see the shipped config/{ROBOT_CONFIG_FILE_NAME})")
    return raw[key]


def load_robot_config(path: str | os.PathLike[str] | None = None, contract: Contract | None = None) -> RobotConfig:
    """Read the robot file and check it against the contract; errors name the file and the key."""
    contract = contract if contract is not None else load_contract()
    source = Path(path) if path else default_robot_config_path(contract)
    if not source.is_file():
        raise ContractError(f"robot config file not found: {source} (set {ROBOT_CONFIG_ENV_VAR} or pass a path; "
                            f"the template is config/{ROBOT_CONFIG_FILE_NAME})")
    with source.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a YAML mapping at the top level")

    profile = str(_section(raw, "gripper_calibration", source))
    contract.gripper_calibration(profile)  # raises naming the known profiles

    roles = {"follower": contract.raw["follower_robots"], "leader": contract.raw.get("leader_robots", {})}
    arms_raw = _section(raw, "arms", source) or {}
    expected = {robot: (role, side) for role, by_side in roles.items() for side, robot in by_side.items()}
    missing, unknown = sorted(set(expected) - set(arms_raw)), sorted(set(arms_raw) - set(expected))
    if missing or unknown:
        raise ContractError(f"{source}: arms must be the contract's robots {sorted(expected)}; "
                            f"missing {missing}, unknown {unknown}")
    arms = []
    for robot, (role, side) in expected.items():
        entry = arms_raw[robot] or {}
        for key in ("model", "port"):
            if not entry.get(key):
                raise ContractError(f"{source}: arms.{robot}.{key} is missing or empty")
        arms.append(ArmConfig(robot=robot, side=side, role=role, model=str(entry["model"]), port=str(entry["port"])))

    cams_raw = _section(raw, "cameras", source) or {}
    serials = cams_raw.get("serial_numbers") or {}
    unknown_cams = sorted(set(serials) - set(contract.cameras))
    if unknown_cams:
        raise ContractError(f"{source}: cameras.serial_numbers has {unknown_cams}, not cameras of the contract "
                            f"{contract.cameras}")
    not_text = sorted(name for name, value in serials.items() if value is not None and not isinstance(value, str))
    if not_text:
        # YAML reads 012345 as an octal number: a serial written without quotes can silently change
        raise ContractError(f"{source}: cameras.serial_numbers of {not_text} must be quoted strings, e.g. \"123456789012\"")
    cameras = tuple(CameraConfig(name, serials.get(name) or "") for name in contract.cameras)
    fps = int(cams_raw.get("fps", 30))
    if fps <= 0:
        raise ContractError(f"{source}: cameras.fps={fps} must be positive")
    return RobotConfig(source=source, gripper_calibration=profile, arms=tuple(arms), cameras=cameras,
                       camera_fps=fps, camera_auto_exposure=bool(cams_raw.get("auto_exposure", False)))
