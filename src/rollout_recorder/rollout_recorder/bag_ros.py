"""The ROS edge of bags and offline replay: record topics into a bag, replay a bag, replay an episode.

Only the ``rollout_recorder`` CLI imports this module (it needs rclpy); the logic lives in the plain modules
``bags`` (bag format, bag -> episode) and ``playback`` (timing, chunk scoring). Each runner returns the
process exit status; Ctrl-C (SIGINT) or SIGTERM ends it cleanly (a bag being recorded is closed and gets its
``metadata.yaml``).
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rclpy
from builtin_interfaces.msg import Time
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from rosbags.rosbag2 import WriterError
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from aloha_contract.node_main import run_node
from aloha_contract.ros import qos_profile, rgb_to_image, vector_to_joint_state

from .bags import (
    CLOCK,
    COMPRESSED_IMAGE,
    COMPRESSED_SUFFIX,
    BagError,
    BagRecording,
    BagTopic,
    bag_size_bytes,
    compressed_to_rgb,
    open_bag,
    qos_spec,
    record_topics,
)
from .episode_file import open_episode_file, read_act_episode, read_act_frames
from .playback import (
    ChunkScorer,
    PlaybackClock,
    PlaybackError,
    chunk_from_multiarray,
    episode_stamps_ns,
    rebase_ns,
    with_clock_ticks,
)
from .typestore import make_typestore

STATUS_PERIOD_S = 5.0  # how often long runs print a progress line
STOP_POLL_S = 0.02  # a player notices Ctrl-C within this long


def message_class(msgtype: str) -> type:
    """``sensor_msgs/msg/Image`` -> the rclpy message class (ImportError when the package is not installed)."""
    package, kind, name = msgtype.split("/")
    return getattr(importlib.import_module(f"{package}.{kind}"), name)


def qos_from_spec(spec: Mapping[str, Any]) -> QoSProfile:
    """A contract-style QoS dict (reliability, history, depth, durability) as an rclpy profile."""
    return QoSProfile(
        reliability=(ReliabilityPolicy.BEST_EFFORT if spec.get("reliability") == "best_effort"
                     else ReliabilityPolicy.RELIABLE),
        history=HistoryPolicy.KEEP_ALL if spec.get("history") == "keep_all" else HistoryPolicy.KEEP_LAST,
        depth=int(spec.get("depth", 10)),
        durability=(DurabilityPolicy.TRANSIENT_LOCAL if spec.get("durability") == "transient_local"
                    else DurabilityPolicy.VOLATILE))


def time_of_ns(stamp_ns: int) -> Time:
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def _say(text: str) -> None:
    print(text, flush=True)


# ---- record ----

class BagRecorderNode(Node):
    """Subscribes to the contract topics as serialised bytes and writes them to a bag from one writer thread.

    The callbacks only stamp and queue the bytes (no deserialisation): three 480x640 cameras at 50 Hz stay
    within the executor's budget on two cores; JPEG compression (``--compress-images``) runs in the writer.
    """

    def __init__(self, out: Path, topics: Sequence[BagTopic], *, storage: str = "mcap",
                 jpeg_quality: int = 90, distro: str | None = None):
        super().__init__("rollout_bag_recorder")
        self.recording = BagRecording(out, topics, typestore=make_typestore(distro), storage=storage,
                                      jpeg_quality=jpeg_quality)
        self.writer = self.recording.writer
        self.queue: queue.Queue[tuple[BagTopic, int, bytes] | None] = queue.Queue()
        self.max_backlog = 0
        self.failures: dict[str, int] = {}
        self.started_s = time.monotonic()
        self._closed = False
        self.thread = threading.Thread(target=self._write_loop, name="bag_writer", daemon=True)
        self.thread.start()
        skipped = []
        subscribed = 0
        for topic in topics:
            try:
                cls = message_class(topic.msgtype)
            except (ImportError, AttributeError, ValueError):
                skipped.append(f"{topic.name} ({topic.msgtype} not installed)")
                continue
            self.create_subscription(cls, topic.name, lambda raw, topic=topic: self._on_message(topic, raw),
                                     qos_from_spec(topic.subscribe_qos), raw=True)
            subscribed += 1
        self.create_timer(STATUS_PERIOD_S, self._status)
        for line in skipped:
            self.get_logger().warning(f"not recorded: {line}")
        _say(f"recording {subscribed} topics to {out} ({storage}"
             f"{', images as JPEG on <camera topic>/compressed' if self.recording.compressor else ''}); "
             f"Ctrl-C ends the bag")

    def _on_message(self, topic: BagTopic, raw: bytes) -> None:
        self.queue.put((topic, time.time_ns(), raw))

    def _write_loop(self) -> None:
        while True:
            item = self.queue.get()
            if item is None:
                return
            topic, received_ns, raw = item
            try:
                first = topic.bag_name not in self.writer.stats
                self.recording.add(topic, received_ns, raw)
                if first:
                    _say(f"first message on {topic.bag_name} ({topic.bag_msgtype})")
            except Exception as exc:  # noqa: BLE001 - one bad message must not end the recording; count it
                count = self.failures.get(topic.name, 0)
                self.failures[topic.name] = count + 1
                if count == 0:
                    print(f"[bag recorder] {topic.name}: message not written ({exc})", file=sys.stderr, flush=True)

    def _status(self) -> None:
        backlog = self.queue.qsize()
        self.max_backlog = max(self.max_backlog, backlog)
        _say(f"recorded {self.writer.messages} messages, {self.writer.bytes / 1e6:.1f} MB in "
             f"{time.monotonic() - self.started_s:.0f} s; writer backlog {backlog}")

    def close(self) -> None:
        """Drain the queue and close the bag (writes metadata.yaml); prints the summary."""
        if self._closed:
            return
        self._closed = True
        self.queue.put(None)
        self.thread.join()
        path = self.recording.close()
        elapsed = max(time.monotonic() - self.started_s, 1e-9)
        _say(f"bag {path}: {self.writer.messages} messages, {bag_size_bytes(path) / 1e6:.1f} MB on disk, "
             f"{elapsed:.1f} s, max writer backlog {self.max_backlog}")
        for name, stats in sorted(self.writer.stats.items()):
            _say(f"  {name}: {stats.messages} x {stats.msgtype} ({stats.messages / elapsed:.1f} /s)")
        silent = self.recording.silent_topics()
        if silent:
            _say(f"  no messages on: {', '.join(silent)}")
        for name, count in self.failures.items():
            _say(f"  {name}: {count} messages NOT written (see the first error above)")


def run_record(out: Path, contract, *, compress_images: bool, jpeg_quality: int, storage: str,
               cameras: Sequence[str] | None, distro: str | None, namespace: str = "/") -> int:
    topics = record_topics(contract, compress_images=compress_images, cameras=cameras, namespace=namespace)
    return run_node("rollout_recorder record",
                    lambda: BagRecorderNode(out, topics, storage=storage, jpeg_quality=jpeg_quality, distro=distro),
                    setup_errors=(BagError, ValueError, OSError, WriterError), args=[])


# ---- shared by the players ----

class _Publishing:
    """rclpy context + node for a program that publishes on a timeline of its own (optionally spinning
    subscriptions in a background executor).

    Ctrl-C or SIGTERM asks the timeline to stop: ``ok()`` turns false and ``sleep`` returns early, and the
    program closes what it has open and exits 0. The signal only sets a flag. A KeyboardInterrupt raised
    wherever the main thread happens to be is not safe on CPython 3.11: one that lands inside an
    ``exec`` (rosbags builds its message dataclasses lazily, on the first pass) marks the interpreter,
    and even when caught the process then exits by SIGINT, -2 (measured: 6 of 6 runs with Ctrl-C 10 ms
    into the first pass). A second signal still raises KeyboardInterrupt, for a close that hangs."""

    def __init__(self, name: str, spin: bool, namespace: str = "/"):
        self.stop_signal: int | None = None
        # rclpy's own handlers would shut the context from inside the signal; the flag is the one path
        rclpy.init(args=[], signal_handler_options=SignalHandlerOptions.NO)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)
        self.node = rclpy.create_node(name, namespace=namespace)  # the contract's relative names resolve in it
        self.executor = None
        self.thread = None
        if spin:
            self.executor = SingleThreadedExecutor()
            self.executor.add_node(self.node)
            self.thread = threading.Thread(target=self._spin, daemon=True)
            self.thread.start()

    def _on_signal(self, signum, frame) -> None:
        if self.stop_signal is not None:
            raise KeyboardInterrupt(f"signal {signum} again while stopping")
        self.stop_signal = signum

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - ExternalShutdownException and friends: it ends with the context
            pass

    def ok(self) -> bool:
        return self.stop_signal is None and rclpy.ok()

    def sleep(self, seconds: float) -> None:
        """Sleep, in slices short enough that a stop request ends it within ~20 ms."""
        deadline = time.monotonic() + seconds
        while self.stop_signal is None:
            left = deadline - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, STOP_POLL_S))

    def sleep_until(self, due_s: float) -> float:
        """Sleep until ``due_s`` (monotonic); returns how late it woke up (s), the player's timing error."""
        self.sleep(due_s - time.monotonic())
        return time.monotonic() - due_s

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(timeout_sec=2.0)
        if self.thread is not None:
            self.thread.join(timeout=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


# ---- replay ----

def run_replay(bag: Path, contract, *, rate: float, loop: bool, clock_hz: float, topics: Sequence[str] | None,
               delay_s: float, namespace: str = "/", decompress: bool = False) -> int:
    """Publish a bag's messages with their recorded timing (x rate) and /clock, once or in a loop.

    With ``decompress``, a CompressedImage stream ``<topic>/compressed`` is published as a raw rgb8 Image on
    ``<topic>``: what the policy node and the recorder subscribe to (a bag recorded with --compress-images
    then drives them like the live cameras did)."""
    if not clock_hz > 0:
        raise PlaybackError(f"--clock-hz {clock_hz}: expected > 0")
    PlaybackClock(rate, 0, 0.0)  # checks the rate before ROS starts
    clock_topic = contract.topic("clock")
    with open_bag(bag) as reader:
        conns = [c for c in reader.connections if c.topic != clock_topic and c.msgtype != CLOCK
                 and (not topics or c.topic in topics)]
        known = sorted({c.topic for c in reader.connections})
        bag_span = (reader.start_time, reader.end_time)
    if topics and not conns:
        raise BagError(f"{bag}: none of the topics {list(topics)} are in the bag (it has {known})")
    # the bag stores fully qualified names: the contract's, under the namespace the robot had when recorded
    contract_qos = {contract.qualified_topic(key, namespace): key for key in contract.raw.get("qos", {})
                    if key in contract.raw["topics"]}
    contract_qos.update({contract.qualified_topic("camera_image", namespace, camera=cam): "images"
                         for cam in contract.cameras})
    if decompress:
        import cv2  # noqa: F401 - before the timeline starts: its first import takes ~0.3 s
    ros = _Publishing("rollout_bag_player", spin=False)
    try:
        publishers = {}
        decoders: dict[int, tuple[str, Any]] = {}  # connection id -> (raw topic, its reader's deserialiser)
        for conn in conns:
            if decompress and conn.msgtype == COMPRESSED_IMAGE and conn.topic.endswith(COMPRESSED_SUFFIX):
                raw_topic = conn.topic[:-len(COMPRESSED_SUFFIX)]
                qos = qos_profile(contract, "images") if raw_topic in contract_qos else QoSProfile(depth=10)
                publishers[conn.id] = ros.node.create_publisher(Image, raw_topic, qos)
                decoders[conn.id] = (raw_topic, None)
                continue
            try:
                cls = message_class(conn.msgtype)
            except (ImportError, AttributeError, ValueError):
                print(f"[replay] {conn.topic}: type {conn.msgtype} is not installed here; not replayed",
                      file=sys.stderr, flush=True)
                continue
            if conn.topic in contract_qos:
                qos = qos_profile(contract, contract_qos[conn.topic])
            elif conn.ext.offered_qos_profiles:
                qos = qos_from_spec(qos_spec(conn.ext.offered_qos_profiles[0]))
            else:
                qos = QoSProfile(depth=10)
            publishers[conn.id] = ros.node.create_publisher(cls, conn.topic, qos)
        clock_pub = ros.node.create_publisher(Clock, clock_topic, qos_profile(contract, "clock"))
        _say(f"replaying {bag} ({len(publishers)} topics, {(bag_span[1] - bag_span[0]) * 1e-9:.1f} s of bag time) "
             f"at {rate:g}x with {clock_topic} at {clock_hz:g} Hz{', looping' if loop else ''}; Ctrl-C stops")
        ros.sleep(max(0.0, delay_s))
        passes = published = 0
        max_late_s = 0.0
        while ros.ok():
            with open_bag(bag) as reader:
                decoders = {cid: (topic, reader.deserialize) for cid, (topic, _) in decoders.items()}
                wanted = [c for c in reader.connections if c.id in publishers]
                stream = ((c.id, t, raw) for c, t, raw in reader.messages(connections=wanted))
                clock = None
                last_status = time.monotonic()
                for event in with_clock_ticks(stream, int(round(1e9 / clock_hz))):
                    if clock is None:
                        clock = PlaybackClock(rate, event.bag_time_ns, time.monotonic())
                    max_late_s = max(max_late_s, ros.sleep_until(clock.due_s(event.bag_time_ns)))
                    if not ros.ok():
                        break
                    if event.topic is None:
                        clock_pub.publish(Clock(clock=time_of_ns(event.bag_time_ns)))
                    else:
                        data = event.data if isinstance(event.data, bytes) else bytes(event.data)
                        if event.topic in decoders:
                            data = _decompressed(data, *decoders[event.topic])
                        publishers[event.topic].publish(data)
                        published += 1
                    if time.monotonic() - last_status > STATUS_PERIOD_S:
                        last_status = time.monotonic()
                        _say(f"replay: {(event.bag_time_ns - bag_span[0]) * 1e-9:.1f} / "
                             f"{(bag_span[1] - bag_span[0]) * 1e-9:.1f} s of the bag, {published} messages")
            passes += 1
            if not loop:
                break
        _say(f"replayed {published} messages in {passes} pass{'es' if passes != 1 else ''}; at most "
             f"{max_late_s * 1000:.0f} ms behind the bag's timing")
    except KeyboardInterrupt:
        pass
    except Exception:
        if ros.ok():
            raise  # a real error; after Ctrl-C / SIGTERM a failed publish is only the context going away
    finally:
        ros.close()
    return 0


def _decompressed(raw: bytes, topic: str, deserialize) -> Image:
    """A serialised CompressedImage -> the rgb8 Image it encodes, with the same header."""
    msg = deserialize(raw, COMPRESSED_IMAGE)
    stamp = Time(sec=int(msg.header.stamp.sec), nanosec=int(msg.header.stamp.nanosec))
    return rgb_to_image(compressed_to_rgb(msg, topic), stamp, str(msg.header.frame_id))


# ---- episode -> topics ----

def _episode_joint_names(episode_attrs: Mapping[str, Any], dim: int, contract) -> list[str]:
    if dim == len(contract.joint_names):
        return list(contract.joint_names)
    names = [str(n) for n in episode_attrs.get("joint_names", [])]
    return names if len(names) == dim else [f"joint_{i}" for i in range(dim)]


def run_episode_to_topics(episode_path: Path, contract, *, rate: float, report: Path | None,
                          lookback_steps: int | None, wait_s: float, report_wait_s: float, namespace: str = "/") -> int:
    """Publish an episode's rows as joint states + camera images (stamps rebased to now) and /clock;
    with ``report``, score the policy node's chunks against the recorded actions."""
    episode = read_act_episode(episode_path, load_images=False)
    steps = episode.num_steps
    with open_episode_file(episode_path) as f:
        cameras = list(f["observations/images"].keys()) if "observations/images" in f else []
        stamp_ns = np.asarray(f["observations/stamp_ns"][()]) if "observations/stamp_ns" in f else None
    period_s = float(episode.attrs.get("control_period_s", contract.control_period_s))
    stamps = episode_stamps_ns(stamp_ns, steps, period_s)
    names = _episode_joint_names(episode.attrs, episode.qpos.shape[1], contract)
    PlaybackClock(rate, 0, 0.0)
    lookback = contract.chunk_steps if lookback_steps is None else lookback_steps
    scorer = ChunkScorer(episode.action, lookback, names) if report is not None else None

    frames: queue.Queue = queue.Queue(maxsize=16)
    stop = threading.Event()

    def prefetch() -> None:  # JPEG decoding and HDF5 reads stay off the publishing timeline
        try:
            with open_episode_file(episode_path) as h5:
                for k in range(steps):
                    row = {cam: imgs[0] for cam, imgs in read_act_frames(h5, [k], cameras).items()} if cameras else {}
                    _put(row)
        except Exception as exc:  # noqa: BLE001 - handed to the publishing loop, which raises it
            _put(exc)

    def _put(item) -> None:
        while not stop.is_set():
            try:
                frames.put(item, timeout=0.1)
                return
            except queue.Full:
                continue

    ros = _Publishing("rollout_episode_player", spin=scorer is not None, namespace=namespace)
    on_air = [-1]
    max_late_s, late_rows = 0.0, 0
    lock = threading.Lock()
    try:
        node = ros.node
        pub_state = node.create_publisher(JointState, contract.topic("joint_states"),
                                          qos_profile(contract, "joint_states"))
        pub_cams = {cam: node.create_publisher(Image, contract.camera_topic(cam),
                                               qos_profile(contract, "images")) for cam in cameras}
        pub_clock = node.create_publisher(Clock, contract.topic("clock"), qos_profile(contract, "clock"))
        if scorer is not None:
            from std_msgs.msg import Float32MultiArray

            def on_chunk(msg) -> None:
                with lock:
                    step = on_air[0]
                try:
                    chunk = chunk_from_multiarray(msg.data, [(d.label, d.size) for d in msg.layout.dim],
                                                  episode.action.shape[1])
                except PlaybackError as exc:
                    scorer.ignored.append(str(exc))
                    return
                score = scorer.add(chunk, step)
                if score is not None:
                    _say(f"chunk {score.index} at step {score.on_air_step}: L1 {score.l1:.4f} "
                         f"(best {score.best_l1:.4f} at step {score.best_step})")

            node.create_subscription(Float32MultiArray, contract.topic("policy_chunk"), on_chunk, 10)
        deadline = time.monotonic() + max(0.0, wait_s)
        streams = [pub_state, *pub_cams.values()]
        while any(p.get_subscription_count() == 0 for p in streams) and time.monotonic() < deadline and ros.ok():
            ros.sleep(0.05)
        unheard = [p.topic_name for p in streams if p.get_subscription_count() == 0]
        if unheard:
            _say(f"nobody subscribes to {unheard} after {wait_s:g} s; publishing anyway")
        threading.Thread(target=prefetch, name="episode_frames", daemon=True).start()
        _say(f"publishing {episode_path.name}: {steps} steps, cameras {cameras}, at {rate:g}x"
             + (f"; scoring {contract.topic('policy_chunk')} into {report}" if report else ""))
        clock = PlaybackClock(rate, int(stamps[0]), time.monotonic())
        now0 = time.time_ns()
        last_status = time.monotonic()
        for k in range(steps):
            row = frames.get()
            if isinstance(row, Exception):
                raise row
            late_s = ros.sleep_until(clock.due_s(int(stamps[k])))
            if not ros.ok():
                break
            max_late_s = max(max_late_s, late_s)
            late_rows += late_s > 0.5 * period_s / rate
            stamp = time_of_ns(rebase_ns(int(stamps[k]), int(stamps[0]), now0, rate))
            with lock:  # from now on a chunk may come from row k, never from a later one
                on_air[0] = k
            pub_clock.publish(Clock(clock=stamp))
            pub_state.publish(vector_to_joint_state(episode.qpos[k], names, stamp, velocity=episode.qvel[k],
                                                    effort=episode.effort[k]))
            for cam, pub in pub_cams.items():
                pub.publish(rgb_to_image(row[cam], stamp, contract.camera_frame_id(cam)))
            if time.monotonic() - last_status > STATUS_PERIOD_S:
                last_status = time.monotonic()
                _say(f"step {k + 1}/{steps}" + (f", {len(scorer.scores)} chunks scored" if scorer else ""))
        if scorer is not None:
            ros.sleep(max(0.0, report_wait_s))  # a chunk computed from the last rows is still on its way
    except KeyboardInterrupt:
        pass
    except Exception:
        if ros.ok():
            raise
    finally:
        stop.set()
        ros.close()
    _say(f"published {on_air[0] + 1} of {steps} steps; at most {max_late_s * 1000:.0f} ms late, {late_rows} rows "
         f"more than half a period late" + (" (this machine is too loaded for this --rate)" if late_rows else ""))
    if scorer is not None:
        data = {"episode": str(episode_path.resolve()), "rate": rate, "steps": steps,
                "steps_published": on_air[0] + 1, **scorer.report()}
        report.parent.mkdir(parents=True, exist_ok=True)
        tmp = report.with_name(report.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=2))
        os.replace(tmp, report)
        s = data["summary"]
        _say(f"report {report}: {s['chunks']} chunks"
             + (f", L1 mean {s['l1_mean']:.4f} (median {s['l1_median']:.4f}, best-aligned mean "
                f"{s['best_l1_mean']:.4f})" if s["chunks"] else "; no chunk arrived: is a RunPolicy goal running?"))
    return 0

