"""The scoring page's record buttons (FastAPI TestClient, no ROS): start / stop / discard go to the recorder through
the bridge, refusals come back as errors naming the reason, and the page works without any recorder."""

import importlib.util
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rollout_recorder import scoring_app
from rollout_recorder.demo_session import RecordAnswer, RecorderUnavailable
from rollout_recorder.scoring_app import RecorderBridge, create_app, load_task_stages

TASKS_YAML = Path(__file__).resolve().parents[3] / "config" / "tasks.yaml"
LOCAL = "http://127.0.0.1:8765"


class FakeRecorder:
    """Stands in for the RecordEpisode service: records the calls, answers like the recorder node."""

    available, reason = True, ""

    def __init__(self):
        self.calls = []
        self.recording = False
        self.refuse = ""
        self.unreachable = False

    def call(self, command, **fields):
        self.calls.append((command, fields))
        if self.unreachable:
            raise RecorderUnavailable("no recorder serves /aloha/record_episode")
        if self.refuse:
            return RecordAnswer(success=False, message=self.refuse, recording=self.recording)
        if command == "start":
            self.recording = True
            return RecordAnswer(True, "recording", True, "/data/demos/episode_4.hdf5.partial", task=fields["task"])
        if command in ("stop", "discard"):
            self.recording = False
            path = "/data/demos/episode_4.hdf5" + ("" if command == "stop" else ".partial")
            return RecordAnswer(True, f"{command} episode_4", False, path, steps=120, duration_s=2.4)
        return RecordAnswer(True, "status", self.recording, "/data/demos/episode_4.hdf5.partial" if self.recording
                            else "", steps=57, camera_rates_hz={"cam_high": 49.0}, min_camera_rate_hz=40.0)


def client(tmp_path, recorder):
    app = create_app(tmp_path, tasks=load_task_stages(TASKS_YAML), recorder=recorder,
                     allowed_hosts=list(scoring_app.LOOPBACK_NAMES))
    return TestClient(app, base_url=LOCAL)


def test_start_stop_and_discard_reach_the_recorder(tmp_path):
    recorder = FakeRecorder()
    page = client(tmp_path, recorder)
    assert page.get("/api/record").json()["recording"] is False
    started = page.post("/api/record", json={"command": "start", "task": "transfer_cube"})
    assert started.status_code == 200, started.text
    assert started.json()["episode"] == "episode_4.hdf5.partial"
    command, fields = recorder.calls[-1]
    assert command == "start" and fields["task"] == "transfer_cube" and fields["source"] == "scoring_page"
    # the instruction text of tasks.yaml goes with the episode, as record_demos sends it
    assert fields["task_description"].startswith("Pick up the red cube")
    status = page.get("/api/record").json()
    assert status["reachable"] and status["recording"] and status["steps"] == 57
    stopped = page.post("/api/record", json={"command": "stop"})
    assert stopped.status_code == 200 and stopped.json()["episode_path"].endswith("episode_4.hdf5")
    assert page.post("/api/record", json={"command": "start", "task": "fold the towel"}).status_code == 200
    assert recorder.calls[-1][1]["task_description"] == "fold the towel"  # a task of one's own: its text
    assert page.post("/api/record", json={"command": "discard"}).json()["message"] == "discard episode_4"


def test_refusals_are_errors_that_say_why(tmp_path):
    recorder = FakeRecorder()
    page = client(tmp_path, recorder)
    recorder.refuse = "already recording episode_3.hdf5.partial (started by teleop): stop or discard it first"
    answer = page.post("/api/record", json={"command": "start", "task": "insertion"})
    assert answer.status_code == 409 and "already recording episode_3" in answer.json()["detail"]
    recorder.refuse = ""
    assert page.post("/api/record", json={"command": "start"}).status_code == 422  # no task chosen
    assert page.post("/api/record", json={"command": "start", "task": "a\x00b"}).status_code == 422
    assert page.post("/api/record", json={"command": "erase"}).status_code == 422
    assert page.post("/api/record", json={"command": "stop", "extra": 1}).status_code == 422
    calls = len(recorder.calls)
    recorder.unreachable = True
    assert page.get("/api/record").json() == {"available": True, "reachable": False,
                                              "reason": "no recorder serves /aloha/record_episode"}
    answer = page.post("/api/record", json={"command": "stop"})
    assert answer.status_code == 503 and "no recorder serves" in answer.json()["detail"]
    assert len(recorder.calls) == calls + 2


def test_the_page_works_without_a_recorder(tmp_path):
    page = client(tmp_path, None)
    status = page.get("/api/record").json()
    assert status["available"] is False and "without ROS" in status["reason"]
    answer = page.post("/api/record", json={"command": "start", "task": "transfer_cube"})
    assert answer.status_code == 503
    assert page.get("/").status_code == 200 and page.get("/api/episodes").status_code == 200
    assert 'id="rec-start"' in page.get("/").text


def test_the_bridge_says_so_where_rclpy_is_missing(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "rclpy" else real(name, *a))
    bridge = RecorderBridge()
    assert not bridge.available and "rclpy" in bridge.reason
    with pytest.raises(RecorderUnavailable, match="not installed"):
        bridge.call("status")
