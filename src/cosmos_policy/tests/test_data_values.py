import numpy as np
import pytest

from cosmos_policy.data.values import episode_score_fraction, monte_carlo_returns, score_fraction_from_staged, value_targets


def test_monte_carlo_return_is_discounted_terminal_reward():
    v = monte_carlo_returns(4, 0.5, 0.9)
    np.testing.assert_allclose(v, [0.5 * 0.9 ** 3, 0.5 * 0.9 ** 2, 0.5 * 0.9, 0.5])


def test_partial_scores_shape_the_value():
    full = value_targets(300, score_fraction_from_staged(100), 0.998)
    half = value_targets(300, score_fraction_from_staged(50), 0.998)
    zero = value_targets(300, score_fraction_from_staged(0), 0.998)
    assert np.all(half < full)
    assert full[-1] == pytest.approx(1.0) and half[-1] == pytest.approx(0.0)
    np.testing.assert_allclose(zero, -1.0)
    assert np.all(np.diff(full) > 0) and full.min() >= -1.0


def test_gamma_controls_the_decay():
    slow = value_targets(200, 1.0, 0.998)
    fast = value_targets(200, 1.0, 0.99)
    assert slow[0] > fast[0]
    assert slow[0] == pytest.approx(2 * 0.998 ** 199 - 1)


def test_score_fraction_sources():
    assert episode_score_fraction({}, is_demo=True) == 1.0
    assert episode_score_fraction({"success_score": 0.6, "success": False}, is_demo=False) == 0.6
    assert episode_score_fraction({"success": True}, is_demo=False) == 1.0
    with pytest.raises(ValueError, match="ep.hdf5.*0, 1"):
        episode_score_fraction({"success_score": 60.0}, is_demo=False, source="ep.hdf5")
    with pytest.raises(ValueError, match="neither"):
        episode_score_fraction({}, is_demo=False)
