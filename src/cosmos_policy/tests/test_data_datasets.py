"""Dataset items: exact batch-spec shapes/dtypes/ranges, sources, errors, objective sampling."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.act_episode import EpisodeFileError
from cosmos_policy.data.augment import resize_frames
from cosmos_policy.data.datasets import (
    EpisodeDataset, SampleSpec, compute_dataset_statistics, expected_objective_fractions, find_episode_files,
    load_episode, load_episodes)
from cosmos_policy.data.statistics import normalize, statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from data_synthetic import synthetic_episode, write_release_episode, write_synthetic_episodes

SPEC = SampleSpec.from_configs(load_layout("aloha"), NetworkConfig.preset_config("tiny"))
K = SPEC.action_chunk


def _dataset(paths, rollouts=(), **kwargs):
    stats = statistics_from_dict(compute_dataset_statistics(paths))
    demos = load_episodes(paths, SPEC, is_demo=True)
    rolls = load_episodes(rollouts, SPEC, is_demo=False)
    cache = build_text_cache({e.task for e in demos + rolls}, SPEC.text_dim, max_length=SPEC.text_max_tokens)
    return EpisodeDataset(demos, SPEC, stats, cache, rollouts=rolls, **kwargs), stats


def _check_item(item):
    n_cams, (h, w) = len(SPEC.cameras), SPEC.image_hw
    expected = {
        "images": ((n_cams, 3, h, w), torch.float32), "future_images": ((n_cams, 3, h, w), torch.float32),
        "proprio": ((SPEC.proprio_dim,), torch.float32), "future_proprio": ((SPEC.proprio_dim,), torch.float32),
        "actions": ((K, SPEC.action_dim), torch.float32), "value": ((), torch.float32),
        "text_embeddings": ((SPEC.text_max_tokens, SPEC.text_dim), torch.float32),
        "text_mask": ((SPEC.text_max_tokens,), torch.bool), "objective": ((), torch.int64),
    }
    assert set(item) == set(expected)
    for key, (shape, dtype) in expected.items():
        assert tuple(item[key].shape) == shape and item[key].dtype == dtype, key
    for key in ("images", "future_images", "proprio", "future_proprio", "actions", "value"):
        assert item[key].min() >= -1.0 and item[key].max() <= 1.0, key
    assert int(item["objective"]) in (0, 1, 2)


@pytest.mark.parametrize("compress", [False, True])
def test_items_match_the_batch_spec(tmp_path, compress):
    paths = write_synthetic_episodes(tmp_path / "fold_shirt", count=2, steps=70, compress=compress)
    ds, stats = _dataset(paths)
    assert len(ds) == 140 and ds.tasks == ["fold shirt"]
    for index in (0, 30, 69, 139):
        _check_item(ds[index])
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["images"].shape == (4, 3, 3, 64, 64) and batch["objective"].shape == (4,)
    assert batch["value"].shape == (4,) and batch["text_mask"].shape == (4, SPEC.text_max_tokens)

    # step 30 of episode 0: chunk 30..79 padded with the last action (69), future at min(30 + K, 69)
    episode = ds.demos[0]
    item = ds[30]
    chunk = episode.actions[np.minimum(np.arange(30, 30 + K), 69)]
    np.testing.assert_allclose(item["actions"], normalize(chunk, stats["actions_min"], stats["actions_max"]), atol=1e-6)
    np.testing.assert_allclose(item["actions"][-1], item["actions"][39], atol=0)
    np.testing.assert_allclose(item["future_proprio"],
                               normalize(episode.proprio[69], stats["proprio_min"], stats["proprio_max"]), atol=1e-6)
    assert float(item["value"]) == pytest.approx(1.0)  # demo, future clamped to the last step
    early = ds[5]
    assert float(early["value"]) == pytest.approx(2 * SPEC.value_gamma ** (69 - 55) - 1, abs=1e-6)


def test_jpeg_items_are_close_to_raw_items(tmp_path):
    raw, _ = _dataset(write_synthetic_episodes(tmp_path / "raw" / "t", count=1, steps=20), augment=False)
    jpg, _ = _dataset(write_synthetic_episodes(tmp_path / "jpg" / "t", count=1, steps=20, compress=True), augment=False)
    a, b = raw[7], jpg[7]
    assert (a["images"] - b["images"]).abs().mean() < 0.05
    assert torch.equal(a["actions"], b["actions"])


def test_items_are_deterministic_and_vary_with_epoch(tmp_path):
    ds, _ = _dataset(write_synthetic_episodes(tmp_path / "t", count=1, steps=20))
    assert all(torch.equal(x, y) for x, y in zip(ds[3].values(), ds[3].values()))
    first = ds[3]["images"]
    ds.set_epoch(1)
    assert not torch.equal(first, ds[3]["images"])


def test_truncated_file_error_names_the_file_and_can_be_skipped(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "t", count=2, steps=10)
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 3])
    with pytest.raises(EpisodeFileError, match="episode_1.hdf5"):
        load_episode(paths[1], SPEC, is_demo=True)
    with pytest.raises(EpisodeFileError, match="episode_1.hdf5"):
        compute_dataset_statistics(paths)
    kept = load_episodes(paths, SPEC, is_demo=True, skip_bad_episodes=True)
    assert [e.source for e in kept] == [str(paths[0])]


def test_objective_proportions_default_mix(tmp_path):
    ds, _ = _dataset(write_synthetic_episodes(tmp_path / "t", count=2, steps=50))
    counts = np.zeros(3)
    for epoch in range(100):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            counts[ds.plan(i)[2]] += 1
    np.testing.assert_allclose(counts / counts.sum(), [0.5, 0.25, 0.25], atol=0.01)


def test_rollout_mixing_demo_probability_and_scores(tmp_path):
    demos = write_synthetic_episodes(tmp_path / "demos" / "t", count=2, steps=40)
    rollouts = write_synthetic_episodes(
        tmp_path / "rollouts", count=3, steps=40,
        attrs=[{"success": True, "success_score": 1.0, "task_description": "t"},
               {"success": False, "success_score": 0.5, "task_description": "t"},
               {"success": False, "success_score": 0.0, "task_description": "t"}])
    ds, _ = _dataset(demos, rollouts, demo_sampling_prob=0.1)
    from_demo, objectives, n = 0, np.zeros(3), 0
    for epoch in range(40):
        ds.set_epoch(epoch)
        for i in range(len(ds)):
            episode, _, objective, _ = ds.plan(i)
            from_demo += episode.is_demo
            objectives[objective] += 1
            n += 1
            if not episode.policy_eligible:
                assert objective != 0
    assert from_demo / n == pytest.approx(0.1, abs=0.015)
    np.testing.assert_allclose(objectives / n, expected_objective_fractions(ds), atol=0.015)
    half, zero = ds.rollouts[1], ds.rollouts[2]
    assert half.values[-1] == pytest.approx(0.0) and np.all(zero.values == -1.0)
    assert np.all(half.values < ds.rollouts[0].values)


@pytest.mark.parametrize("video", [False, True])
def test_release_preprocessed_layout(tmp_path, video):
    episode = synthetic_episode(0.3, 0.6, steps=12)
    root = tmp_path / "ALOHA-Cosmos-Policy"
    write_release_episode(root / "put_candy_in_bag" / "train" / "episode_0.hdf5", episode, video=video)
    write_release_episode(root / "put_candy_in_bag" / "val" / "episode_1.hdf5", episode, video=video)
    files = find_episode_files(root)
    assert [p.name for p in files] == ["episode_0.hdf5"]
    loaded = load_episode(files[0], SPEC, is_demo=True)
    assert loaded.task == "put candy in bag" and loaded.num_steps == 12
    np.testing.assert_array_equal(loaded.actions, episode.action)
    high = loaded.frames["cam_high"]
    assert high.shape == (12, 64, 64, 3)
    # the square is where it was drawn, through MP4 compression too
    expected = resize_frames(episode.images["cam_high"], SPEC.image_hw).astype(float)
    assert np.abs(high.astype(float) - expected).mean() < 6.0
