"""The safety gate: limits, NaN, per-step velocity limit and tracking bound, both directions, hold target."""

import dataclasses

import numpy as np
import pytest

from aloha_contract import load_contract
from aloha_contract.safety import SafetyGate, SafetyLimits


@pytest.fixture
def contract():
    return load_contract()


def home():
    q = np.zeros(14)
    q[[6, 13]] = 0.5
    return q


def test_limits_come_from_the_contract(contract):
    limits = SafetyLimits.from_contract(contract)
    velocity = contract.raw["safety"]["joint_velocity_limits_rad_s"]["waist"]
    margin = contract.raw["safety"]["step_margin"]
    assert limits.max_step[0] == pytest.approx(velocity * contract.control_period_s * margin)
    assert limits.max_step[6] == contract.raw["safety"]["gripper_step_max"]
    assert np.isinf(limits.max_tracking_error[6]) and np.isinf(limits.max_tracking_error[13])
    slower = SafetyLimits.from_contract(contract, period_s=0.04)
    assert slower.max_step[0] == pytest.approx(2 * limits.max_step[0])


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_step_jump_refused_in_both_directions(contract, sign):
    gate = SafetyGate(contract)
    gate.reset(home())
    step = gate.limits.max_step[1]
    ok = home()
    ok[1] = sign * 0.9 * step
    assert gate.check(ok, measured=home()) is None
    jump = ok.copy()
    jump[1] += sign * 1.2 * step
    violation = gate.check(jump, measured=ok)
    assert violation is not None and violation.reason == "step" and "right" not in violation.detail
    assert "left_shoulder" in violation.detail
    np.testing.assert_array_equal(gate.last_safe_target, ok)  # the hold target is the last accepted one


def test_a_late_command_may_move_as_far_as_the_time_since_the_last_accepted_one(contract):
    """The velocity limit is per time: a message after a 2-period gap may move two periods' worth, never more than
    safety.max_command_gap_periods; without a time (lockstep) every message is one period."""
    period = contract.control_period_s
    cap = contract.raw["safety"]["max_command_gap_periods"]
    assert cap >= 2
    gate = SafetyGate(contract)
    gate.reset(home())
    step = gate.limits.max_step[0]
    q = home()
    assert gate.check(q, home(), now_s=10.0) is None
    q2 = q.copy()
    q2[0] += 1.8 * step  # beyond one period's worth, within two
    assert gate.check(q2, q, now_s=10.0 + period).reason == "step"  # on time: too far
    assert gate.check(q2, q, now_s=10.0 + 2 * period) is None  # two periods late: as far as the arm could go
    far = q2.copy()
    far[0] += (cap + 0.2) * step
    violation = gate.check(far, q2, now_s=10.0 + 2 * period + 50 * period)  # a long pause is not a licence to jump
    assert violation is not None and violation.reason == "step"
    assert gate.step_limit(10.0 + 2 * period + 50 * period)[0] == pytest.approx(cap * step)
    # the refused command did not move the reference: the allowance keeps growing from the last accepted one
    np.testing.assert_array_equal(gate.last_safe_target, q2)
    # no time: one period, however late
    strict = SafetyGate(contract)
    strict.reset(q)
    assert strict.check(q2, q).reason == "step"


def test_a_contract_without_the_gap_allows_one_period_per_message(contract):
    raw = {**contract.raw, "safety": {k: v for k, v in contract.raw["safety"].items() if k != "max_command_gap_periods"}}
    limits = SafetyLimits.from_contract(dataclasses.replace(contract, raw=raw))
    assert limits.max_gap_periods == 1.0


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_tracking_bound_in_both_directions(contract, sign):
    gate = SafetyGate(contract)
    bound = gate.limits.max_tracking_error[8]
    target = home()
    gate.reset(None)
    measured = home()
    measured[8] = -sign * (bound + 0.01)  # the arm lags far behind (e.g. blocked)
    violation = gate.check(target, measured)
    assert violation is not None and violation.reason == "tracking" and "right_shoulder" in violation.detail


def test_grippers_may_lag_their_target(contract):
    gate = SafetyGate(contract)
    gate.reset(None)
    target, measured = home(), home()
    target[6], measured[6] = 0.0, 0.9  # squeezing an object: the fingers stop before the target
    assert gate.check(target, measured) is None


def test_nan_and_limits_are_invalid(contract):
    gate = SafetyGate(contract)
    gate.reset(home())
    bad = home()
    bad[3] = np.nan
    assert gate.check(bad, home()).reason == "invalid"
    far = home()
    far[1] = 3.0
    assert gate.check(far, None).reason == "invalid"
    assert gate.last_safe_target is not None and np.isfinite(gate.last_safe_target).all()


def test_normal_scripted_motion_passes(contract):
    """A smooth swing peaking at 1.6 rad/s with 0.08 rad of servo lag (the scripted sim demos lag <= 0.085)."""
    gate = SafetyGate(contract)
    gate.reset(home())
    for k in range(1, 200):
        target = home()
        target[:6] = 0.5 * np.sin(np.pi * k * contract.control_period_s)
        measured = target.copy()
        measured[:6] -= 0.08
        assert gate.check(target, measured) is None, k
