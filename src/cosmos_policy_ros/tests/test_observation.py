"""Observation assembly without ROS: pairing by stamps, staleness, wrong sizes and encodings."""

import numpy as np
import pytest

from cosmos_policy_ros.observation import ObservationAssembler, ObservationError

CAMS = ["cam_high", "cam_left_wrist"]


def assembler(**kw):
    args = dict(expected_hw=(4, 6), joint_stale_s=0.1, camera_stale_s=0.25, sync_tolerance_s=0.03)
    args.update(kw)
    return ObservationAssembler(CAMS, **args)


def frame(value, h=4, w=6):
    return np.full((h, w, 3), value, np.uint8).tobytes()


def feed(a, t, images=True, value=0):
    a.add_joint_state(np.full(14, t), t, t)
    if images:
        for cam in CAMS:
            a.add_image(cam, 4, 6, "rgb8", frame(value), t, t)


def test_frames_pair_with_the_nearest_joint_state():
    a = assembler()
    for k in range(10):
        a.add_joint_state(np.full(14, float(k)), k * 0.02, k * 0.02)
    for cam in CAMS:
        a.add_image(cam, 4, 6, "rgb8", frame(7), 0.101, 0.15)
    obs = a.snapshot(0.19)
    assert obs.stamp_s == pytest.approx(0.10) and obs.qpos[0] == 5.0
    assert obs.images["cam_high"].shape == (4, 6, 3) and obs.images["cam_high"][0, 0, 0] == 7


def test_latest_joint_state_mode_waits_for_this_steps_frames():
    a = assembler(sync_tolerance_s=1e-6)
    feed(a, 0.0)
    a.add_joint_state(np.ones(14), 0.02, 0.02)
    assert a.snapshot(0.02).stamp_s == 0.0  # nearest pairing takes the older, complete observation
    with pytest.raises(ObservationError) as err:
        a.snapshot(0.02, latest_joint_state=True)
    assert err.value.reason == "not_ready"


def test_stale_camera_names_the_camera():
    a = assembler()
    feed(a, 0.0)
    a.add_joint_state(np.zeros(14), 0.3, 0.3)
    a.add_image("cam_high", 4, 6, "rgb8", frame(0), 0.3, 0.3)
    with pytest.raises(ObservationError) as err:
        a.snapshot(0.31)
    assert err.value.reason == "stale" and "cam_left_wrist" in err.value.detail and "0.31 s" in err.value.detail


def test_stale_joint_state():
    a = assembler()
    feed(a, 0.0)
    with pytest.raises(ObservationError) as err:
        a.check_fresh(0.2)
    assert err.value.reason == "stale" and "joint_states" in err.value.detail


def test_receipt_time_staleness_for_lockstep():
    a = assembler()
    a.add_joint_state(np.zeros(14), 5.0, received_s=100.0)  # sim time 5 s, received at wall 100 s
    for cam in CAMS:
        a.add_image(cam, 4, 6, "rgb8", frame(0), 5.0, 100.0)
    a.snapshot(100.05, use_receipt_time=True)
    with pytest.raises(ObservationError):
        a.snapshot(100.5, use_receipt_time=True)


def test_wrong_size_and_encoding_give_one_clear_error():
    a = assembler()
    feed(a, 0.0)
    a.add_image("cam_left_wrist", 480, 640, "rgb8", frame(0, 480, 640), 0.0, 0.0)
    a.add_image("cam_high", 4, 6, "bgr8", frame(0), 0.0, 0.0)
    with pytest.raises(ObservationError) as err:
        a.snapshot(0.0)
    assert err.value.reason == "bad_input"
    assert err.value.detail.startswith("cam_left_wrist: got 480x640 rgb8, expected 4x6 rgb8")


def test_frames_out_of_sync_are_not_ready():
    a = assembler(sync_tolerance_s=0.01)
    a.add_joint_state(np.zeros(14), 0.0, 0.0)
    a.add_image("cam_high", 4, 6, "rgb8", frame(0), 0.0, 0.0)
    a.add_image("cam_left_wrist", 4, 6, "rgb8", frame(0), 0.05, 0.05)
    a.add_joint_state(np.zeros(14), 0.05, 0.05)
    with pytest.raises(ObservationError) as err:
        a.snapshot(0.06)
    assert err.value.reason == "not_ready" and "ms from the nearest joint state" in err.value.detail


def test_padded_rows_are_cropped():
    a = assembler()
    a.add_joint_state(np.zeros(14), 0.0, 0.0)
    padded = np.zeros((4, 8 * 3), np.uint8)
    padded[:, :18] = 9
    for cam in CAMS:
        a.add_image(cam, 4, 6, "rgb8", padded.tobytes(), 0.0, 0.0, step=24)
    assert (a.snapshot(0.0).images["cam_high"] == 9).all()


def test_non_finite_joint_state_is_bad_input():
    a = assembler()
    a.add_joint_state(np.full(14, np.nan), 0.0, 0.0)
    with pytest.raises(ObservationError) as err:
        a.check_fresh(0.0)
    assert err.value.reason == "bad_input"


def test_a_good_message_clears_its_streams_refusal():
    a = assembler()
    feed(a, 0.0)
    a.add_image("cam_high", 4, 6, "bgr8", frame(0), 0.01, 0.01)
    with pytest.raises(ObservationError):
        a.snapshot(0.02)
    a.add_image("cam_left_wrist", 4, 6, "rgb8", frame(0), 0.02, 0.02)  # another stream: still refused
    with pytest.raises(ObservationError):
        a.snapshot(0.02)
    a.add_image("cam_high", 4, 6, "rgb8", frame(0), 0.02, 0.02)
    assert a.snapshot(0.02).images["cam_high"].shape == (4, 6, 3)


def feed_with_cam_high_stopping_after(a, last_k):
    """Steps 0-9 at 50 Hz (frame value = joint value = step), cam_high only up to step `last_k`."""
    for k in range(10):
        t = k * 0.02
        a.add_joint_state(np.full(14, float(k)), t, t)
        a.add_image("cam_left_wrist", 4, 6, "rgb8", frame(k), t, t)
        if k <= last_k:
            a.add_image("cam_high", 4, 6, "rgb8", frame(k), t, t)


def test_a_camera_lagging_behind_the_others_pairs_with_their_kept_frames():
    # cam_high's newest frame is 4 periods behind cam_left_wrist's: the observation is taken at cam_high's
    # moment, with cam_left_wrist's kept frame and the joint state of that moment (value = step index)
    a = assembler(sync_tolerance_s=0.01)
    feed_with_cam_high_stopping_after(a, 5)
    obs = a.snapshot(0.19)
    assert obs.stamp_s == pytest.approx(0.10) and obs.qpos[0] == 5.0
    assert obs.images["cam_high"][0, 0, 0] == 5 and obs.images["cam_left_wrist"][0, 0, 0] == 5
    assert obs.image_stamps_s == {"cam_high": pytest.approx(0.10), "cam_left_wrist": pytest.approx(0.10)}


def test_a_lag_longer_than_the_kept_frames_is_not_ready():
    a = assembler(sync_tolerance_s=0.01, frame_history=3)
    feed_with_cam_high_stopping_after(a, 2)
    with pytest.raises(ObservationError) as err:
        a.snapshot(0.19)
    assert err.value.reason == "not_ready" and "ms from the nearest joint state" in err.value.detail


def test_frames_from_before_a_clock_jump_back_are_dropped():
    a = assembler()
    feed(a, 5.0, value=1)
    feed(a, 0.0, value=2)  # a simulator reset: its clock starts again
    obs = a.snapshot(0.0)
    assert obs.images["cam_high"][0, 0, 0] == 2 and obs.stamp_s == 0.0
