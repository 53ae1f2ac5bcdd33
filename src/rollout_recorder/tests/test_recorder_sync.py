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


def test_a_lockstep_reset_behind_stale_messages_starts_the_episode_over_on_the_new_clock():
    """Measured: the previous episode's last messages (sim time ~8 s) reached a new recording first; every state of
    the new episode (from 0 s) then looked older, and the rollout was recorded as 1-7 rows out of 400."""
    sync = TickSynchronizer(["a"], P)
    rows = []

    def tick(s, v):
        out = sync.add_state(s, np.full(14, v))
        out += sync.add_frame("a", s, img(v % 256))
        out += sync.add_command(s, np.full(14, -v))
        return out

    for t in range(3):  # the previous episode's tail
        rows += tick(8.0 + t * P, 1000 + t)
    stale_frame_s = 8.0 + 3 * P  # still in flight when the new clock starts
    for t in range(100):
        rows += tick(t * P, t)
        if t == 1:
            rows += sync.add_frame("a", stale_frame_s, img(255))
            rows += sync.add_command(stale_frame_s, np.full(14, 999.0))
    rows += sync.flush()
    new = [r for r in rows if r.stamp_s < 5.0]
    assert sync.restarts == 1
    assert len(new) == 100 and [int(r.qpos[0]) for r in new] == list(range(100))
    assert all(r.images["a"] is not None and int(r.images["a"][0, 0, 0]) == int(r.qpos[0]) for r in new)
    assert all(r.commanded and int(r.action[0]) == -int(r.qpos[0]) for r in new)
    assert len(rows) - len(new) <= 2  # at most the stale ticks released before the reset showed
    assert sync.camera_rates_hz(100 * P)["a"] == 50.0  # the rate counts the new clock's frames only


def test_the_next_episodes_reset_arriving_before_the_recording_stops_is_ignored():
    """Measured after the fix above: a recording stopped late took in the next episode's reset (clock back to 0);
    starting over there made a 478-row episode's last row the next episode's first."""
    sync = TickSynchronizer(["a"], P)
    rows = []
    for t in range(100):
        rows += sync.add_state(t * P, np.full(14, t))
        rows += sync.add_frame("a", t * P, img(t))
        rows += sync.add_command(t * P, np.full(14, -t))
    for t in range(3):  # the next episode, before the stop
        rows += sync.add_state(t * P, np.full(14, 500 + t))
        rows += sync.add_frame("a", t * P, img(200))
    rows += sync.flush()
    assert sync.restarts == 0
    assert [int(r.qpos[0]) for r in rows] == list(range(100))
