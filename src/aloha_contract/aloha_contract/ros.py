"""ROS helpers built on the contract: QoS profiles and message <-> numpy conversions.

Only nodes import this module (it needs rclpy); everything else uses the plain contract.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from builtin_interfaces.msg import Time
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, JointState

from .contract import Contract

_RELIABILITY = {"reliable": ReliabilityPolicy.RELIABLE, "best_effort": ReliabilityPolicy.BEST_EFFORT}
_HISTORY = {"keep_last": HistoryPolicy.KEEP_LAST, "keep_all": HistoryPolicy.KEEP_ALL}
_DURABILITY = {"volatile": DurabilityPolicy.VOLATILE, "transient_local": DurabilityPolicy.TRANSIENT_LOCAL}


class MessageError(ValueError):
    """A message that does not match the contract (wrong size, encoding, names, NaN)."""


def qos_profile(contract: Contract, stream: str) -> QoSProfile:
    """The QoS the contract chose for ``stream`` (images, joint_states, joint_commands, ...)."""
    spec = contract.qos(stream)
    return QoSProfile(
        reliability=_RELIABILITY[spec.get("reliability", "reliable")],
        history=_HISTORY[spec.get("history", "keep_last")],
        depth=int(spec.get("depth", 10)),
        durability=_DURABILITY[spec.get("durability", "volatile")],
    )


def time_msg(seconds: float) -> Time:
    """Seconds (e.g. simulation time) -> builtin_interfaces/Time."""
    sec = int(seconds)
    return Time(sec=sec, nanosec=int(round((seconds - sec) * 1e9)))


def image_to_rgb(msg: Image, camera: str, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """rgb8 Image -> (H, W, 3) uint8 view of the message data (no cv_bridge needed)."""
    if msg.encoding not in ("rgb8", "bgr8"):
        raise MessageError(f"{camera}: got encoding '{msg.encoding}', expected rgb8 (set the camera driver's "
                           f"color format to RGB8)")
    h, w = int(msg.height), int(msg.width)
    if expected_hw is not None and (h, w) != tuple(expected_hw):
        raise MessageError(f"{camera}: got {h}x{w} {msg.encoding}, expected {expected_hw[0]}x{expected_hw[1]} "
                           f"rgb8 (check the camera config)")
    if msg.step != w * 3 or len(msg.data) != h * w * 3:
        raise MessageError(f"{camera}: data holds {len(msg.data)} bytes with step {msg.step}, expected "
                           f"{h * w * 3} bytes for {h}x{w}x3 (malformed image message)")
    rgb = np.frombuffer(msg.data, dtype=np.uint8).reshape(h, w, 3)
    return rgb[..., ::-1] if msg.encoding == "bgr8" else rgb


def rgb_to_image(rgb: np.ndarray, stamp, frame_id: str) -> Image:
    """(H, W, 3) uint8 -> rgb8 Image."""
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = "rgb8"
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb, dtype=np.uint8).tobytes()
    return msg


def joint_state_to_vector(msg: JointState, names: Sequence[str], what: str = "joint_states") -> np.ndarray:
    """Positions of ``names`` (in that order) from a JointState matched by name; refuses NaN or gaps."""
    if len(msg.name) != len(msg.position):
        raise MessageError(f"{what}: {len(msg.name)} names but {len(msg.position)} positions (malformed message)")
    index = {n: i for i, n in enumerate(msg.name)}
    missing = [n for n in names if n not in index]
    if missing:
        raise MessageError(f"{what}: joints {missing} missing (got {list(msg.name)}); publish the contract's "
                           f"joint names")
    vec = np.array([msg.position[index[n]] for n in names], dtype=np.float64)
    bad = [n for n, v in zip(names, vec) if not np.isfinite(v)]
    if bad:
        raise MessageError(f"{what}: NaN/inf positions for {bad}")
    return vec


def vector_to_joint_state(vec: Sequence[float], names: Sequence[str], stamp,
                          velocity: Sequence[float] | None = None,
                          effort: Sequence[float] | None = None) -> JointState:
    msg = JointState()
    msg.header.stamp = stamp
    msg.name = list(names)
    msg.position = [float(v) for v in vec]
    if velocity is not None:
        msg.velocity = [float(v) for v in velocity]
    if effort is not None:
        msg.effort = [float(v) for v in effort]
    return msg
