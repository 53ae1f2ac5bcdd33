"""Teleop demo recording across processes: simulated leader -> teleop -> simulated follower -> recorder -> a finished
episode that the trainer's dataset reads; the RecordEpisode service starts, stops and discards; record_demos records
from a pseudo-terminal (what SSH gives it) and the scoring page's record buttons reach the same service."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from ros_harness import package_executable, wait_until

pytestmark = [pytest.mark.ros, pytest.mark.slow]

SMALL = {"image_height": 96, "image_width": 128}
LEADER_STEPS = 100  # 2 s of the scripted transfer: the left arm turns its wrist, the right one reaches for the cube
_domains = iter(range(10_000))


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    """Domains 150-199: apart from the 1-100 the other ROS tests take, so this long test can run beside them."""
    domain = 150 + (os.getpid() * 7 + next(_domains)) % 50
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    return domain


def call(client, command, timeout_s=120.0, **fields):
    from aloha_interfaces.srv import RecordEpisode

    future = client.call_async(RecordEpisode.Request(command=command, **fields))
    assert wait_until(future.done, timeout_s), f"no answer to RecordEpisode command {command}"
    return future.result()


class Terminal:
    """A program on a pseudo-terminal, as over SSH: keys typed into it, its screen read back."""

    def __init__(self, argv: list[str]):
        master, slave = os.openpty()
        self.master = master
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
                                     env={**os.environ, "PYTHONUNBUFFERED": "1"})
        os.close(slave)
        self.screen = b""
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 4096)
            except OSError:  # the program ended: the terminal is gone
                return
            if not data:
                return
            self.screen += data

    @property
    def text(self) -> str:
        return self.screen.decode(errors="replace")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.reader.join(timeout=2.0)
        os.close(self.master)


def test_leader_teleop_sim_recorder_to_a_training_episode(start_node, test_node, tmp_path):
    from diagnostic_msgs.msg import DiagnosticArray

    from aloha_contract import load_contract
    from aloha_interfaces.srv import RecordEpisode
    from rollout_recorder.episode_file import list_episode_files, read_act_episode

    contract = load_contract()
    description = "Pick up the red cube with the right arm and hand it over to the left arm."
    teleop_status = []
    test_node.create_subscription(DiagnosticArray, contract.topic("diagnostics"),
                                  lambda msg: teleop_status.extend(s for s in msg.status if s.name == "teleop"), 10)
    sim = start_node("aloha_sim", "sim_node", params={**SMALL, "mode": "realtime", "peer_check_s": 0.5})
    recorder = start_node("rollout_recorder", "recorder_node", params={
        "out_dir": str(tmp_path), "sim": True, "reserve_mb": 1, "auto_record_policy": False, **SMALL})
    teleop = start_node("aloha_bringup", "teleop", params={"gripper_calibration": "sim"})
    leader = start_node("aloha_sim", "sim_leader", params={"max_steps": LEADER_STEPS, "settle_s": 0.3})
    assert sim.wait_for_output("ALOHA sim ready", 90), sim.output
    assert recorder.wait_for_output("recorder ready", 60), recorder.output
    assert teleop.wait_for_output("following the leaders", 90), teleop.output + leader.output
    assert leader.wait_for_output("waiting for a recording to start", 90), leader.output
    client = test_node.create_client(RecordEpisode, contract.service("record_episode"))
    assert client.wait_for_service(timeout_sec=30)

    # start: the simulated operator sees the recording and demonstrates; stop: a finished episode
    started = call(client, RecordEpisode.Request.START, task="transfer_cube", task_description=description,
                   source="pytest")
    assert started.success and started.recording, started.message
    assert started.episode_path == str(tmp_path / "episode_0.hdf5.partial") and Path(started.episode_path).exists()
    assert leader.wait_for_output("demonstration 1 seed 0", 90), leader.output
    status = call(client, RecordEpisode.Request.STATUS)
    assert status.recording and status.steps > 0 and list(status.camera_names) == contract.cameras
    assert len(status.camera_rate_hz) == len(contract.cameras) and status.min_camera_rate_hz > 0
    again = call(client, RecordEpisode.Request.START, task="transfer_cube")
    assert not again.success and "already recording episode_0" in again.message
    stopped = call(client, RecordEpisode.Request.STOP)
    assert stopped.success and not stopped.recording, stopped.message
    first = tmp_path / "episode_0.hdf5"
    assert stopped.episode_path == str(first) and first.exists()
    assert not Path(started.episode_path).exists()
    assert stopped.steps >= 40, f"{stopped.steps} steps: {recorder.output[-2000:]}"

    episode = read_act_episode(first, load_images=False)
    assert episode.attrs["complete"] and episode.attrs["source"] == "pytest"
    assert episode.attrs["task"] == "transfer_cube" and episode.attrs["task_description"] == description
    arm = [i for i in range(len(contract.joint_names)) if i not in contract.gripper_indices]
    action, qpos = episode.action[:, arm], episode.qpos[:, arm]
    # the recorded commands are the leaders' demonstration, and the follower went with them
    assert np.abs(action - action[0]).max() > 0.3, "the commands never moved: teleop did not follow the leader"
    assert np.abs(qpos - qpos[0]).max() > 0.3, "the follower never moved"
    assert np.median(np.abs(qpos - action).max(axis=1)) < 0.15, "the follower did not track the commands"

    # discard: the partial file goes, and its number is used again by the next episode
    assert wait_until(lambda: leader.output.count("waiting for a recording to start") >= 2, 90), leader.output
    started = call(client, RecordEpisode.Request.START, task="transfer_cube", source="pytest")
    assert started.success and started.episode_path.endswith("episode_1.hdf5.partial"), started.message
    discarded = call(client, RecordEpisode.Request.DISCARD)
    assert discarded.success and discarded.episode_path == started.episode_path, discarded.message
    assert not Path(started.episode_path).exists()
    assert not call(client, RecordEpisode.Request.STATUS).recording
    assert not call(client, RecordEpisode.Request.DISCARD).success  # nothing left to discard
    assert list_episode_files(tmp_path) == [first]

    # record_demos from a terminal: space starts after the countdown, the episode stops at its length
    assert wait_until(lambda: leader.output.count("waiting for a recording to start") >= 3, 90), leader.output
    terminal = Terminal([package_executable("rollout_recorder", "record_demos"), "--task", "transfer_cube",
                         "--episodes", "1", "--episode-s", "1", "--countdown-s", "0.5"])
    try:
        assert wait_until(lambda: "press space to start" in terminal.text, 60), terminal.text
        terminal.type(" ")
        assert terminal.proc.wait(timeout=90) == 0, terminal.text
        assert wait_until(lambda: "saved 1 episode(s)" in terminal.text, 5), terminal.text
    finally:
        terminal.close()
    screen = terminal.text
    for shown in ("episode 1/1 · transfer_cube", "starting in", "● recording episode_1.hdf5.partial", "step",
                  "saved episode_1.hdf5"):
        assert shown in screen, (shown, screen)
    demo = tmp_path / "episode_1.hdf5"
    assert demo.exists() and read_act_episode(demo, load_images=False).attrs["source"] == "teleop"

    # the scoring page's record buttons: the same service through the page's ROS bridge
    from fastapi.testclient import TestClient

    from rollout_recorder.scoring_app import RecorderBridge, create_app

    bridge = RecorderBridge()
    try:
        page = TestClient(create_app(tmp_path, recorder=bridge), base_url="http://127.0.0.1:8765")
        status = page.get("/api/record").json()
        assert status["reachable"] and status["recording"] is False, status
        answer = page.post("/api/record", json={"command": "start", "task": "transfer_cube"})
        assert answer.status_code == 200 and answer.json()["episode"] == "episode_2.hdf5.partial", answer.text
        answer = page.post("/api/record", json={"command": "discard"})
        assert answer.status_code == 200 and not (tmp_path / "episode_2.hdf5.partial").exists(), answer.text
    finally:
        bridge.close()

    assert any(s.level == s.OK and s.message == "following the leaders" for s in teleop_status), teleop_status[-3:]
    assert_the_trainer_reads(tmp_path, [first, demo], description)


def assert_the_trainer_reads(folder: Path, expected: list[Path], description: str) -> None:
    """cosmos_policy's dataset lists exactly the finished episodes and builds training items from them."""
    from cosmos_policy.config import NetworkConfig, load_layout
    from cosmos_policy.data.datasets import (
        EpisodeDataset,
        SampleSpec,
        compute_dataset_statistics,
        find_episode_files,
        load_episodes,
    )
    from cosmos_policy.data.statistics import statistics_from_dict
    from cosmos_policy.data.text import build_text_cache

    paths = find_episode_files(folder, split=None)
    assert paths == expected
    spec = SampleSpec.from_configs(load_layout("aloha"), NetworkConfig.preset_config("tiny"))
    demos = load_episodes(paths, spec, is_demo=True)
    assert {d.task for d in demos} == {description}
    cache = build_text_cache({d.task for d in demos}, spec.text_dim, max_length=spec.text_max_tokens)
    dataset = EpisodeDataset(demos, spec, statistics_from_dict(compute_dataset_statistics(paths)), cache)
    assert len(dataset) == sum(d.num_steps for d in demos)
    item = dataset[0]
    assert tuple(item["actions"].shape) == (spec.action_chunk, spec.action_dim)
    assert tuple(item["images"].shape) == (len(spec.cameras), 3, *spec.image_hw)
