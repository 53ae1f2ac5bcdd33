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
    s = ChunkScheduler(50, PERIOD)
    s.on_chunk(ramp_chunk(obs_tick=10), 17)
    # computed from the observation of tick 10, arriving at tick 17: row 7 is the target of tick 17
    assert s.action_for(17)[0] == 17


def test_prefetch_with_slow_policy_never_stalls():
    # latency = 30% of a 50-step chunk = 15 ticks
    s = ChunkScheduler(50, PERIOD, prefetch=True, initial_latency_s=15 * PERIOD)
    targets = simulate(s, latency_ticks=15, ticks=400)
    started = next(i for i, t in enumerate(targets) if t is not None)
    assert s.stall_ticks == 0
    assert all(t is not None for t in targets[started:])
    # every commanded value equals its tick: chunks stay aligned to time across every seam
    assert all(t[0] == tick for tick, t in enumerate(targets) if t is not None)
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
    s.action_for(7)
    assert not s.should_request(41) and s.should_request(42)


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
