"""Stamp synchronisation: one row per tick, dropped frames as None, the command of the tick."""

import numpy as np

from rollout_recorder.sync import TickSynchronizer, low_rate_cameras

P = 0.02


def img(v):
    return np.full((2, 2, 3), v, np.uint8)


def test_rows_follow_ticks_and_mark_dropped_frames():
    sync = TickSynchronizer(["a", "b"], P)
    rows = []
    for t in range(6):
        s = 1.0 + t * P
        rows += sync.add_state(s, np.full(14, t))
        rows += sync.add_frame("a", s + 0.001, img(t))
        if t != 3:  # camera b misses tick 3
            rows += sync.add_frame("b", s - 0.002, img(100 + t))
        rows += sync.add_command(s + 0.005, np.full(14, -t))
    rows += sync.flush()
    assert [int(r.qpos[0]) for r in rows] == list(range(6))
    assert [r.images["b"] is None for r in rows] == [False, False, False, True, False, False]
    assert all(int(r.images["a"][0, 0, 0]) == t for t, r in enumerate(rows))
    assert [int(r.action[0]) for r in rows] == [0, -1, -2, -3, -4, -5] and all(r.commanded for r in rows)


def test_missing_command_holds_and_state_alone_is_released():
    sync = TickSynchronizer(["a"], P, max_wait_s=0.05)
    rows = sync.add_state(0.0, np.zeros(14))
    rows += sync.add_command(0.0, np.ones(14))
    for t in range(1, 5):  # camera silent: rows still come once the state is max_wait ahead
        rows += sync.add_state(t * P, np.full(14, t))
    assert [r.stamp_s for r in rows] == [0.0, P] and all(r.images["a"] is None for r in rows)
    assert rows[0].commanded and not rows[1].commanded
    np.testing.assert_array_equal(rows[1].action, np.ones(14))  # the command in force is held


def test_no_command_ever_records_the_measured_position_and_rates():
    sync = TickSynchronizer(["a"], P)
    rows = []
    for t in range(4):
        rows += sync.add_state(t * P, np.full(14, t))
        if t % 2 == 0:
            rows += sync.add_frame("a", t * P, img(t))
    rows += sync.flush()
    assert [int(r.action[0]) for r in rows] == [0, 1, 2, 3]
    rates = sync.camera_rates_hz(4 * P)
    assert rates == {"a": 25.0} and low_rate_cameras(rates, 40.0) == ["a"]
