"""Synthetic contract streams written into bags the way ``rollout_recorder record`` writes them (no ROS).

Messages are built with rosbags (whose CDR bytes match rclpy's) and passed as serialised bytes through
``bags.BagRecording.add``, the function the record node's writer thread calls for every received message.
"""

from __future__ import annotations

import numpy as np

from aloha_contract import fully_qualified
from rollout_recorder.bags import BagRecording, record_topics

T0_NS = 1_700_000_000_000_000_000  # header stamps of the first tick (epoch ns, as a live robot stamps)
PERIOD_NS = 20_000_000


def frame(t: int, cam_index: int, hw: tuple[int, int]) -> np.ndarray:
    """A smooth, tick- and camera-dependent RGB frame (JPEG keeps it close)."""
    h, w = hw
    y, x = np.mgrid[0:h, 0:w]
    base = np.clip(20 + x * 120 // max(w - 1, 1) + y * 40 // max(h - 1, 1) + (3 * t) % 40 + 20 * cam_index, 0, 255)
    return np.stack([base, 255 - base, base // 2 + 64], axis=-1).astype(np.uint8)


def qpos(t: int) -> np.ndarray:
    return np.linspace(-0.5, 0.5, 14) + 0.001 * t


def msgs(typestore):
    t = typestore.types
    return (t["builtin_interfaces/msg/Time"], t["std_msgs/msg/Header"], t["sensor_msgs/msg/JointState"],
            t["sensor_msgs/msg/Image"])


def header(typestore, stamp_ns: int, frame_id: str = ""):
    time_cls, header_cls, _, _ = msgs(typestore)
    return header_cls(stamp=time_cls(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9), frame_id=frame_id)


def joint_state(typestore, stamp_ns: int, names, position, velocity=None, effort=None):
    _, _, js, _ = msgs(typestore)
    empty = np.zeros(0, np.float64)
    return js(header=header(typestore, stamp_ns), name=list(names), position=np.asarray(position, np.float64),
              velocity=empty if velocity is None else np.asarray(velocity, np.float64),
              effort=empty if effort is None else np.asarray(effort, np.float64))


def image(typestore, stamp_ns: int, rgb: np.ndarray, frame_id: str = "", encoding: str = "rgb8"):
    _, _, _, img = msgs(typestore)
    data = rgb[..., ::-1] if encoding == "bgr8" else rgb
    return img(header=header(typestore, stamp_ns, frame_id), height=rgb.shape[0], width=rgb.shape[1],
               encoding=encoding, is_bigendian=0, step=rgb.shape[1] * 3,
               data=np.ascontiguousarray(data).reshape(-1))


def record_contract_bag(path, contract, steps: int, hw=(24, 32), *, compress: bool = False,
                        drop: tuple[str, int] | None = None, gap_after: int | None = None, gap_ns: int = 5 * 10**9,
                        stage_at: int | None = None, value_at: int | None = None, reverse_names: bool = True):
    """A bag of ``steps`` control ticks: joint states (names in reverse order unless told otherwise), commands
    (qpos + 0.01, stamped with the state), three cameras, and optionally a stage score and a policy value.

    Returns the BagRecording (closed) and the typestore.
    """
    topics = {t.name: t for t in record_topics(contract, compress_images=compress)}
    rec = BagRecording(path, list(topics.values()))
    ts = rec.writer.typestore
    names = contract.joint_names
    order = list(reversed(range(14))) if reverse_names else list(range(14))

    def put(topic_name, msg, received_ns):
        topic = topics[fully_qualified(topic_name)]  # a bag stores fully qualified names
        rec.add(topic, received_ns, bytes(ts.serialize_cdr(msg, topic.msgtype)))

    offset = 0
    for t in range(steps):
        if gap_after is not None and t == gap_after:
            offset = gap_ns
        stamp = T0_NS + offset + t * PERIOD_NS
        q = qpos(t)
        put(contract.topic("joint_states"),
            joint_state(ts, stamp, [names[i] for i in order], q[order], velocity=-q[order], effort=2 * q[order]),
            stamp + 300_000)
        for c, cam in enumerate(contract.cameras):
            if drop != (cam, t):
                put(contract.camera_topic(cam), image(ts, stamp + 1_000_000, frame(t, c, hw), cam), stamp + 2_000_000)
        put(contract.topic("joint_commands"), joint_state(ts, stamp, names, q + 0.01), stamp + 3_000_000)
        if stage_at == t:
            msg = ts.types["aloha_interfaces/msg/StageScore"](
                header=header(ts, stamp), task="transfer_cube", episode_step=t, score=50.0, stage="lifted",
                stages_reached=["touched", "lifted"], success=False, source="sim")
            put(contract.topic("stage_score"), msg, stamp + 4_000_000)
        if value_at == t:
            put(contract.topic("policy_value"), ts.types["std_msgs/msg/Float32"](data=0.75), stamp + 4_000_000)
    rec.close()
    return rec, ts
