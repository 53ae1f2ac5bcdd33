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


def test_augmented_views_are_training_draws_of_each_camera():
    import dataclasses
    from types import SimpleNamespace

    import torch

    from cosmos_policy.config import load_layout

    probe = load_probe()
    layout = dataclasses.replace(load_layout("aloha"), camera_crops=(("cam_high", (0.25, 0.25, 0.5, 0.5)),))
    policy = SimpleNamespace(layout=layout, model=SimpleNamespace(network_config=SimpleNamespace(image_size_px=32)))
    rng = np.random.default_rng(0)
    frames = {cam: rng.integers(0, 256, size=(96, 128, 3), dtype=np.uint8) for cam in layout.cameras}
    views = probe.augmented(policy, frames, "stronger", torch.Generator().manual_seed(0))
    assert views.shape == (len(layout.cameras), 3, 32, 32)
    assert float(views.min()) >= -1.0 and float(views.max()) <= 1.0
    again = probe.augmented(policy, frames, "stronger", torch.Generator().manual_seed(0))
    other = probe.augmented(policy, frames, "stronger", torch.Generator().manual_seed(1))
    assert torch.equal(views, again)  # one seeded draw per call: the probe's figures are reproducible
    assert not torch.allclose(views, other)
    # the region of interest is applied before augmenting: cam_high's view is built from its centre only
    centre = {**frames, "cam_high": frames["cam_high"].copy()}
    centre["cam_high"][:10] = 0  # outside the box: no effect
    assert torch.equal(probe.augmented(policy, centre, "stronger", torch.Generator().manual_seed(0)), views)
