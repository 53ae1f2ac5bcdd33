"""bag-to-episode on bags written by other writers than ours: rosbags' own rosbag2 writer (SQLite3 storage,
metadata v9, Humble definitions: what `ros2 bag record` on a Humble robot leaves) and the `mcap-ros2-support`
writer (a bare .mcap file), each with another robot's joint names, camera topics and image encodings."""

from __future__ import annotations

import numpy as np
import pytest
from bags_synthetic import frame, image, joint_state

from rollout_recorder.bags import BagEpisodeOptions, bag_to_episodes
from rollout_recorder.cli import main as cli_main
from rollout_recorder.episode_file import read_act_episode

HW = (18, 24)
JOINTS = [f"arm_joint_{i}" for i in range(6)] + ["gripper"]
CAMERAS = {"front": "/front_camera/image_raw", "wrist": "/wrist_camera/image_raw"}


@pytest.fixture(scope="module")
def contract():
    from aloha_contract import load_contract
    return load_contract()


def q(t):
    return np.arange(7) * 0.1 + 0.002 * t


def write_with_rosbags(path, steps):
    """rosbags' Writer used directly: another program's idea of a bag (no commands, bgr8 + mono8 images,
    joint states at 100 Hz with an extra joint, cameras at 50 Hz)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    t0 = 1_600_000_000_000_000_000
    with Writer(path, version=9, storage_plugin=StoragePlugin.SQLITE3) as writer:
        states = writer.add_connection("/robot/joint_states", "sensor_msgs/msg/JointState", typestore=store)
        cams = {cam: writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
                for cam, topic in CAMERAS.items()}
        for k in range(2 * steps):  # 100 Hz
            stamp = t0 + k * 10_000_000
            pos = np.r_[q(k / 2), 9.9]
            msg = joint_state(store, stamp, JOINTS + ["passive"], pos)
            writer.write(states, stamp + 100_000, store.serialize_cdr(msg, "sensor_msgs/msg/JointState"))
            if k % 2 == 0:
                t = k // 2
                for c, (cam, conn) in enumerate(cams.items()):
                    rgb = frame(t, c, HW)
                    if cam == "wrist":
                        rgb = np.repeat(rgb[..., :1], 3, axis=2)
                    img = image(store, stamp, rgb, cam, "bgr8")
                    if cam == "wrist":
                        img.encoding, img.step, img.data = "mono8", HW[1], np.ascontiguousarray(rgb[..., 0]).reshape(-1)
                    writer.write(conn, stamp + 500_000, store.serialize_cdr(img, "sensor_msgs/msg/Image"))


def test_rosbags_sqlite3_bag_of_another_robot_becomes_an_episode(contract, tmp_path):
    steps = 30
    write_with_rosbags(tmp_path / "humble_bag", steps)
    opts = BagEpisodeOptions(task="pick", joint_states_topic="/robot/joint_states", camera_topics=CAMERAS,
                             joint_names=JOINTS, reserve_bytes=0)
    result = bag_to_episodes(tmp_path / "humble_bag", tmp_path / "episodes", contract, opts)
    assert len(result.episodes) == 1, result
    assert any("thinned" in n for n in result.notes) and any("uncommanded" in n for n in result.notes)
    ep = read_act_episode(result.episodes[0].path)
    assert ep.qpos.shape[1] == 7 and steps - 2 <= ep.num_steps <= steps
    np.testing.assert_allclose(ep.qpos, np.stack([q(t) for t in range(ep.num_steps)]), atol=1e-6)
    np.testing.assert_array_equal(ep.action, ep.qpos)  # no commands in the bag: hold the measured position
    np.testing.assert_array_equal(ep.images["front"], np.stack([frame(t, 0, HW) for t in range(ep.num_steps)]))
    gray = np.stack([frame(t, 1, HW)[..., 0] for t in range(ep.num_steps)])
    np.testing.assert_array_equal(ep.images["wrist"], np.repeat(gray[..., None], 3, axis=3))
    assert ep.frame_valid["front"].all() and ep.frame_valid["wrist"].all()
    assert list(ep.attrs["joint_names"]) == JOINTS and ep.attrs["task"] == "pick"


def test_mcap_ros2_support_writer_file_through_the_cli(contract, tmp_path, capsys):
    mcap_writer = pytest.importorskip("mcap_ros2.writer")
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_JAZZY)
    path = tmp_path / "other.mcap"
    schemas = {}
    steps = 20
    t0 = 1_650_000_000_000_000_000
    with open(path, "wb") as f:
        writer = mcap_writer.Writer(f)
        for msgtype in ("sensor_msgs/msg/JointState", "sensor_msgs/msg/Image"):
            text, _ = store.generate_msgdef(msgtype, ros_version=2)
            schemas[msgtype] = writer.register_msgdef(msgtype, text)
        names = contract.joint_names
        for t in range(steps):
            stamp = t0 + t * 20_000_000
            stamp_dict = {"sec": stamp // 10**9, "nanosec": stamp % 10**9}
            pos = np.linspace(0, 1, 14) + 0.003 * t
            writer.write_message(contract.qualified_topic("joint_states"), schemas["sensor_msgs/msg/JointState"],
                                 {"header": {"stamp": stamp_dict, "frame_id": ""}, "name": names,
                                  "position": pos.tolist(), "velocity": [], "effort": []}, log_time=stamp)
            writer.write_message(contract.qualified_topic("joint_commands"), schemas["sensor_msgs/msg/JointState"],
                                 {"header": {"stamp": stamp_dict, "frame_id": ""}, "name": names,
                                  "position": (pos + 0.05).tolist(), "velocity": [], "effort": []},
                                 log_time=stamp + 1_000_000)
            for c, cam in enumerate(contract.cameras):
                rgb = frame(t, c, HW)
                writer.write_message(contract.qualified_topic("camera_image", camera=cam), schemas["sensor_msgs/msg/Image"],
                                     {"header": {"stamp": stamp_dict, "frame_id": cam}, "height": HW[0],
                                      "width": HW[1], "encoding": "rgb8", "is_bigendian": 0, "step": HW[1] * 3,
                                      "data": rgb.tobytes()}, log_time=stamp + 2_000_000)
        writer.finish()
    code = cli_main(["bag-to-episode", str(path), "--out", str(tmp_path / "episodes"), "--task", "t",
                     "--reserve-mb", "0", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "episode_0.hdf5: 20 steps" in out and "1 episodes written" in out
    ep = read_act_episode(tmp_path / "episodes" / "episode_0.hdf5")
    np.testing.assert_allclose(ep.action - ep.qpos, 0.05, atol=1e-6)
    for c, cam in enumerate(contract.cameras):
        np.testing.assert_array_equal(ep.images[cam], np.stack([frame(t, c, HW) for t in range(steps)]))


def test_cli_errors_exit_2_with_the_reason(tmp_path, capsys):
    assert cli_main(["bag-to-episode", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    assert "bag not found" in capsys.readouterr().err
    (tmp_path / "existing").mkdir()
    assert cli_main(["record", "--out", str(tmp_path / "existing")]) == 2
    assert "never overwritten" in capsys.readouterr().err
    assert cli_main(["bag-to-episode", str(tmp_path / "nope"), "--out", "o", "--camera", "bad"]) == 2
    assert "CAMERA=TOPIC" in capsys.readouterr().err
