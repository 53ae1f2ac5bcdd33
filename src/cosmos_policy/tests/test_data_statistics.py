import json

import numpy as np
import pytest
import torch

from cosmos_policy.data.statistics import (
    Normalizer,
    compute_statistics,
    load_statistics,
    normalize,
    save_statistics,
    unnormalize,
)


def _episodes(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(n, 3)) * [1.0, 5.0, 0.0] + [0.0, 2.0, 7.0] for n in (10, 25)]


def test_statistics_match_numpy_over_all_steps_and_round_trip_json(tmp_path):
    actions, proprio = _episodes(0), _episodes(1)
    stats = compute_statistics({"actions": actions, "proprio": proprio})
    flat = np.concatenate(actions)
    np.testing.assert_allclose(stats["actions_min"], flat.min(0))
    np.testing.assert_allclose(stats["actions_max"], flat.max(0))
    np.testing.assert_allclose(stats["actions_mean"], flat.mean(0))
    np.testing.assert_allclose(stats["actions_std"], flat.std(0))
    np.testing.assert_allclose(stats["actions_q99"], np.quantile(flat, 0.99, axis=0))
    assert stats["num_steps"] == 35 and stats["num_episodes"] == 2

    path = save_statistics(stats, tmp_path / "dataset_statistics.json")
    raw = json.loads(path.read_text())
    # release key style: a flat dict of lists
    for key in ("actions_min", "actions_max", "actions_mean", "actions_std", "proprio_min", "proprio_max"):
        assert isinstance(raw[key], list) and len(raw[key]) == 3
    loaded = load_statistics(path)
    np.testing.assert_allclose(loaded["proprio_max"], stats["proprio_max"], rtol=1e-6)


def test_loading_a_release_style_file_with_only_min_max(tmp_path):
    path = tmp_path / "aloha_dataset_statistics.json"
    path.write_text(json.dumps({"actions_min": [0, -1], "actions_max": [2, 1],
                                "proprio_min": [0, 0], "proprio_max": [1, 1]}))
    stats = load_statistics(path)
    np.testing.assert_allclose(Normalizer(stats, "actions").normalize(np.array([1.0, 1.0])), [0.0, 1.0])


def test_missing_key_names_the_key_and_the_fix(tmp_path):
    path = tmp_path / "stats.json"
    path.write_text(json.dumps({"actions_min": [0], "actions_max": [1], "proprio_min": [0]}))
    with pytest.raises(KeyError, match="proprio_max.*cosmos-policy stats"):
        load_statistics(path)


def test_normalize_round_trip_and_constant_dimension():
    lo, hi = np.array([-2.0, 0.0, 3.0]), np.array([2.0, 10.0, 3.0])
    x = np.array([[-2.0, 0.0, 3.0], [0.0, 5.0, 3.0], [2.0, 10.0, 3.0], [1.0, 2.5, 3.0]])
    y = normalize(x, lo, hi)
    np.testing.assert_allclose(y[:3, :2], [[-1, -1], [0, 0], [1, 1]], atol=1e-6)
    assert np.all(y[:, 2] == 0.0) and np.all(np.isfinite(y))
    np.testing.assert_allclose(unnormalize(y, lo, hi), x, atol=1e-5)

    xt = torch.tensor(x, dtype=torch.float32)
    yt = normalize(xt, lo, hi)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-6)
    np.testing.assert_allclose(unnormalize(yt, lo, hi).numpy(), x, atol=1e-5)


def test_unnormalize_clips_overshooting_predictions():
    out = unnormalize(np.array([1.5, -3.0]), np.array([0.0, 0.0]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(out, [1.0, 0.0])
