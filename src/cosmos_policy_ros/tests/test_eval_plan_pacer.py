"""aloha_sim.plan_streamer.PlanPacer: which command of a plan goes out on a tick or a lockstep observation."""

from __future__ import annotations

import numpy as np
import pytest

from aloha_sim.plan_streamer import PlanPacer

PERIOD_S = 0.02
MS = 1_000_000


def plan(steps: int) -> np.ndarray:
    return np.arange(steps, dtype=np.float64)[:, None] * np.ones((1, 14))


def test_realtime_sends_one_step_per_tick_then_nothing():
    pacer = PlanPacer("realtime", PERIOD_S)
    assert pacer.on_tick() is None and pacer.done  # no plan yet
    assert pacer.start(plan(3)) is None
    sent = [pacer.on_tick() for _ in range(5)]
    assert [s[0] for s in sent[:3]] == [0.0, 1.0, 2.0] and sent[3:] == [None, None]
    assert pacer.done and pacer.step == 3
    assert pacer.on_observation(20 * MS) is None  # realtime ignores observations


def test_lockstep_sends_step_0_at_t0_then_answers_each_new_observation():
    pacer = PlanPacer("lockstep", PERIOD_S)
    command, stamp = pacer.start(plan(3))
    assert command[0] == 0.0 and stamp == 0
    assert pacer.on_observation(0) is None  # the reset's own observation at t = 0
    command, stamp = pacer.on_observation(20 * MS)
    assert command[0] == 1.0 and stamp == 20 * MS
    assert pacer.on_observation(20 * MS) is None  # the same observation twice: answered once
    command, stamp = pacer.on_observation(40 * MS - 1)  # float rounding of the sim time
    assert command[0] == 2.0 and stamp == 40 * MS - 1
    assert pacer.done and pacer.on_observation(60 * MS) is None
    assert pacer.on_tick() is None


def test_lockstep_ignores_observations_of_a_previous_episode():
    pacer = PlanPacer("lockstep", PERIOD_S)
    pacer.start(plan(5))
    assert pacer.on_observation(8_000 * MS) is None  # t = 8 s: the last episode's final state, still queued
    assert pacer.on_observation(20 * MS)[0][0] == 1.0
    assert pacer.pending[1] == 20 * MS  # what a resend would repeat


def test_restart_and_stop():
    pacer = PlanPacer("lockstep", PERIOD_S)
    pacer.start(plan(2))
    pacer.stop()
    assert pacer.done and pacer.on_observation(20 * MS) is None
    command, stamp = pacer.start(plan(2))
    assert stamp == 0 and pacer.total == 2


def test_bad_input():
    with pytest.raises(ValueError, match="clock mode 'fast'"):
        PlanPacer("fast", PERIOD_S)
    with pytest.raises(ValueError, match="plan has shape"):
        PlanPacer("realtime", PERIOD_S).start(np.zeros((0, 14)))
