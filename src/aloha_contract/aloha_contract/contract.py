"""The ALOHA robot contract: topics, joint order, rates, QoS and gripper calibration.

Every node reads the contract from one YAML file (``config/aloha_contract.yaml``, shipped inside
this package) so that the real driver, the simulators, the policy and the recorder cannot disagree.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

CONTRACT_ENV_VAR = "ALOHA_CONTRACT"
ACTION_DIM = 14
# command spaces: joint targets (ALOHA) or end-effector deltas (LIBERO, RoboCasa: config/libero_contract.yaml)
JOINT_POSITION, DELTA_EEF = "joint_position", "delta_eef"


class ContractError(ValueError):
    """The contract file is missing a key or holds an inconsistent value."""


@dataclass(frozen=True)
class GripperRange:
    """Calibration of one gripper quantity: the raw values meaning fully open and fully closed."""

    open: float
    close: float

    def normalize(self, raw: float) -> float:
        """Raw value -> [0, 1] (0 closed, 1 open); not clipped so that faults stay visible."""
        return (raw - self.close) / (self.open - self.close)

    def unnormalize(self, normalized: float) -> float:
        """[0, 1] -> raw value."""
        return self.close + normalized * (self.open - self.close)


@dataclass(frozen=True)
class GripperCalibration:
    follower_finger_position_m: GripperRange
    leader_gripper_joint_rad: GripperRange
    follower_gripper_joint_rad: GripperRange


@dataclass(frozen=True)
class Contract:
    """Typed view of the contract file. Build it with :func:`load_contract`."""

    raw: dict[str, Any]
    source: Path

    @property
    def robot(self) -> str:
        return str(self.raw["robot"])

    @property
    def command_space(self) -> str:
        """``joint_position`` (ALOHA: 14 joint targets) or ``delta_eef`` (LIBERO/RoboCasa: 7-D end-effector deltas)."""
        return str(self.raw.get("command_space", JOINT_POSITION))

    @property
    def state_names(self) -> list[str]:
        """Names of the measured state vector on ``joint_states`` (ALOHA: the 14 joint names)."""
        if "state_names" in self.raw:
            return [str(n) for n in self.raw["state_names"]]
        return self.joint_names

    @property
    def control_rate_hz(self) -> float:
        return float(self.raw["control"]["rate_hz"])

    @property
    def control_period_s(self) -> float:
        return 1.0 / self.control_rate_hz

    @property
    def chunk_steps(self) -> int:
        return int(self.raw["control"]["chunk_steps"])

    @property
    def arms(self) -> list[str]:
        return list(self.raw["arms"])

    @property
    def arm_joints(self) -> list[str]:
        return list(self.raw["arm_joints"])

    @property
    def follower_joint_names(self) -> list[str]:
        return list(self.raw["follower_joint_names"])

    @cached_property
    def follower_arm_indices(self) -> list[int]:
        """Indices of the six arm joints (``arm_joints`` order) in a follower's joint_states."""
        return [self._follower_index(j, "arm_joints") for j in self.arm_joints]

    @cached_property
    def follower_gripper_index(self) -> int:
        """Index of the gripper *joint* (rad) in a follower's joint_states: where commands are executed."""
        return self._follower_index(self.raw["gripper_joint"], "gripper_joint")

    @cached_property
    def follower_finger_index(self) -> int:
        """Index of the finger's linear position (m) in a follower's joint_states: the observed gripper."""
        return self._follower_index(self.raw["follower_finger_joint"], "follower_finger_joint")

    def _follower_index(self, joint: str, key: str) -> int:
        try:
            return self.follower_joint_names.index(str(joint))
        except ValueError:
            raise ContractError(f"{self.source}: {key} '{joint}' is not in follower_joint_names "
                                f"{self.follower_joint_names}") from None

    @cached_property
    def start_arm_joints_rad(self) -> tuple[float, ...]:
        """ALOHA's start pose of the six arm joints (rad), in ``arm_joints`` order, the same for both arms."""
        pose = self.raw["start_pose"]["arm_joints_rad"]
        missing = [j for j in self.arm_joints if j not in pose]
        if missing:
            raise ContractError(f"{self.source}: start_pose.arm_joints_rad lacks {missing} (one value per arm joint)")
        return tuple(float(pose[j]) for j in self.arm_joints)

    @property
    def start_sim_finger_position_m(self) -> float:
        """The simulated fingers' opening (m) in the start pose."""
        return float(self.raw["start_pose"]["sim_finger_position_m"])

    @cached_property
    def joint_names(self) -> list[str]:
        """The names of the command vector: ALOHA's 14 (``left_waist`` ... ``right_gripper``), or an end-effector
        contract's ``command_names``."""
        if "command_names" in self.raw:
            return [str(n) for n in self.raw["command_names"]]
        gripper = self.raw["gripper_joint"]
        return [f"{arm}_{joint}" for arm in self.arms for joint in [*self.arm_joints, gripper]]

    @cached_property
    def gripper_indices(self) -> list[int]:
        if "gripper_command_indices" in self.raw:
            return [int(i) for i in self.raw["gripper_command_indices"]]
        per_arm = len(self.arm_joints) + 1
        return [i * per_arm + len(self.arm_joints) for i in range(len(self.arms))]

    @cached_property
    def joint_limits_rad(self) -> list[tuple[float, float]]:
        """Per arm joint (6 names), the (low, high) limit in radians."""
        limits = self.raw["joint_limits_rad"]
        return [(float(limits[j][0]), float(limits[j][1])) for j in self.arm_joints]

    @property
    def joint_margin_rad(self) -> float:
        return float(self.raw["command_limits"]["joint_margin_rad"])

    @property
    def gripper_command_range(self) -> tuple[float, float]:
        lo, hi = self.raw["command_limits"]["gripper_range"]
        return float(lo), float(hi)

    @property
    def max_joint_step_rad(self) -> float:
        return float(self.raw["command_limits"]["max_joint_step_rad"])

    @property
    def cameras(self) -> list[str]:
        return list(self.raw["cameras"]["names"])

    @property
    def image_height(self) -> int:
        return int(self.raw["cameras"]["height"])

    @property
    def image_width(self) -> int:
        return int(self.raw["cameras"]["width"])

    @property
    def image_encoding(self) -> str:
        return str(self.raw["cameras"]["encoding"])

    def camera_frame_id(self, camera: str) -> str:
        return str(self.raw["cameras"]["frame_ids"].get(camera, f"{camera}_color_optical_frame"))

    def topic(self, key: str, **fields: str) -> str:
        """A topic name from the contract, e.g. ``topic('camera_image', camera='cam_high')``."""
        try:
            template = self.raw["topics"][key]
        except KeyError:
            raise ContractError(
                f"topic '{key}' is not in the contract {self.source} "
                f"(known: {sorted(self.raw['topics'])})") from None
        return str(template).format(**fields)

    def qualified_topic(self, key: str, namespace: str = "/", **fields: str) -> str:
        """``topic(key)`` resolved in ``namespace`` (see :func:`fully_qualified`)."""
        return fully_qualified(self.topic(key, **fields), namespace)

    def camera_topic(self, camera: str) -> str:
        return self.topic("camera_image", camera=camera)

    def follower_robot(self, arm: str) -> str:
        return str(self.raw["follower_robots"][arm])

    def follower_joint_states_topic(self, arm: str) -> str:
        return self.topic("follower_joint_states", arm_robot=self.follower_robot(arm))

    def service(self, key: str) -> str:
        return str(self.raw["services"][key])

    def action(self, key: str) -> str:
        return str(self.raw["actions"][key])

    def qos(self, key: str) -> dict[str, Any]:
        """QoS choices for a stream (reliability, history, depth, durability) as plain data."""
        return dict(self.raw["qos"][key])

    def gripper_calibration(self, profile: str) -> GripperCalibration:
        """Calibration profile ``real`` (hardware) or ``sim`` (MuJoCo fingers)."""
        try:
            cal = self.raw["gripper_calibration"][profile]
        except KeyError:
            known = sorted(self.raw["gripper_calibration"])
            raise ContractError(f"gripper calibration profile '{profile}' not in contract (known: {known})") from None
        return GripperCalibration(
            **{name: GripperRange(float(v["open"]), float(v["close"])) for name, v in cal.items()})


# an end-effector contract (LIBERO, RoboCasa) has no arms, joints or gripper calibration: it names its vectors
_REQUIRED_KEYS_DELTA_EEF = ("robot", "control", "state_names", "command_names", "command_limits", "safety", "topics",
                            "services", "actions", "cameras", "qos")
_REQUIRED_KEYS = ("robot", "control", "arms", "arm_joints", "gripper_joint", "follower_joint_names",
                  "follower_finger_joint", "start_pose", "joint_limits_rad", "command_limits", "topics",
                  "services", "actions", "cameras", "qos", "gripper_calibration", "follower_robots")


def fully_qualified(name: str, namespace: str = "/") -> str:
    """A contract name as a node in ``namespace`` resolves it, e.g. ``/robot_a/aloha/joint_states``.

    For code that has no node to resolve names with: bag files, which store fully qualified topic names, and
    messages. Absolute names (``/diagnostics``) stay as they are.
    """
    if name.startswith("/"):
        return name
    if name.startswith("~") or not name:
        raise ContractError(f"'{name}' is not a topic name a namespace applies to (expected e.g. aloha/joint_states)")
    parts = [p for p in namespace.split("/") if p]
    return "/" + "/".join([*parts, name])


def default_contract_path() -> Path:
    """``$ALOHA_CONTRACT`` if set, else the contract file shipped with this package."""
    override = os.environ.get(CONTRACT_ENV_VAR)
    if override:
        return Path(override)
    return Path(str(resources.files("aloha_contract").joinpath("aloha_contract.yaml")))


def load_contract(path: str | os.PathLike[str] | None = None) -> Contract:
    """Read and check the contract; errors name the file and the missing or wrong key."""
    source = Path(path) if path else default_contract_path()
    if not source.is_file():
        raise ContractError(f"robot contract file not found: {source} (set {CONTRACT_ENV_VAR} or pass a path)")
    with source.open() as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise ContractError(f"{source}: expected a YAML mapping at the top level")
    space = str(raw.get("command_space", JOINT_POSITION))
    if space not in (JOINT_POSITION, DELTA_EEF):
        raise ContractError(f"{source}: command_space '{space}' unknown (expected {JOINT_POSITION} or {DELTA_EEF})")
    required = _REQUIRED_KEYS if space == JOINT_POSITION else _REQUIRED_KEYS_DELTA_EEF
    missing = [k for k in required if k not in raw]
    if missing:
        raise ContractError(f"{source}: missing keys {missing}")
    contract = Contract(raw=raw, source=source)
    if space == DELTA_EEF:
        return _check_delta_eef(contract)
    if len(contract.joint_names) != ACTION_DIM:
        raise ContractError(f"{source}: arms x (arm_joints + gripper) gives {len(contract.joint_names)} "
                            f"joints, the ACT convention needs {ACTION_DIM}")
    if not math.isfinite(contract.control_rate_hz) or contract.control_rate_hz <= 0:
        raise ContractError(f"{source}: control.rate_hz must be a positive number")
    # fail at load, naming the key, rather than in the first node that needs them
    _ = (contract.follower_arm_indices, contract.follower_gripper_index, contract.follower_finger_index,
         contract.start_arm_joints_rad)
    return contract


def _check_delta_eef(contract: Contract) -> Contract:
    """An end-effector contract: command limits and hold command sized like the command vector."""
    n = len(contract.joint_names)
    limits = contract.raw["command_limits"]
    for key in ("low", "high", "hold"):
        if len(limits.get(key, ())) != n:
            raise ContractError(f"{contract.source}: command_limits.{key} needs {n} values, one per command_names "
                                f"entry {contract.joint_names}")
    bad = [i for i in contract.gripper_indices if not 0 <= i < n]
    if bad:
        raise ContractError(f"{contract.source}: gripper_command_indices {bad} outside the {n} commands")
    if not math.isfinite(contract.control_rate_hz) or contract.control_rate_hz <= 0:
        raise ContractError(f"{contract.source}: control.rate_hz must be a positive number")
    return contract
