"""Our interfaces in rosbags' typestore: registered from their .msg/.srv/.action text, hashed as rosidl hashes
them, serialised byte for byte as rclpy serialises them; and the bag modules stay free of rclpy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_recorder.typestore import TypestoreError, distro_store, interface_types, interfaces_dir, make_typestore

SOURCE_INTERFACES = Path(__file__).resolve().parents[2] / "aloha_interfaces"


def stage_score(store):
    t = store.types
    header = t["std_msgs/msg/Header"](stamp=t["builtin_interfaces/msg/Time"](sec=12, nanosec=345), frame_id="sim")
    return t["aloha_interfaces/msg/StageScore"](header=header, task="transfer_cube", episode_step=7, score=62.5,
                                                stage="lifted", stages_reached=["touched", "lifted"], success=True,
                                                source="sim")


def test_every_interface_part_is_registered_from_the_source_definitions():
    types = interface_types(SOURCE_INTERFACES)
    assert {"aloha_interfaces/msg/StageScore", "aloha_interfaces/srv/ResetEpisode_Request",
            "aloha_interfaces/srv/ResetEpisode_Response", "aloha_interfaces/action/RunPolicy_Goal",
            "aloha_interfaces/action/RunPolicy_Result", "aloha_interfaces/action/RunPolicy_Feedback",
            "aloha_interfaces/action/RunPolicy_FeedbackMessage"} <= set(types)
    fields = [name for name, _ in types["aloha_interfaces/msg/StageScore"][1]]
    assert fields == ["header", "task", "episode_step", "score", "stage", "stages_reached", "success", "source"]


def test_our_messages_serialise_and_deserialise():
    store = make_typestore(interfaces=SOURCE_INTERFACES)
    msg = stage_score(store)
    raw = bytes(store.serialize_cdr(msg, "aloha_interfaces/msg/StageScore"))
    back = store.deserialize_cdr(raw, "aloha_interfaces/msg/StageScore")
    assert back.stages_reached == ["touched", "lifted"] and back.score == 62.5 and back.success
    assert back.header.stamp.nanosec == 345
    fb = store.types["aloha_interfaces/action/RunPolicy_Feedback"](
        step=3, chunk_index=1, chunk_latency_ms=12.5, predicted_value=0.5, value_spread=0.0, stage_score=-1.0,
        planning_fallback=True)
    raw = bytes(store.serialize_cdr(fb, "aloha_interfaces/action/RunPolicy_Feedback"))
    back = store.deserialize_cdr(raw, "aloha_interfaces/action/RunPolicy_Feedback")
    assert back.chunk_latency_ms == 12.5 and back.planning_fallback


def test_type_hashes_match_the_built_interfaces():
    """rosidl writes each type's RIHS01 hash next to the installed definition: ros2 bag and Foxglove compare it."""
    # scripts/setup.sh builds the interfaces: a missing build is a failure here, not a reason to skip
    share = interfaces_dir()
    described = sorted(share.glob("*/*.json"))
    assert described, f"{share}: no rosidl type descriptions (run scripts/setup.sh to build aloha_interfaces)"
    store = make_typestore()
    checked = set()
    for path in described:
        for entry in json.loads(path.read_text())["type_hashes"]:
            name = entry["type_name"]
            if name.startswith("aloha_interfaces/") and name in store.fielddefs:
                assert store.hash_rihs01(name) == entry["hash_string"], name
                checked.add(name.split("/", 1)[1])
    assert checked == {"msg/StageScore", "srv/ResetEpisode_Request", "srv/ResetEpisode_Response",
                       "srv/RecordEpisode_Request", "srv/RecordEpisode_Response",
                       "action/RunPolicy_Goal", "action/RunPolicy_Result", "action/RunPolicy_Feedback",
                       "action/RunPolicy_FeedbackMessage"}


def test_cdr_bytes_interoperate_with_rclpy():
    """Same length and layout both ways (Fast CDR may leave alignment padding bytes uninitialised, so the bytes
    are compared through each side's deserialiser rather than byte for byte)."""
    serialization = pytest.importorskip("rclpy.serialization")
    msg_mod = pytest.importorskip("aloha_interfaces.msg")
    store = make_typestore()
    ours = bytes(store.serialize_cdr(stage_score(store), "aloha_interfaces/msg/StageScore"))
    theirs = msg_mod.StageScore(task="transfer_cube", episode_step=7, score=62.5, stage="lifted",
                                stages_reached=["touched", "lifted"], success=True, source="sim")
    theirs.header.stamp.sec, theirs.header.stamp.nanosec, theirs.header.frame_id = 12, 345, "sim"
    their_bytes = serialization.serialize_message(theirs)
    assert len(their_bytes) == len(ours)
    assert serialization.deserialize_message(ours, msg_mod.StageScore) == theirs
    assert store.deserialize_cdr(their_bytes, "aloha_interfaces/msg/StageScore") == stage_score(store)


def test_unknown_distro_and_missing_definitions_are_explained(tmp_path):
    with pytest.raises(TypestoreError, match="known"):
        distro_store("rolling-2099")
    with pytest.raises(TypestoreError, match="no .msg"):
        interface_types(tmp_path)
    (tmp_path / "action").mkdir()
    (tmp_path / "action" / "Bad.action").write_text("int32 a\n---\nint32 b\n")
    with pytest.raises(TypestoreError, match="expected 3"):
        interface_types(tmp_path)


def test_plain_bag_modules_never_import_rclpy():
    code = ("import sys; import rollout_recorder.bags, rollout_recorder.playback, rollout_recorder.typestore, "
            "rollout_recorder.cli; bad = [m for m in ('rclpy', 'rollout_recorder.bag_ros') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
