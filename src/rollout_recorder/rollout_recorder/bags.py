"""rosbag2 MCAP bags of the robot contract's topics, and bag -> ACT HDF5 episodes. Plain Python (rosbags, no rclpy).

- :func:`record_topics` says which contract topics ``rollout_recorder record`` subscribes to, with their types
  and QoS; :class:`BagWriter` writes serialised (CDR) messages into a rosbag2 folder (``metadata.yaml`` +
  one ``.mcap`` file, metadata version 8, which Humble, Jazzy and Kilted ``ros2 bag`` read) whose MCAP
  schemas carry full ``ros2msg`` definitions (what Foxglove decodes); :class:`ImageCompressor` turns an Image
  into a JPEG ``sensor_msgs/CompressedImage`` for the ``<camera topic>/compressed`` topic.
- :func:`bag_to_episodes` reads any rosbag2 bag (MCAP or SQLite3, ours or another writer's: types come from
  the definitions the bag carries) and writes ACT episodes through ``episode_file.EpisodeWriter``, one row per
  joint state synchronised by ``sync.TickSynchronizer`` exactly as the recorder node does it live.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.interfaces import Connection, Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys.store import Typestore

from .episode_file import EpisodeWriter
from .sync import TickRow, TickSynchronizer, low_rate_cameras
from .typestore import make_typestore

JOINT_STATE = "sensor_msgs/msg/JointState"
IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
CLOCK = "rosgraph_msgs/msg/Clock"
COMPRESSED_SUFFIX = "/compressed"  # image_transport's name for a JPEG/PNG stream of an image topic
COMPRESSED_FORMAT = "rgb8; jpeg compressed bgr8"  # image_transport's format string for a JPEG of an rgb8 image
BAG_VERSION = 8  # rosbag2 metadata version 8: offered QoS as a YAML string, readable by Humble through Kilted
BAG_JPEG_QUALITY = 90  # a bag is the source of training data: keep more than the episode files' 50

# The contract's topics (keys of its `topics:`) that a bag records, with their message types: the contract
# file names each type only in a comment, so this is where they are written down as data.
CONTRACT_TOPIC_TYPES: dict[str, str] = {
    "joint_states": JOINT_STATE,
    "joint_commands": JOINT_STATE,
    "stage_score": "aloha_interfaces/msg/StageScore",
    "policy_value": "std_msgs/msg/Float32",
    "policy_chunk": "std_msgs/msg/Float32MultiArray",
    "policy_run": "std_msgs/msg/String",
    "diagnostics": "diagnostic_msgs/msg/DiagnosticArray",
}
RECORD_DEPTH = 10  # a recorder must see every message: at least this deep whatever the stream's contract depth


class BagError(ValueError):
    """A bag that cannot be written or converted; the message names the bag, topic and what to do."""


# ---- what `record` subscribes to ----

@dataclass(frozen=True)
class BagTopic:
    """One subscribed topic and how it lands in the bag.

    Args:
        name: topic subscribed to.
        msgtype: its type, e.g. ``sensor_msgs/msg/Image``.
        qos: the contract's QoS of the stream (reliability, history, depth, durability), or ``{}``: reliable
            keep-last ``RECORD_DEPTH``.
        compress: an Image stored as a JPEG CompressedImage on ``name + '/compressed'``.
    """

    name: str
    msgtype: str
    qos: dict = field(default_factory=dict, hash=False, compare=False)
    compress: bool = False

    @property
    def bag_name(self) -> str:
        return self.name + COMPRESSED_SUFFIX if self.compress else self.name

    @property
    def bag_msgtype(self) -> str:
        return COMPRESSED_IMAGE if self.compress else self.msgtype

    @property
    def subscribe_qos(self) -> dict:
        """The stream's QoS, made deep enough that a recorder keeps up."""
        return {**self.qos, "depth": max(int(self.qos.get("depth", RECORD_DEPTH)), RECORD_DEPTH)}


def record_topics(contract, *, compress_images: bool = False, cameras: Sequence[str] | None = None,
                  predicted_images: bool = True, namespace: str = "/") -> list[BagTopic]:
    """The contract topics a bag records: joint states and commands, each camera, the stage score, the policy
    node's value/chunk/run (and predicted images) and diagnostics. ``/clock`` is left out: replay makes its own.
    Names are fully qualified in the robot's ``namespace``, as a bag stores them."""

    def qos(key: str) -> dict:
        return dict(contract.raw.get("qos", {}).get(key, {}))

    topics = [BagTopic(contract.qualified_topic(key, namespace), msgtype, qos(key))
              for key, msgtype in CONTRACT_TOPIC_TYPES.items() if key in contract.raw["topics"]]
    cams = list(cameras) if cameras is not None else contract.cameras
    topics += [BagTopic(contract.qualified_topic("camera_image", namespace, camera=cam), IMAGE, qos("images"),
                        compress_images) for cam in cams]
    if predicted_images and "policy_predicted_image" in contract.raw["topics"]:
        topics += [BagTopic(contract.qualified_topic("policy_predicted_image", namespace, camera=cam), IMAGE, {},
                            compress_images) for cam in cams]
    return topics


_RELIABILITY = {"reliable": QosReliability.RELIABLE, "best_effort": QosReliability.BEST_EFFORT}
_HISTORY = {"keep_last": QosHistory.KEEP_LAST, "keep_all": QosHistory.KEEP_ALL}
_DURABILITY = {"volatile": QosDurability.VOLATILE, "transient_local": QosDurability.TRANSIENT_LOCAL}
_UNSET = QosTime(0, 0)  # rmw's "unspecified": the middleware default (infinite deadline, lifespan, lease)


def offered_qos(spec: Mapping[str, Any]) -> Qos:
    """A contract QoS dict as the rosbags QoS stored with a topic (``ros2 bag play`` offers it again)."""
    return Qos(history=_HISTORY[spec.get("history", "keep_last")], depth=int(spec.get("depth", RECORD_DEPTH)),
               reliability=_RELIABILITY[spec.get("reliability", "reliable")],
               durability=_DURABILITY[spec.get("durability", "volatile")], deadline=_UNSET, lifespan=_UNSET,
               liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_UNSET,
               avoid_ros_namespace_conventions=False)


def qos_spec(qos: Qos) -> dict:
    """A stored rosbags QoS back as a contract-style dict (reliability, history, depth, durability)."""
    return {"reliability": "best_effort" if qos.reliability == QosReliability.BEST_EFFORT else "reliable",
            "history": "keep_all" if qos.history == QosHistory.KEEP_ALL else "keep_last",
            "depth": max(1, int(qos.depth)),
            "durability": "transient_local" if qos.durability == QosDurability.TRANSIENT_LOCAL else "volatile"}


# ---- images ----

_CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1, "8UC1": 1, "8UC3": 3}


def image_to_rgb(msg: Any, what: str) -> np.ndarray:
    """A deserialised sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8) -> (H, W, 3) uint8 RGB."""
    channels = _CHANNELS.get(msg.encoding)
    if channels is None:
        raise BagError(f"{what}: encoding '{msg.encoding}' not supported (expected one of {sorted(_CHANNELS)})")
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    data = np.asarray(msg.data, dtype=np.uint8)
    if step < w * channels or data.size < h * step:
        raise BagError(f"{what}: {data.size} bytes with step {step}, expected {h}x{w}x{channels} "
                       f"(malformed image message)")
    pixels = data[:h * step].reshape(h, step)[:, :w * channels].reshape(h, w, channels)
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    rgb = pixels[..., :3]
    return np.ascontiguousarray(rgb[..., ::-1] if msg.encoding.startswith("bgr") else rgb)


def compressed_to_rgb(msg: Any, what: str) -> np.ndarray:
    """A deserialised sensor_msgs/CompressedImage (JPEG or PNG) -> (H, W, 3) uint8 RGB."""
    import cv2

    bgr = cv2.imdecode(np.asarray(msg.data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise BagError(f"{what}: compressed image (format '{msg.format}') does not decode")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


class ImageCompressor:
    """Serialised sensor_msgs/Image -> serialised JPEG sensor_msgs/CompressedImage with the same header."""

    def __init__(self, typestore: Typestore, quality: int = BAG_JPEG_QUALITY):
        if not 1 <= int(quality) <= 100:
            raise BagError(f"JPEG quality {quality}: expected 1..100")
        self.typestore = typestore
        self.quality = int(quality)
        self._compressed = typestore.types[COMPRESSED_IMAGE]

    def __call__(self, raw: bytes, what: str = "image") -> bytes:
        import cv2

        msg = self.typestore.deserialize_cdr(raw, IMAGE)
        bgr = cv2.cvtColor(image_to_rgb(msg, what), cv2.COLOR_RGB2BGR)
        ok, jpeg = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            raise BagError(f"{what}: JPEG encoding failed")
        out = self._compressed(header=msg.header, format=COMPRESSED_FORMAT, data=jpeg.reshape(-1))
        return bytes(self.typestore.serialize_cdr(out, COMPRESSED_IMAGE))


# ---- writing ----

@dataclass
class TopicStats:
    msgtype: str
    messages: int = 0
    bytes: int = 0


class BagWriter:
    """A rosbag2 bag (MCAP storage) of serialised messages; topics are added on their first message.

    Args:
        path: the bag folder to create (must not exist): ``metadata.yaml`` and ``<name>.mcap`` go inside.
        typestore: describes each topic's type (:func:`typestore.make_typestore`: standard + aloha_interfaces).
        storage: ``mcap`` (default) or ``sqlite3`` (the Humble default).
    """

    def __init__(self, path: str | os.PathLike[str], typestore: Typestore | None = None, *,
                 storage: str = "mcap", version: int = BAG_VERSION):
        self.path = Path(path)
        if self.path.exists():
            raise BagError(f"{self.path}: exists already; bags are never overwritten (choose another --out)")
        plugins = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
        if storage not in plugins:
            raise BagError(f"storage '{storage}': expected one of {sorted(plugins)}")
        self.typestore = typestore or make_typestore()
        self._writer = Writer(self.path, version=version, storage_plugin=plugins[storage])
        self._writer.open()
        self._connections: dict[tuple[str, str], Connection] = {}
        self.stats: dict[str, TopicStats] = {}
        self.closed = False

    def write(self, topic: str, msgtype: str, timestamp_ns: int, data: bytes | memoryview,
              qos: Mapping[str, Any] | None = None) -> None:
        """One serialised message received at ``timestamp_ns`` (nanoseconds since the epoch)."""
        conn = self._connections.get((topic, msgtype))
        if conn is None:
            if msgtype not in self.typestore.types:
                raise BagError(f"{topic}: type {msgtype} is not in the typestore (a standard ROS type or "
                               f"aloha_interfaces); it cannot be described in the bag")
            conn = self._writer.add_connection(topic, msgtype, typestore=self.typestore,
                                               offered_qos_profiles=[offered_qos(qos or {})])
            self._connections[(topic, msgtype)] = conn
            self.stats[topic] = TopicStats(msgtype)
        self._writer.write(conn, int(timestamp_ns), data)
        stats = self.stats[topic]
        stats.messages += 1
        stats.bytes += len(data)

    def write_message(self, topic: str, msg: Any, timestamp_ns: int, qos: Mapping[str, Any] | None = None) -> None:
        """A rosbags message object (``typestore.types[...](...)``), serialised here."""
        msgtype = msg.__msgtype__
        self.write(topic, msgtype, timestamp_ns, self.typestore.serialize_cdr(msg, msgtype), qos)

    @property
    def messages(self) -> int:
        return sum(s.messages for s in self.stats.values())

    @property
    def bytes(self) -> int:
        return sum(s.bytes for s in self.stats.values())

    def close(self) -> Path:
        """Finish the storage file and write ``metadata.yaml``; returns the bag folder."""
        if not self.closed:
            self.closed = True
            self._writer.close()
        return self.path

    def __enter__(self) -> BagWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BagRecording:
    """What ``rollout_recorder record`` does with each message it receives, without ROS: the node's writer thread
    calls :meth:`add` with the serialised bytes; tests and benchmarks call it directly.

    Args:
        path: bag folder to create.
        topics: the subscribed topics (:func:`record_topics`); an image topic with ``compress`` is JPEG-encoded
            here and written as CompressedImage on ``<topic>/compressed``.
        jpeg_quality: quality of those JPEGs.
    """

    def __init__(self, path: str | os.PathLike[str], topics: Sequence[BagTopic], *, typestore: Typestore | None = None,
                 storage: str = "mcap", jpeg_quality: int = BAG_JPEG_QUALITY):
        self.topics = list(topics)
        self.writer = BagWriter(path, typestore, storage=storage)
        self.compressor = (ImageCompressor(self.writer.typestore, jpeg_quality)
                           if any(t.compress for t in self.topics) else None)

    def add(self, topic: BagTopic, received_ns: int, raw: bytes | memoryview) -> None:
        data = self.compressor(raw, topic.name) if topic.compress else raw
        self.writer.write(topic.bag_name, topic.bag_msgtype, received_ns, data, topic.qos)

    def silent_topics(self) -> list[str]:
        """Topics subscribed to that delivered nothing."""
        return sorted(t.bag_name for t in self.topics if t.bag_name not in self.writer.stats)

    def close(self) -> Path:
        return self.writer.close()


def bag_size_bytes(path: str | os.PathLike[str]) -> int:
    path = Path(path)
    return sum(p.stat().st_size for p in path.iterdir()) if path.is_dir() else path.stat().st_size


# ---- reading ----

@contextmanager
def open_bag(path: str | os.PathLike[str], typestore: Typestore | None = None) -> Iterator[AnyReader]:
    """``with open_bag(path) as reader``: an opened rosbags reader of a rosbag2 folder (or a bare .mcap / .db3 file).

    Types come from the definitions stored in the bag; ``typestore`` (default: standard + aloha_interfaces)
    serves bags that carry none.
    """
    path = Path(path)
    if not path.exists():
        raise BagError(f"{path}: bag not found (expected a rosbag2 folder with metadata.yaml, or a .mcap file)")
    if path.is_dir() and not (path / "metadata.yaml").exists():
        storage = sorted(path.glob("*.mcap")) + sorted(path.glob("*.db3"))
        if len(storage) != 1:
            raise BagError(f"{path}: no metadata.yaml (the recording was not closed?) and {len(storage)} storage "
                           f"files; run `ros2 bag reindex {path}` or pass the .mcap file itself")
        path = storage[0]  # a bag whose recorder was killed: read the storage file directly
    try:
        reader = AnyReader([path], default_typestore=typestore or make_typestore())
        reader.open()
    except Exception as exc:  # noqa: BLE001 - rosbags raises reader, storage and typesys errors
        raise BagError(f"{path}: not a readable rosbag2 bag ({exc})") from None
    try:
        yield reader
    finally:
        reader.close()


def stamp_ns_of(msg: Any) -> int:
    """The header stamp of a deserialised message in nanoseconds (0 when it has none)."""
    header = getattr(msg, "header", None)
    if header is None:
        return 0
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def joint_vector(names: Sequence[str], values: Sequence[float], wanted: Sequence[str], what: str) -> np.ndarray:
    """Values of ``wanted`` joints (in that order) from a JointState's parallel name/value lists."""
    if len(names) != len(values):
        raise BagError(f"{what}: {len(names)} names but {len(values)} values (malformed message)")
    index = {n: i for i, n in enumerate(names)}
    missing = [n for n in wanted if n not in index]
    if missing:
        raise BagError(f"{what}: joints {missing} missing (message has {list(names)}); pass --joint-names with "
                       f"the joints to record, in order")
    return np.array([values[index[n]] for n in wanted], dtype=np.float64)


# ---- bag -> episodes ----

@dataclass
class BagEpisodeOptions:
    """How a bag's topics become ACT episodes (defaults: the contract's topics, names and rate)."""

    task: str = ""                                  # task text stored as `task` and `task_description`
    joint_states_topic: str | None = None           # sensor_msgs/JointState, one row per message (default: contract)
    joint_commands_topic: str | None = None         # sensor_msgs/JointState, the action (default: contract)
    camera_topics: dict[str, str] | None = None     # camera -> Image or CompressedImage topic (default: contract's,
                                                    #   raw topic or its /compressed twin, whichever the bag has)
    joint_names: list[str] | None = None            # the state/action vector in order (default: contract's 14)
    control_hz: float | None = None                 # control rate (default: contract's); faster joint states thinned
    split_gap_s: float = 2.0                        # a jump in joint-state stamps longer than this starts an episode
    min_steps: int = 10                             # shorter segments are skipped (resets, stray messages)
    compress: bool = False                          # JPEG frames in the episode (ALOHA's compressed layout)
    use_receive_time: bool = False                  # sync on bag receive times instead of header stamps
    sim: bool = False                               # the bag came from a simulator (episode attr `sim`)
    reserve_bytes: int = 1 << 30                    # free disk space to leave beyond each episode
    namespace: str = "/"                            # robot namespace the contract's default topics were under

    def __post_init__(self) -> None:
        if self.control_hz is not None and not (math.isfinite(self.control_hz) and self.control_hz > 0):
            raise BagError(f"control_hz={self.control_hz}: expected a positive rate in Hz")
        if self.split_gap_s < 0:
            raise BagError(f"split_gap_s={self.split_gap_s}: expected >= 0 (0: never split)")
        if self.min_steps < 1:
            raise BagError(f"min_steps={self.min_steps}: expected >= 1")


@dataclass
class ConvertedEpisode:
    """One episode written from a bag segment."""

    path: Path
    steps: int
    duration_s: float
    camera_rate_hz: dict[str, float]
    dropped_frames: dict[str, int]
    uncommanded_steps: int
    low_rate_cameras: list[str]


@dataclass
class BagConversion:
    episodes: list[ConvertedEpisode] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)   # segments not written, and why
    notes: list[str] = field(default_factory=list)     # what the converter decided (missing topics, thinning)


class _StateThinner:
    """Keeps joint states at about the control rate when a robot publishes them faster (one row per kept state)."""

    def __init__(self, period_s: float):
        self.period_s = period_s
        self.next_due_s = -math.inf

    def keep(self, stamp_s: float) -> bool:
        if stamp_s < self.next_due_s - 0.25 * self.period_s:
            return False
        self.next_due_s = (stamp_s + self.period_s if math.isinf(self.next_due_s)
                           else max(self.next_due_s + self.period_s, stamp_s + 0.5 * self.period_s))
        return True


class _Segment:
    """One episode being converted: its synchroniser, its rows (buffered until ``min_steps``) and attributes."""

    def __init__(self, shapes: dict[str, tuple[int, int]], period_s: float, opts: BagEpisodeOptions, folder: Path,
                 attrs: dict[str, Any], max_steps: int, state_dim: int):
        self.sync = TickSynchronizer(list(shapes), period_s)
        self.shapes, self.period_s, self.opts, self.folder = shapes, period_s, opts, folder
        self.attrs, self.max_steps, self.state_dim = attrs, max_steps, state_dim
        self.buffer: list[TickRow] = []
        self.writer: EpisodeWriter | None = None
        self.rows = 0
        self.uncommanded = 0
        self.first_s: float | None = None
        self.last_s: float | None = None
        self.stage: Any = None
        self.stage_steps: list[tuple[int, int]] = []
        self.values: list[tuple[int, float]] = []
        self.bad_frames = {cam: 0 for cam in shapes}

    def add(self, rows: Iterable[TickRow]) -> None:
        for row in rows:
            self.rows += 1
            self.uncommanded += not row.commanded
            self.first_s = row.stamp_s if self.first_s is None else self.first_s
            self.last_s = row.stamp_s
            if self.writer is None:
                self.buffer.append(row)
                if len(self.buffer) < self.opts.min_steps:
                    continue
                self.writer = EpisodeWriter(self.folder, self.shapes, attrs=self.attrs, compress=self.opts.compress,
                                            max_steps=self.max_steps, state_dim=self.state_dim,
                                            reserve_bytes=self.opts.reserve_bytes, flush_every=50)
                pending, self.buffer = self.buffer, []
            else:
                pending = [row]
            for r in pending:
                self.writer.append(r.qpos, r.action, r.images, qvel=r.qvel, effort=r.effort,
                                   stamp_ns=int(round(r.stamp_s * 1e9)))

    def abort(self) -> None:
        """An error ends the conversion: the episode being written is deleted, not left partial."""
        if self.writer is not None:
            self.writer.discard()
            self.writer = None

    def finish(self, reason: str, result: BagConversion) -> None:
        self.add(self.sync.flush())
        if self.writer is None:
            if self.rows:
                result.skipped.append(f"{self.rows} steps from t={self.first_s:.3f} s ({reason}): fewer than "
                                      f"--min-steps {self.opts.min_steps}")
            return
        duration = self.last_s - self.first_s + self.period_s
        rates = self.sync.camera_rates_hz(duration)
        min_rate = float(self.attrs.get("min_camera_rate_hz", 0.0))
        low = low_rate_cameras(rates, min_rate)
        w = self.writer
        for step, score in self.stage_steps:
            w.add_stage(min(step, w.num_steps), score)
        for step, value in self.values:
            w.add_chunk_value(min(step, w.num_steps), value)
        attrs: dict[str, Any] = {"camera_rate_hz": [rates[c] for c in self.shapes], "camera_rate_low": bool(low),
                                 "uncommanded_steps": self.uncommanded, "duration_s": duration, "stopped_by": reason}
        stage = self.stage
        if stage is not None:
            attrs.update(stage_score=float(stage.score), success=bool(stage.success),
                         success_score=float(stage.score) / 100.0, stages_reached=list(stage.stages_reached) or [""],
                         score_source=str(stage.source))
            if stage.task and not self.opts.task:
                attrs["task"] = str(stage.task)
        if self.values:
            attrs["final_value"] = float(self.values[-1][1])
        if any(self.bad_frames.values()):
            attrs["bad_frames"] = [self.bad_frames[c] for c in self.shapes]
        path = w.finish(attrs)
        result.episodes.append(ConvertedEpisode(path, w.num_steps, duration, rates, dict(w.dropped), self.uncommanded,
                                                low))


def _camera_sources(reader: AnyReader, contract, opts: BagEpisodeOptions,
                    notes: list[str]) -> dict[str, Connection]:
    by_topic: dict[str, list[Connection]] = {}
    for conn in reader.connections:
        by_topic.setdefault(conn.topic, []).append(conn)
    wanted = opts.camera_topics or {cam: contract.qualified_topic("camera_image", opts.namespace, camera=cam)
                                    for cam in contract.cameras}
    sources: dict[str, Connection] = {}
    for cam, topic in wanted.items():
        candidates = [c for t in (topic, topic + COMPRESSED_SUFFIX) for c in by_topic.get(t, [])
                      if c.msgtype in (IMAGE, COMPRESSED_IMAGE)]
        if candidates:
            sources[cam] = candidates[0]
        else:
            notes.append(f"{cam}: no Image on {topic} nor CompressedImage on {topic}{COMPRESSED_SUFFIX} in the bag; "
                         f"the episode has no {cam} frames")
    return sources


def _decode_frame(reader: AnyReader, conn: Connection, raw: bytes, cam: str) -> tuple[np.ndarray, Any]:
    msg = reader.deserialize(raw, conn.msgtype)
    what = f"{cam} ({conn.topic})"
    rgb = compressed_to_rgb(msg, what) if conn.msgtype == COMPRESSED_IMAGE else image_to_rgb(msg, what)
    return rgb, msg


class _BagConverter:
    """One pass over a bag: resolves its topics, then feeds every message to the current :class:`_Segment`."""

    def __init__(self, reader: AnyReader, bag: Path, out_dir: Path, contract, opts: BagEpisodeOptions,
                 result: BagConversion):
        self.reader, self.opts, self.result = reader, opts, result
        self.period_s = 1.0 / (opts.control_hz or contract.control_rate_hz)
        self.names = list(opts.joint_names or contract.joint_names)
        conns = reader.connections
        state_topic = opts.joint_states_topic or contract.qualified_topic("joint_states", opts.namespace)
        command_topic = opts.joint_commands_topic or contract.qualified_topic("joint_commands", opts.namespace)
        self.state_conns = [c for c in conns if c.topic == state_topic and c.msgtype == JOINT_STATE]
        if not self.state_conns:
            raise BagError(f"{bag}: no sensor_msgs/JointState on {state_topic} (the bag has "
                           f"{sorted({c.topic for c in conns})}); pass --joint-states TOPIC")
        command_conns = [c for c in conns if c.topic == command_topic and c.msgtype == JOINT_STATE]
        if not command_conns:
            result.notes.append(f"no sensor_msgs/JointState on {command_topic}: the action of each step is the "
                                f"measured position (uncommanded)")
        self.command_ids = {c.id for c in command_conns}
        self.shapes, cameras = self._image_shapes(_camera_sources(reader, contract, opts, result.notes))
        self.camera_of = {conn.id: cam for cam, conn in cameras.items()}
        self.extras = {c.id: kind for c in conns for kind, key in (("stage", "stage_score"), ("value", "policy_value"))
                       if c.topic == contract.qualified_topic(key, opts.namespace)
                       and c.msgtype == CONTRACT_TOPIC_TYPES[key]}
        self.wanted = self.state_conns + command_conns + list(cameras.values()) + [c for c in conns
                                                                                   if c.id in self.extras]
        self.thin = self._needs_thinning()
        duration_s = max(reader.end_time - reader.start_time, 1) * 1e-9
        self.attrs = {"sim": bool(opts.sim), "task": opts.task, "task_description": opts.task, "source": "bag",
                      "bag": str(bag.resolve()), "control_period_s": self.period_s, "joint_names": self.names,
                      "min_camera_rate_hz": float((contract.raw.get("recording") or {}).get(
                          "min_camera_rate_hz", 0.8 / self.period_s))}
        self.max_steps = int(duration_s / self.period_s) + 10
        self.out_dir = out_dir
        self.states_used = 0
        self.bad_messages = 0

    def _image_shapes(self, sources: dict[str, Connection]) -> tuple[dict[str, tuple[int, int]], dict]:
        shapes: dict[str, tuple[int, int]] = {}
        for cam, conn in sources.items():
            for _, _, raw in self.reader.messages(connections=[conn]):
                shapes[cam] = _decode_frame(self.reader, conn, raw, cam)[0].shape[:2]
                break
            else:
                self.result.notes.append(f"{cam}: {conn.topic} holds no message; the episode has no {cam} frames")
        if not shapes:
            self.result.notes.append("no camera frames at all: the episodes hold joint data only")
        return shapes, {cam: conn for cam, conn in sources.items() if cam in shapes}

    def _needs_thinning(self) -> bool:
        stamps = []
        for _, t, raw in self.reader.messages(connections=self.state_conns):
            stamps.append(self._stamp_ns(self.reader.deserialize(raw, JOINT_STATE), t))
            if len(stamps) >= 200:
                break
        median_dt = float(np.median(np.diff(stamps))) * 1e-9 if len(stamps) > 2 else self.period_s
        if 0 < median_dt < 0.75 * self.period_s:
            self.result.notes.append(f"joint states every {median_dt * 1000:.1f} ms: thinned to the control period "
                                     f"{self.period_s * 1000:.1f} ms")
            return True
        return False

    def _stamp_ns(self, msg: Any, received_ns: int) -> int:
        return received_ns if self.opts.use_receive_time else (stamp_ns_of(msg) or received_ns)

    def _segment(self) -> _Segment:
        return _Segment(self.shapes, self.period_s, self.opts, self.out_dir, self.attrs, self.max_steps,
                        len(self.names))

    def _joints(self, msg: Any, field: str, what: str) -> np.ndarray | None:
        values = getattr(msg, field)
        if field != "position" and not (len(values) == len(msg.name) and len(msg.name)):
            return None
        return joint_vector(msg.name, values, self.names, what)

    def run(self, progress: Callable[[float, int, int], None] | None) -> None:
        reader = self.reader
        start, end = reader.start_time, max(reader.end_time, reader.start_time + 1)
        segment = self._segment()
        thinner = _StateThinner(self.period_s) if self.thin else None
        last_state_s: float | None = None
        try:
            for count, (conn, t, raw) in enumerate(reader.messages(connections=self.wanted), 1):
                if progress is not None and count % 200 == 0:
                    progress((t - start) / (end - start), segment.rows, len(self.result.episodes))
                kind = self.extras.get(conn.id)
                if kind is not None:
                    msg = reader.deserialize(raw, conn.msgtype)
                    if kind == "stage":
                        segment.stage = msg
                        segment.stage_steps.append((segment.rows, int(round(msg.score))))
                    else:
                        segment.values.append((segment.rows, float(msg.data)))
                    continue
                cam = self.camera_of.get(conn.id)
                if cam is not None:
                    try:
                        rgb, msg = _decode_frame(reader, conn, raw, cam)
                    except BagError:
                        rgb, msg = None, None
                    if rgb is None or rgb.shape[:2] != self.shapes[cam]:
                        segment.bad_frames[cam] += 1  # unreadable or another size: a dropped frame, as live
                        continue
                    segment.add(segment.sync.add_frame(cam, self._stamp_ns(msg, t) * 1e-9, rgb))
                    continue
                msg = reader.deserialize(raw, JOINT_STATE)
                stamp_s = self._stamp_ns(msg, t) * 1e-9
                what = f"{conn.topic} at t={stamp_s:.3f} s"
                try:
                    if conn.id in self.command_ids:
                        segment.add(segment.sync.add_command(stamp_s, self._joints(msg, "position", what)))
                        continue
                    if (self.opts.split_gap_s > 0 and last_state_s is not None
                            and abs(stamp_s - last_state_s) > self.opts.split_gap_s):
                        segment.finish(f"{stamp_s - last_state_s:+.1f} s jump in joint-state stamps", self.result)
                        segment = self._segment()
                        thinner = _StateThinner(self.period_s) if self.thin else None
                    last_state_s = stamp_s
                    if thinner is not None and not thinner.keep(stamp_s):
                        continue
                    qpos = self._joints(msg, "position", what)
                    qvel, effort = self._joints(msg, "velocity", what), self._joints(msg, "effort", what)
                except BagError as exc:
                    if not self.states_used:
                        raise  # the very first messages do not fit: a wrong topic or joint names, not a glitch
                    if not self.bad_messages:
                        self.result.notes.append(f"skipped malformed messages, the first: {exc}")
                    self.bad_messages += 1
                    continue
                self.states_used += 1
                segment.add(segment.sync.add_state(stamp_s, qpos, qvel, effort))
            segment.finish("end of bag", self.result)
        except BaseException:
            segment.abort()
            raise
        if self.bad_messages:
            self.result.notes.append(f"{self.bad_messages} malformed joint messages skipped in all")


def bag_to_episodes(bag: str | os.PathLike[str], out_dir: str | os.PathLike[str], contract,
                    opts: BagEpisodeOptions | None = None,
                    progress: Callable[[float, int, int], None] | None = None) -> BagConversion:
    """Convert a bag into ACT episodes in ``out_dir`` (numbered after any already there).

    One row per joint-state message (thinned to the control rate when faster), its camera frames and command
    chosen by stamp as the recorder node does live (``sync.TickSynchronizer``). A jump in joint-state stamps
    longer than ``split_gap_s`` (a reset, a pause in recording) starts a new episode. ``progress(fraction,
    rows, episodes)`` is called every few hundred messages. An error leaves no episode half written.
    """
    opts = opts or BagEpisodeOptions()
    result = BagConversion()
    with open_bag(bag) as reader:
        _BagConverter(reader, Path(bag), Path(out_dir), contract, opts, result).run(progress)
    if progress is not None:
        progress(1.0, 0, len(result.episodes))
    return result


def describe_conversion(result: BagConversion) -> str:
    """The one-screen summary ``bag-to-episode`` prints."""
    lines = [f"note: {n}" for n in result.notes]
    for ep in result.episodes:
        cams = ", ".join(f"{cam} {rate:.1f} Hz ({ep.dropped_frames.get(cam, 0)} dropped)"
                         for cam, rate in ep.camera_rate_hz.items())
        lines.append(f"{ep.path.name}: {ep.steps} steps, {ep.duration_s:.2f} s, {ep.uncommanded_steps} uncommanded"
                     + (f"; {cams}" if cams else "")
                     + (f"; CAMERA RATE LOW: {ep.low_rate_cameras}" if ep.low_rate_cameras else ""))
    lines += [f"skipped: {s}" for s in result.skipped]
    lines.append(f"{len(result.episodes)} episodes written, {len(result.skipped)} segments skipped")
    return "\n".join(lines)

