"""Replay timing and chunk scoring (plain functions behind `replay` and `episode-to-topics`)."""

from __future__ import annotations

import numpy as np
import pytest

from rollout_recorder.playback import (
    ChunkScorer,
    PlaybackClock,
    PlaybackError,
    chunk_from_multiarray,
    episode_stamps_ns,
    rebase_ns,
    with_clock_ticks,
)

MS = 1_000_000


def test_clock_ticks_precede_the_messages_they_cover_and_continue_through_gaps():
    msgs = [("a", 100 * MS, b"1"), ("b", 105 * MS, b"2"), ("a", 140 * MS, b"3")]
    events = list(with_clock_ticks(iter(msgs), 10 * MS))
    kinds = [(e.bag_time_ns // MS, e.topic) for e in events]
    assert kinds == [(100, None), (100, "a"), (105, "b"), (110, None), (120, None), (130, None), (140, None),
                     (140, "a")]
    assert [e.data for e in events if e.topic] == [b"1", b"2", b"3"]
    times = [e.bag_time_ns for e in events]
    assert times == sorted(times)
    assert list(with_clock_ticks(iter([]), MS)) == []
    with pytest.raises(PlaybackError):
        list(with_clock_ticks(iter(msgs), 0))


def test_playback_clock_scales_bag_time_by_the_rate():
    clock = PlaybackClock(2.0, 1_000 * MS, 50.0)
    assert clock.due_s(1_000 * MS) == 50.0 and clock.due_s(2_000 * MS) == pytest.approx(50.5)
    assert PlaybackClock(0.5, 0, 0.0).due_s(1_000 * MS) == pytest.approx(2.0)
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(PlaybackError, match="rate"):
            PlaybackClock(bad, 0, 0.0)


def test_episode_stamps_use_the_recorded_ones_else_the_control_period():
    recorded = np.array([5, 25, 45], np.int64) * MS
    np.testing.assert_array_equal(episode_stamps_ns(recorded, 3, 0.02), recorded)
    np.testing.assert_array_equal(episode_stamps_ns(None, 3, 0.02), [0, 20 * MS, 40 * MS])
    np.testing.assert_array_equal(episode_stamps_ns(np.zeros(3, np.int64), 3, 0.02), [0, 20 * MS, 40 * MS])
    assert rebase_ns(45 * MS, 5 * MS, 10**18, 1.0) == 10**18 + 40 * MS
    assert rebase_ns(45 * MS, 5 * MS, 10**18, 0.5) == 10**18 + 80 * MS  # stretched: stays consistent with wall time


def test_chunk_layout_is_read_from_the_message():
    data = np.arange(6, dtype=np.float32)
    np.testing.assert_array_equal(chunk_from_multiarray(data, [("steps", 3), ("joints", 2)], 14), data.reshape(3, 2))
    np.testing.assert_array_equal(chunk_from_multiarray(np.zeros(28), [], 14), np.zeros((2, 14)))
    with pytest.raises(PlaybackError, match="layout"):
        chunk_from_multiarray(data, [("steps", 4), ("joints", 2)], 14)


def test_chunk_l1_against_the_recorded_actions_and_best_alignment():
    rng = np.random.default_rng(0)
    actions = np.cumsum(rng.normal(size=(100, 14)), axis=0)
    scorer = ChunkScorer(actions, lookback_steps=10, joint_names=[f"j{i}" for i in range(14)])
    exact = scorer.add(actions[30:80] + 0.1, on_air_step=30)
    assert exact.l1 == pytest.approx(0.1) and exact.best_step == 30 and exact.rows == 50
    late = scorer.add(actions[20:70].copy(), on_air_step=26)  # computed from step 20, arrived at step 26
    assert late.best_step == 20 and late.best_l1 == pytest.approx(0.0) and late.l1 > 0.5
    tail = scorer.add(actions[90:100].copy() + 0.2, on_air_step=90)  # a chunk longer than what is left
    assert tail.rows == 10 and tail.l1 == pytest.approx(0.2)
    assert scorer.add(np.zeros((5, 3)), 10) is None and scorer.add(np.zeros((5, 14)), -1) is None
    report = scorer.report()
    assert report["summary"]["chunks"] == 3 and report["summary"]["ignored"] == 2
    assert report["summary"]["l1_mean"] == pytest.approx(np.mean([0.1, late.l1, 0.2]))
    assert set(report["summary"]["per_joint_l1_mean"]) == {f"j{i}" for i in range(14)}
    assert [c["on_air_step"] for c in report["chunks"]] == [30, 26, 90]
