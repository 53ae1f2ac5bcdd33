"""Demo recording without ROS: the operator's keys, countdown, episode counter, auto-stop, re-record and discard
(DemoSession), the raw terminal keys over a pseudo-terminal (what SSH gives), and the live camera-rate monitor."""

import os
import subprocess
import sys

import pytest

from rollout_recorder.camera_rate import LiveCameraRates
from rollout_recorder.demo_session import (
    COUNTDOWN,
    DONE,
    IDLE,
    RECORDING,
    DemoSession,
    RecordAnswer,
    key_actions,
    rate_warning,
    task_info,
)
from rollout_recorder.record_demos import TerminalKeys, build_parser


def ok(path="", **kw):
    return RecordAnswer(success=True, message="ok", episode_path=path, **kw)


def test_keys_that_work_over_ssh():
    assert key_actions(" ") == ["toggle"] and key_actions("\r") == ["toggle"] and key_actions("\n") == ["toggle"]
    assert key_actions("r") == ["rerecord"] and key_actions("d") == ["discard"] and key_actions("q") == ["quit"]
    assert key_actions("x") == [] and key_actions("R") == []
    assert key_actions("\x1b[D") == []  # the left arrow: not a 'D'iscard
    assert key_actions("dq") == ["discard", "quit"]  # typed faster than one poll


def test_countdown_then_start_then_stop_at_the_episode_length():
    s = DemoSession(episodes=2, countdown_s=3.0, max_steps=100)
    assert s.counter() == "episode 1/2" and s.state == IDLE
    assert s.on_key("toggle", 10.0) == [] and s.state == COUNTDOWN
    assert s.countdown_left_s(11.0) == pytest.approx(2.0)
    assert s.on_time(12.9) == []
    assert s.on_time(13.0) == ["start"]
    s.on_answer("start", ok("/d/episode_0.hdf5.partial", recording=True), 13.0)
    assert s.state == RECORDING
    assert s.on_time(14.0, steps=99) == []
    assert s.on_time(15.0, steps=100) == ["stop"]
    s.on_answer("stop", ok("/d/episode_0.hdf5"), 15.0)
    assert s.state == IDLE and s.saved == ["/d/episode_0.hdf5"] and s.counter() == "episode 2/2"
    s.on_key("toggle", 20.0)
    s.on_answer("start", ok(recording=True), 23.0)
    assert s.on_key("toggle", 24.0) == ["stop"]  # space stops before the length
    s.on_answer("stop", ok("/d/episode_1.hdf5"), 24.0)
    assert s.state == DONE and len(s.saved) == 2


def test_rerecord_discards_and_counts_down_again_without_counting_the_episode():
    s = DemoSession(countdown_s=2.0)
    s.on_key("toggle", 0.0)
    s.on_answer("start", ok(recording=True), 2.0)
    assert s.on_key("rerecord", 5.0) == ["discard"]
    s.on_answer("discard", ok(), 5.0)
    assert s.state == COUNTDOWN and s.countdown_left_s(5.0) == pytest.approx(2.0)
    assert s.saved == [] and s.discarded == 1 and s.counter() == "episode 1"
    assert s.on_time(7.0) == ["start"]


def test_discard_goes_back_to_idle_and_quit_saves_a_running_episode():
    s = DemoSession(countdown_s=0.0)
    s.on_key("toggle", 0.0)
    s.on_answer("start", ok(recording=True), 0.0)
    assert s.on_key("discard", 1.0) == ["discard"]
    s.on_answer("discard", ok(), 1.0)
    assert s.state == IDLE and s.discarded == 1
    s.on_key("toggle", 2.0)
    s.on_answer("start", ok(recording=True), 2.0)
    assert s.on_key("quit", 3.0) == ["stop"]  # a saved episode can be deleted later; a discarded one is gone
    s.on_answer("stop", ok("/d/episode_1.hdf5"), 3.0)
    assert s.state == DONE and s.saved == ["/d/episode_1.hdf5"]
    idle = DemoSession()
    assert idle.on_key("quit", 0.0) == [] and idle.state == DONE


def test_a_refused_start_and_an_episode_ended_elsewhere_return_control():
    s = DemoSession(countdown_s=0.0)
    s.on_key("toggle", 0.0)
    s.on_answer("start", RecordAnswer(success=False, message="no disk space"), 0.0)
    assert s.state == IDLE
    s.on_key("toggle", 1.0)
    s.on_answer("start", ok(recording=True), 1.0)
    assert s.on_status(ok(recording=True)) is None and s.state == RECORDING
    assert "outside record_demos" in s.on_status(ok(recording=False)) and s.state == IDLE
    with pytest.raises(ValueError, match="episodes=-1"):
        DemoSession(episodes=-1)


def test_the_camera_rate_warning_names_the_camera_and_the_threshold():
    answer = RecordAnswer(success=True, message="", recording=True, camera_rates_hz={"cam_high": 50.0,
                          "cam_left_wrist": 23.4}, min_camera_rate_hz=40.0, low_rate_cameras=["cam_left_wrist"])
    text = rate_warning(answer)
    assert "cam_left_wrist 23.4 Hz" in text and "below 40 Hz" in text and "cam_high" not in text
    answer.low_rate_cameras = []
    assert rate_warning(answer) is None


def test_task_from_tasks_yaml_or_as_its_own_text():
    cube = task_info("transfer_cube")
    assert cube.description.startswith("Pick up the red cube") and cube.episode_steps == 400
    towel = task_info("fold the towel")
    assert towel.description == "fold the towel" and towel.episode_steps is None


def test_live_camera_rate_falls_when_a_camera_stops():
    live = LiveCameraRates(["cam_high", "cam_left_wrist"], window_s=1.0)
    for i in range(80):  # 1.6 s at 50 Hz; the wrist camera stops after 0.4 s
        t = i * 0.02
        live.add_time(t)
        live.add_frame("cam_high", t)
        if t < 0.4:
            live.add_frame("cam_left_wrist", t)
        if i == 10:
            assert not live.settled and live.low(40.0) == []  # a start is not a fault
    rates = live.rates_hz()
    assert live.settled and rates["cam_high"] == pytest.approx(50.0, abs=1.5) and rates["cam_left_wrist"] == 0.0
    assert live.low(40.0) == ["cam_left_wrist"]


def test_keys_arrive_one_by_one_from_a_pseudo_terminal_without_echo():
    """Over SSH a program gets a pseudo-terminal: keys must arrive without enter, not echoed, and the terminal
    must come back as it was."""
    import termios

    master, slave = os.openpty()
    try:
        with open(slave, closefd=False) as stream:
            before = termios.tcgetattr(slave)
            with TerminalKeys(stream) as keys:
                assert keys.read(0.05) == ""
                os.write(master, b" ")  # no newline: a line-buffered read would wait for ever
                assert keys.read(2.0) == " "
                attrs = termios.tcgetattr(slave)
                assert not attrs[3] & termios.ECHO and not attrs[3] & termios.ICANON
            assert termios.tcgetattr(slave) == before
    finally:
        os.close(master)
        os.close(slave)


def test_record_demos_help_and_parser_need_no_ros():
    args = build_parser().parse_args(["--task", "transfer_cube", "--episodes", "3"])
    assert args.episodes == 3 and args.episode_s is None and args.countdown_s == 3.0
    code = ("import sys; import rollout_recorder.record_demos as m; m.build_parser(); "
            "assert 'rclpy' not in sys.modules, 'rclpy imported'")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0


def test_a_new_record_client_waits_out_discovery_then_answers_an_absent_recorder_quickly():
    """Measured in CI under load: the scoring page's bridge, created just before its first status call, gave
    up after 2 s while discovery took longer, and reported a running recorder as absent."""
    from rollout_recorder.record_client import DISCOVERY_S, SERVICE_WAIT_S, service_wait_s

    deadline = 100.0 + DISCOVERY_S  # a client created at t = 100 s
    assert service_wait_s(100.0, deadline, timeout_s=10.0) == pytest.approx(DISCOVERY_S)
    assert service_wait_s(100.0, deadline, timeout_s=5.0) == pytest.approx(5.0)  # never past the call's timeout
    assert service_wait_s(100.0 + DISCOVERY_S - 1.0, deadline, timeout_s=10.0) == pytest.approx(SERVICE_WAIT_S)
    assert service_wait_s(500.0, deadline, timeout_s=90.0) == pytest.approx(SERVICE_WAIT_S)
    assert DISCOVERY_S > 3.1 > SERVICE_WAIT_S
