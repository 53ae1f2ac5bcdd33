"""Chunk scheduling without ROS: alignment to time, prefetch lead, stalls, blending, temporal ensembling."""

import numpy as np
import pytest

from cosmos_policy_ros.chunk_scheduler import Chunk, ChunkScheduler

PERIOD = 0.02


def ramp_chunk(obs_tick, length=50, index=0, latency_s=0.0, offset=0.0):
    """Row i holds the value obs_tick + i (+ offset) in every joint: the commanded value reveals its tick."""
    rows = (obs_tick + np.arange(length, dtype=np.float64) + offset)[:, None].repeat(14, axis=1)
    return Chunk(rows, obs_tick, index, latency_s=latency_s)


def simulate(scheduler, latency_ticks, ticks, length=50):
    """Drive a scheduler whose chunks take `latency_ticks` to compute; return the commanded targets."""
    in_flight = None  # (ready_tick, chunk)
    targets = []
    for tick in range(ticks):
        if in_flight is not None and tick >= in_flight[0]:
            scheduler.on_chunk(in_flight[1], tick)
            in_flight = None
        if scheduler.should_request(tick):
            scheduler.mark_requested(tick)
            in_flight = (tick + latency_ticks, ramp_chunk(tick, length, latency_s=latency_ticks * PERIOD))
        targets.append(scheduler.action_for(tick))
    return targets


def test_late_chunk_is_aligned_to_the_current_tick():
    s = ChunkScheduler(10, PERIOD)
    s.on_chunk(ramp_chunk(obs_tick=0), 0)
    s.action_for(0)
    s.on_chunk(ramp_chunk(obs_tick=10, index=1, offset=1000.0), 17)
    # observed at tick 10 while the arm moved on the first chunk, arriving at tick 17: row 7 is tick 17's target
    assert s.action_for(17)[0] == 1017


def test_a_chunk_observed_while_the_arm_held_starts_from_its_first_row():
    s = ChunkScheduler(50, PERIOD)
    s.on_chunk(ramp_chunk(obs_tick=10), 17)  # the first chunk: the arm held still since tick 10
    assert [s.action_for(t)[0] for t in (17, 18)] == [10, 11]
    assert s.stall_ticks == 0
    # the next one was asked for after this one ran out (tick 67), arrives 80 ticks later: from row 0 again
    s.mark_requested(67)
    assert s.action_for(67) is None and s.stall_ticks == 1
    s.on_chunk(ramp_chunk(obs_tick=67, index=1, offset=1000.0), 147)
    assert s.action_for(147)[0] == 1067


def test_a_chunk_wholly_in_the_past_of_a_moving_arm_is_dropped_and_asked_for_again():
    s = ChunkScheduler(50, PERIOD)
    s.on_chunk(ramp_chunk(obs_tick=0), 0)
    s.action_for(0)
    s.mark_requested(10)
    s.on_chunk(ramp_chunk(obs_tick=10, index=1), 70)  # observed at 10 (arm moving), rows 10..59, arrives at 70
    assert s.action_for(70) is None and s.chunks_dropped == 1
    assert s.current.index == 0 and s.should_request(70)


def test_a_policy_slower_than_a_chunk_runs_as_the_blocking_client():
    # latency 80 ticks > 50-row chunks: prefetch cannot hide it; every chunk runs whole, none is dropped
    s = ChunkScheduler(50, PERIOD, prefetch=True, initial_latency_s=80 * PERIOD)
    assert s.lead_ticks == 0
    targets = simulate(s, latency_ticks=80, ticks=700)
    assert s.chunks_dropped == 0 and s.chunks_started >= 5
    moving = [t[0] for t in targets if t is not None]
    assert len(moving) == 50 * s.chunks_started  # every row of every chunk was commanded
    assert s.stall_ticks >= 80 * (s.chunks_started - 1)  # the arm held while each later chunk was computed


def test_prefetch_with_slow_policy_never_stalls():
    # latency = 30% of a 50-step chunk = 15 ticks
    s = ChunkScheduler(50, PERIOD, prefetch=True, initial_latency_s=15 * PERIOD)
    targets = simulate(s, latency_ticks=15, ticks=400)
    started = next(i for i, t in enumerate(targets) if t is not None)
    assert s.stall_ticks == 0
    assert all(t is not None for t in targets[started:])
    # the first chunk (observed at tick 0) starts from row 0 (the arm held while it was computed) ...
    assert [t[0] for t in targets[started:started + 50]] == list(range(50))
    # ... every later one was observed while the arm moved: its rows stay aligned to time across every seam
    assert all(t[0] == tick for tick, t in enumerate(targets) if tick >= started + 50)
    assert s.chunks_started >= 8


def test_without_prefetch_the_arm_waits_at_every_boundary():
    s = ChunkScheduler(50, PERIOD, prefetch=False)
    simulate(s, latency_ticks=15, ticks=400)
    # each switch after the first waits for one full inference (the release's blocking client)
    assert s.stall_ticks >= 15 * 5


def test_lead_follows_the_measured_request_to_arrival_delay():
    s = ChunkScheduler(50, PERIOD, lead_margin_ticks=1, initial_latency_s=0.05)
    assert s.lead_ticks == 3 + 1
    s.mark_requested(0)
    s.on_chunk(ramp_chunk(0), tick=7)  # inference plus queueing: 7 ticks
    assert s.lead_ticks == 8
    s.action_for(7)  # the first chunk starts at its arrival (tick 7), so it switches at 57: ask 8 ticks before
    assert not s.should_request(48) and s.should_request(49)


def test_late_next_chunk_keeps_running_the_current_one_past_execute_steps():
    s = ChunkScheduler(25, PERIOD, prefetch=False)
    s.on_chunk(ramp_chunk(0), 0)
    assert s.action_for(0)[0] == 0
    for tick in range(1, 40):  # next chunk not there: rows beyond execute_steps keep the arm moving
        assert s.action_for(tick)[0] == tick
    assert s.stall_ticks == 0
    assert s.action_for(50) is None and s.stall_ticks == 1  # the chunk ran out: hold


def test_hard_switch_happens_at_execute_steps():
    s = ChunkScheduler(20, PERIOD)
    s.on_chunk(ramp_chunk(0), 0)
    s.action_for(0)
    s.on_chunk(ramp_chunk(15, offset=1000.0, index=1), 16)  # arrived early, distinguishable
    assert s.action_for(19)[0] == 19
    assert s.action_for(20)[0] == 1020  # new chunk from its row 5 (tick 20 - obs tick 15)


def test_blend_crossfades_over_the_seam():
    s = ChunkScheduler(20, PERIOD, blend_steps=3)
    s.on_chunk(ramp_chunk(0), 0)
    s.action_for(0)
    s.on_chunk(ramp_chunk(15, offset=100.0, index=1), 16)
    values = [s.action_for(t)[0] for t in range(20, 25)]
    assert values[0] == pytest.approx(20 * 0.75 + 120 * 0.25)
    assert values[1] == pytest.approx(21 * 0.5 + 121 * 0.5)
    assert values[2] == pytest.approx(22 * 0.25 + 122 * 0.75)
    assert values[3:] == [123, 124]


def test_temporal_ensembling_weights_older_chunks_higher():
    s = ChunkScheduler(10, PERIOD, temporal_ensemble_coeff=0.5)
    s.on_chunk(ramp_chunk(0), 0)
    s.action_for(0)
    s.on_chunk(ramp_chunk(5, offset=10.0, index=1), 6)
    w = np.exp(-0.5 * np.arange(2))
    expected = (w[0] * 12 + w[1] * 22) / w.sum()
    assert s.action_for(12)[0] == pytest.approx(expected)


def test_chunk_entirely_in_the_past_stalls():
    s = ChunkScheduler(50, PERIOD)
    s.on_chunk(ramp_chunk(0, length=10), 0)
    s.action_for(0)
    s.on_chunk(ramp_chunk(1, length=10, index=1), 30)
    assert s.action_for(30) is None
    assert s.stall_ticks == 1


@pytest.mark.parametrize("bad", [dict(execute_steps=0, period_s=PERIOD), dict(execute_steps=5, period_s=0.0)])
def test_bad_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        ChunkScheduler(**bad)


def test_seam_ramp_spreads_the_gap_within_the_step_limit():
    from cosmos_policy_ros.chunk_scheduler import SeamRamp
    max_step = np.full(14, 0.1)
    ramp = SeamRamp(max_step, max_seam=np.full(14, 0.5))
    previous = np.zeros(14)
    rows = np.full((20, 14), 0.3)  # the new chunk starts 0.3 away and then holds still
    assert ramp.start(previous, rows[0]) is None
    commanded = [previous] + [ramp.apply(row) for row in rows]
    steps = np.abs(np.diff(np.array(commanded), axis=0))
    assert steps.max() <= 0.5 * 0.1 + 1e-12  # half the step budget: the chunk's own motion keeps the rest
    np.testing.assert_allclose(commanded[-1], rows[-1])  # then the chunk runs unchanged
    assert np.allclose(commanded[6], rows[6])  # 0.3 / 0.05 = 6 ticks


def test_seam_ramp_refuses_a_gap_beyond_its_bound_and_ignores_small_ones():
    from cosmos_policy_ros.chunk_scheduler import SeamRamp
    ramp = SeamRamp(np.full(14, 0.1), max_seam=np.full(14, 0.5))
    far = np.zeros(14)
    far[3] = 0.6
    assert "starts 0.600 from the last target" in ramp.start(np.zeros(14), far)
    near = np.full(14, 0.01)
    assert ramp.start(np.zeros(14), near) is None
    np.testing.assert_array_equal(ramp.apply(near), near)  # within one tick's budget: no ramp


def test_smooth_rows_averages_noise_and_keeps_ramps():
    from cosmos_policy_ros.chunk_scheduler import smooth_rows
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, 50)[:, None].repeat(14, axis=1)
    noisy = ramp + rng.normal(0, 0.1, ramp.shape)
    smooth = smooth_rows(noisy, 9)
    assert np.abs(np.diff(smooth, axis=0)).max() < 0.5 * np.abs(np.diff(noisy, axis=0)).max()
    np.testing.assert_allclose(smooth_rows(ramp, 9)[4:-4], ramp[4:-4])  # a straight line is unchanged
    assert smooth_rows(noisy, 1) is noisy


def test_seam_ramp_leaves_non_finite_rows_to_the_safety_gate():
    from cosmos_policy_ros.chunk_scheduler import SeamRamp
    ramp = SeamRamp(np.full(14, 0.1), max_seam=np.full(14, 0.5))
    row = np.zeros(14)
    row[2] = np.nan
    assert ramp.start(np.zeros(14), row) is None
    assert np.isnan(ramp.apply(row)[2])


def test_the_lead_ignores_delays_prefetch_cannot_hide():
    s = ChunkScheduler(50, PERIOD, lead_margin_ticks=2, initial_latency_s=80 * PERIOD)  # a first chunk of 80 ticks
    assert s.lead_ticks == 0
    fallback = ramp_chunk(0)
    fallback.planning_fallback, fallback.proposal_latency_s = True, 5 * PERIOD  # its proposals took 5 ticks
    s.mark_requested(0)
    s.on_chunk(fallback, 49)  # arrived at its deadline: the 49 ticks are not what it costs
    assert s.lead_ticks == 5 + 2  # the 80 stays in the window but cannot be hidden; the 5 can
    s.mark_requested(60)
    s.on_chunk(ramp_chunk(60, index=1), 90)  # a planned chunk of 30 ticks
    assert s.lead_ticks == 30 + 2
