"""The scene probe's ridge regression: it finds a layout that is in the features and none that is not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

PROBE = Path(__file__).resolve().parents[1] / "benchmarks" / "scene_probe.py"


def load_probe():
    spec = importlib.util.spec_from_file_location("scene_probe", PROBE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_probe_reads_a_linear_layout_and_not_noise():
    probe = load_probe()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 40))
    layout = x @ rng.normal(size=(40, 3)) * 0.05  # three "joints" set by the features
    noise = rng.normal(size=(120, 2)) * 0.05  # two set by nothing the features hold
    y = np.concatenate([layout + rng.normal(size=(120, 3)) * 0.005, noise], axis=1)
    error, alpha = probe.ridge_cv_error(x, y)
    mean = probe.mean_cv_error(y)
    assert np.all(error[:3] < 0.3 * mean[:3]), (error, mean)
    assert np.all(error[3:] > 0.9 * mean[3:]), (error, mean)  # cross-validated: no credit for fitting noise
    assert alpha in (1e-2, 1e-1, 1.0, 10.0, 100.0)
