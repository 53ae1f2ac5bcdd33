"""Record -> bag -> bag-to-episode round trips through the plain modules (no ROS): the bag is written by the
code path the record node runs for each message, and converted by the recorder's synchroniser."""

from __future__ import annotations

import numpy as np
import pytest
import yaml
from bags_synthetic import PERIOD_NS, T0_NS, frame, qpos, record_contract_bag

from rollout_recorder.bags import BagEpisodeOptions, BagError, bag_to_episodes, open_bag
from rollout_recorder.episode_file import read_act_episode, read_rollout_history

HW = (24, 32)


@pytest.fixture(scope="module")
def contract():
    from aloha_contract import load_contract
    return load_contract()


def opts(**kw):
    return BagEpisodeOptions(reserve_bytes=0, **kw)


def test_raw_round_trip_gives_the_same_joint_states_images_and_commands(contract, tmp_path):
    steps = 40
    record_contract_bag(tmp_path / "bag", contract, steps, HW, stage_at=5, value_at=7)
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "episodes", contract, opts(task="transfer the cube"))
    assert len(result.episodes) == 1 and not result.skipped, result
    ep = read_act_episode(result.episodes[0].path)
    assert ep.num_steps == steps
    expected = np.stack([qpos(t) for t in range(steps)]).astype(np.float32)
    # the bag's names were in reverse order: matched by name into the contract's order
    np.testing.assert_array_equal(ep.qpos, expected)
    np.testing.assert_array_equal(ep.qvel, -expected)
    np.testing.assert_array_equal(ep.effort, 2 * expected)
    commands = np.stack([qpos(t) + 0.01 for t in range(steps)]).astype(np.float32)
    np.testing.assert_array_equal(ep.action, commands)
    for c, cam in enumerate(contract.cameras):
        assert ep.frame_valid[cam].all()
        np.testing.assert_array_equal(ep.images[cam], np.stack([frame(t, c, HW) for t in range(steps)]))
    a = ep.attrs
    assert a["source"] == "bag" and a["task"] == "transfer the cube" and a["uncommanded_steps"] == 0
    assert a["stage_score"] == 50.0 and a["success"] in (False, 0) and list(a["stages_reached"]) == ["touched",
                                                                                                     "lifted"]
    history = read_rollout_history(result.episodes[0].path)
    # at the step the message arrived (the rows released by then), as the recorder node stores them
    assert history["stage_history"].tolist() == [[5, 50]] and history["chunk_values"].tolist() == [[7, 0.75]]
    from rollout_recorder.episode_file import open_episode_file
    with open_episode_file(result.episodes[0].path) as f:
        stamps = np.asarray(f["observations/stamp_ns"][()])
    np.testing.assert_allclose(stamps - T0_NS, np.arange(steps) * PERIOD_NS, atol=1000)


def test_compressed_images_round_trip_within_jpeg_error(contract, tmp_path):
    steps = 12
    record_contract_bag(tmp_path / "bag", contract, steps, HW, compress=True)
    with open_bag(tmp_path / "bag") as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
    cam_topic = contract.qualified_topic("camera_image", camera=contract.cameras[0])
    assert types[cam_topic + "/compressed"] == "sensor_msgs/msg/CompressedImage" and cam_topic not in types
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "episodes", contract, opts())
    ep = read_act_episode(result.episodes[0].path)
    assert ep.num_steps == steps
    for c, cam in enumerate(contract.cameras):
        truth = np.stack([frame(t, c, HW) for t in range(steps)]).astype(np.int16)
        assert np.abs(ep.images[cam].astype(np.int16) - truth).mean() < 4.0


def test_dropped_frame_is_marked_like_the_recorder_does(contract, tmp_path):
    cam = contract.cameras[1]
    record_contract_bag(tmp_path / "bag", contract, 20, HW, drop=(cam, 6))
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "episodes", contract, opts())
    ep = read_act_episode(result.episodes[0].path)
    assert ep.frame_valid[cam].tolist() == [t != 6 for t in range(20)]
    np.testing.assert_array_equal(ep.images[cam][6], ep.images[cam][5])  # the previous frame repeats
    assert result.episodes[0].dropped_frames[cam] == 1


def test_a_gap_in_stamps_splits_episodes_and_short_segments_are_skipped(contract, tmp_path):
    record_contract_bag(tmp_path / "bag", contract, 30, HW, gap_after=25)
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "episodes", contract, opts(min_steps=10))
    assert [e.steps for e in result.episodes] == [25] and len(result.skipped) == 1, result
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "more", contract, opts(min_steps=2))
    assert [e.steps for e in result.episodes] == [25, 5]
    assert [p.name for p in sorted((tmp_path / "more").glob("*.hdf5"))] == ["episode_0.hdf5", "episode_1.hdf5"]
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "whole", contract, opts(split_gap_s=0))
    assert [e.steps for e in result.episodes] == [30]


def test_metadata_is_rosbag2_v8_mcap_with_counts(contract, tmp_path):
    record_contract_bag(tmp_path / "bag", contract, 10, HW, stage_at=1)
    meta = yaml.safe_load((tmp_path / "bag" / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["version"] == 8 and meta["storage_identifier"] == "mcap"
    assert meta["relative_file_paths"] == ["bag.mcap"] and (tmp_path / "bag" / "bag.mcap").is_file()
    counts = {t["topic_metadata"]["name"]: (t["topic_metadata"]["type"], t["message_count"])
              for t in meta["topics_with_message_count"]}
    assert counts[contract.qualified_topic("joint_states")] == ("sensor_msgs/msg/JointState", 10)
    assert counts[contract.qualified_topic("stage_score")] == ("aloha_interfaces/msg/StageScore", 1)
    for topic in meta["topics_with_message_count"]:
        qos = topic["topic_metadata"]["offered_qos_profiles"]
        assert isinstance(qos, str) and "reliability" in qos  # v8: a YAML string, as Humble's ros2 bag expects
        assert topic["topic_metadata"]["type_description_hash"].startswith("RIHS01_")
    assert meta["message_count"] == 10 * 5 + 1


def test_an_independent_mcap_reader_decodes_every_topic_from_the_embedded_schemas(contract, tmp_path):
    """What Foxglove does: read the .mcap alone and decode each message with the ros2msg schema it carries."""
    mcap_reader = pytest.importorskip("mcap.reader")
    decoder = pytest.importorskip("mcap_ros2.decoder")
    record_contract_bag(tmp_path / "bag", contract, 5, HW, stage_at=2, value_at=3)
    seen = {}
    with open(tmp_path / "bag" / "bag.mcap", "rb") as f:
        reader = mcap_reader.make_reader(f, decoder_factories=[decoder.DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        for schema, channel, _, msg in reader.iter_decoded_messages():
            assert schema.encoding == "ros2msg" and channel.message_encoding == "cdr"
            seen.setdefault(channel.topic, []).append(msg)
    stage = seen[contract.qualified_topic("stage_score")][0]
    assert stage.score == 50.0 and list(stage.stages_reached) == ["touched", "lifted"] and stage.source == "sim"
    state = seen[contract.qualified_topic("joint_states")][4]
    assert list(state.name)[0] == contract.joint_names[-1] and state.position[0] == pytest.approx(qpos(4)[-1])
    img = seen[contract.qualified_topic("camera_image", camera=contract.cameras[0])][0]
    assert (img.height, img.width, img.encoding) == (*HW, "rgb8")


def test_errors_name_the_bag_and_what_to_do(contract, tmp_path):
    with pytest.raises(BagError, match="bag not found"):
        bag_to_episodes(tmp_path / "missing", tmp_path / "out", contract, opts())
    record_contract_bag(tmp_path / "bag", contract, 5, HW)
    with pytest.raises(BagError, match="pass --joint-states"):
        bag_to_episodes(tmp_path / "bag", tmp_path / "out", contract, opts(joint_states_topic="/other/joint_states"))
    with pytest.raises(BagError, match="--joint-names"):
        bag_to_episodes(tmp_path / "bag", tmp_path / "out", contract, opts(joint_names=["a", "b"]))


def test_a_malformed_message_is_skipped_and_an_error_leaves_no_partial_episode(contract, tmp_path, monkeypatch):
    from bags_synthetic import joint_state

    from rollout_recorder.bags import BagRecording, record_topics
    from rollout_recorder.episode_file import EpisodeWriter

    topics = {t.name: t for t in record_topics(contract)}
    rec = BagRecording(tmp_path / "bag", list(topics.values()))
    ts = rec.writer.typestore
    state = topics[contract.qualified_topic("joint_states")]
    for t in range(20):
        stamp = T0_NS + t * PERIOD_NS
        names = contract.joint_names[:-1] if t == 12 else contract.joint_names  # one message lacks a joint
        msg = joint_state(ts, stamp, names, qpos(t)[:len(names)])
        rec.add(state, stamp, bytes(ts.serialize_cdr(msg, state.msgtype)))
    rec.close()
    result = bag_to_episodes(tmp_path / "bag", tmp_path / "episodes", contract, opts())
    assert [e.steps for e in result.episodes] == [19]
    assert any("skipped malformed" in n and "right_gripper" in n for n in result.notes), result.notes

    def failing_append(self, *args, **kwargs):
        if self.num_steps == 12:
            raise OSError("disk full")
        return real_append(self, *args, **kwargs)

    real_append = EpisodeWriter.append
    monkeypatch.setattr(EpisodeWriter, "append", failing_append)
    with pytest.raises(OSError, match="disk full"):
        bag_to_episodes(tmp_path / "bag", tmp_path / "failed", contract, opts())
    assert list((tmp_path / "failed").iterdir()) == []  # no .partial left behind
