"""Dataset items: exact batch-spec shapes/dtypes/ranges, sources, errors, objective sampling."""

import dataclasses
import os
import pickle

import h5py
import numpy as np
import pytest
import torch
from data_synthetic import synthetic_episode, write_release_episode, write_synthetic_episodes
from torch.utils.data import DataLoader

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.act_episode import EpisodeFileError, read_act_episode
from cosmos_policy.data.augment import resize_frames
from cosmos_policy.data.datasets import (
    EpisodeDataset,
    OpenFiles,
    SampleSpec,
    compute_dataset_statistics,
    expected_objective_fractions,
    find_episode_files,
    load_episode,
    load_episodes,
    read_video_frames,
)
from cosmos_policy.data.statistics import normalize, statistics_from_dict
from cosmos_policy.data.text import build_text_cache

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
    recorded = loaded.frames.read(range(12))
    assert set(recorded) == set(SPEC.cameras) and recorded["cam_high"].shape == (12, 48, 64, 3)
    high = resize_frames(recorded["cam_high"], SPEC.image_hw)
    if video:  # seeking to a frame gives the frame a full sequential decode gives
        np.testing.assert_array_equal(loaded.frames.read([7, 2, 7])["cam_high"], recorded["cam_high"][[7, 2, 7]])
        assert read_video_frames(files[0].parent / "episode_0_cam_high.mp4", [11]).shape == (1, 48, 64, 3)
    else:
        np.testing.assert_array_equal(recorded["cam_high"], episode.images["cam_high"])
    _check_item(EpisodeDataset([loaded], SPEC, statistics_from_dict(compute_dataset_statistics(files)),
                               build_text_cache([loaded.task], SPEC.text_dim, max_length=SPEC.text_max_tokens))[11])
    # the square is where it was drawn, through MP4 compression too
    expected = resize_frames(episode.images["cam_high"], SPEC.image_hw).astype(float)
    assert np.abs(high.astype(float) - expected).mean() < 6.0


@dataclasses.dataclass
class _ArrayFrames:
    """The old eager path: every frame in memory, already resized to the network's image size."""

    frames: dict

    def read(self, steps, files=None):
        return {cam: video[list(steps)] for cam, video in self.frames.items()}


def _eager_copy(dataset):
    episodes = []
    for ep in dataset.episodes:
        full = read_act_episode(ep.source, cameras=list(SPEC.cameras))
        frames = {cam: resize_frames(full.images[cam], SPEC.image_hw) for cam in SPEC.cameras}
        episodes.append(dataclasses.replace(ep, frames=_ArrayFrames(frames)))
    demos = [e for e in episodes if e.is_demo]
    rollouts = [e for e in episodes if not e.is_demo]
    stats = {"actions_min": dataset.action_lo, "actions_max": dataset.action_hi,
             "proprio_min": dataset.proprio_lo, "proprio_max": dataset.proprio_hi}
    return EpisodeDataset(demos, SPEC, stats, dataset.text_cache, rollouts=rollouts, augment=dataset.augment,
                          demo_sampling_prob=dataset.demo_sampling_prob if rollouts else None)


@pytest.mark.parametrize("compress", [False, True])
def test_lazy_items_equal_eagerly_loaded_items(tmp_path, compress):
    demos = write_synthetic_episodes(tmp_path / "demos" / "t", count=2, steps=10, compress=compress)
    rollouts = write_synthetic_episodes(tmp_path / "rollouts" / "t", count=1, steps=8, compress=compress,
                                        attrs=[{"success": False, "success_score": 0.5}])
    lazy, _ = _dataset(demos, rollouts)
    eager = _eager_copy(lazy)
    for epoch in (0, 1):
        lazy.set_epoch(epoch)
        eager.set_epoch(epoch)
        for index in range(len(lazy)):
            a, b = lazy[index], eager[index]
            assert set(a) == set(b)
            for key in a:
                assert torch.equal(a[key], b[key]), (index, key)
    assert 0 < len(lazy.files) <= 3
    # DataLoader workers (forked after this process opened the files) reopen them and give the same batches
    lazy.set_epoch(0)
    eager.set_epoch(0)
    loader = DataLoader(lazy, batch_size=7, num_workers=2)
    for got, want in zip(loader, DataLoader(eager, batch_size=7)):
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_building_the_dataset_reads_no_image_data(tmp_path, monkeypatch):
    raw = write_synthetic_episodes(tmp_path / "raw" / "t", count=2, steps=30)
    jpeg = write_synthetic_episodes(tmp_path / "jpeg" / "t", count=1, steps=30, compress=True)
    reads = []
    original = h5py.Dataset.__getitem__

    def spy(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        reads.append((self.name, np.shape(out)))
        return out

    monkeypatch.setattr(h5py.Dataset, "__getitem__", spy)
    ds, _ = _dataset(raw + jpeg)
    assert reads and not [name for name, _ in reads if name.startswith("/observations/images")]
    reads.clear()
    ds[40]  # episode 1, steps 10 and 10 + K clamped to 29: two rows of each camera
    image_reads = [(name, shape) for name, shape in reads if name.startswith("/observations/images")]
    assert sorted(name for name, _ in image_reads) == sorted(2 * [f"/observations/images/{c}" for c in SPEC.cameras])
    assert all(shape == (48, 64, 3) for _, shape in image_reads)
    reads.clear()
    ds[75]  # the JPEG episode: two rows of padded JPEG bytes per camera, and compress_len rows
    image_reads = [shape for name, shape in reads if name.startswith("/observations/images")]
    assert len(image_reads) == 6 and all(len(shape) == 1 for shape in image_reads)
    assert all(low_dim not in name for name, _ in reads for low_dim in ("qpos", "action"))


def test_image_errors_surface_on_fetch_and_name_the_file(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "t", count=2, steps=10, compress=True)
    with h5py.File(paths[1], "r+") as f:
        f["observations/images/cam_left_wrist"][...] = 0  # JPEG bytes gone, structure intact
    ds, _ = _dataset(paths)
    ds[3]
    with pytest.raises(EpisodeFileError, match="episode_1.hdf5:cam_left_wrist"):
        ds[13]
    ds.files.close()
    with h5py.File(paths[0], "r+") as f:
        del f["observations/images/cam_high"]
    with pytest.raises(EpisodeFileError, match=r"episode_0.hdf5: cameras \['cam_high'\] not in the file"):
        load_episode(paths[0], SPEC, is_demo=True)


def test_open_files_are_bounded_per_process_and_never_pickled(tmp_path, monkeypatch):
    paths = write_synthetic_episodes(tmp_path / "t", count=3, steps=2)
    files = OpenFiles(max_open=2)
    first = files.get(paths[0])
    assert files.get(paths[0]) is first
    files.get(paths[1])
    files.get(paths[2])
    assert len(files) == 2 and not first.id.valid  # least recently used closed
    second = files.get(paths[1])
    # DataLoader workers receive the dataset pickled in memory: the cache must travel without its handles
    copied = pickle.loads(pickle.dumps(files))
    assert copied.max_open == 2 and len(copied) == 0
    pid = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: pid + 1)  # as in a forked DataLoader worker
    assert len(files) == 0
    again = files.get(paths[1])
    assert again is not second and again.id.valid and second.id.valid
    monkeypatch.undo()
    second.close()
    files.close()


def test_start_draws_come_from_the_first_steps_and_reuse_the_uniform_draws_keys(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "d", count=3, steps=60)
    uniform, _ = _dataset(paths, demo_sampling_prob=1.0, sample_stride=2)
    starts, _ = _dataset(paths, demo_sampling_prob=1.0, sample_stride=2, start_prob=1.0, start_steps=10)
    key_of = {}  # (episode number, step) -> the sample key of the uniform draw
    for index in range(len(uniform)):
        episode, t, _, _, key = uniform._plan(index)
        key_of[(next(i for i, e in enumerate(uniform.demos) if e is episode), t)] = key
    seen = set()
    for index in range(300):
        episode, t, objective, _, key = starts._plan(index)
        assert t < 10 and t % 2 == 0 and objective == 0  # a policy sample from an episode's start
        ep = next(i for i, e in enumerate(starts.demos) if e is episode)
        assert key == key_of[(ep, t)]  # the sample the uniform draw also addresses
        seen.add((ep, t))
    assert len(seen) == 15  # every start sample of every episode: 3 x 5
    # off (the release's default): the draws are exactly those of a dataset without the option
    off, _ = _dataset(paths, demo_sampling_prob=1.0, sample_stride=2, start_prob=0.0)
    assert [off._plan(i)[1:3] + (off._plan(i)[4],) for i in range(50)] == \
        [uniform._plan(i)[1:3] + (uniform._plan(i)[4],) for i in range(50)]
    half, _ = _dataset(paths, demo_sampling_prob=1.0, sample_stride=2, start_prob=0.5, start_steps=10)
    early = np.mean([half._plan(i)[1] < 10 for i in range(2000)])
    assert abs(early - (0.5 + 0.5 * 5 / 30)) < 0.04  # half drawn at the start, plus the uniform draws' share
    with pytest.raises(ValueError, match="start_prob=1.5"):
        _dataset(paths, start_prob=1.5)
