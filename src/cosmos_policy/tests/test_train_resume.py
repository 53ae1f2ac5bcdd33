"""Trainer: learning-rate schedule, checkpoint contents, and resume == uninterrupted run."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from data_synthetic import write_synthetic_episodes
from safetensors.torch import load_file

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel
from cosmos_policy.train import TrainConfig, Trainer, lr_factor

NETWORK = NetworkConfig.preset_config("tiny")
LAYOUT = dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64))


def test_lr_schedule_warmup_then_cosine_or_linear_decay():
    cfg = TrainConfig(steps=100, warmup_steps=10, final_lr_ratio=0.1, decay="cosine")
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(9, cfg) == pytest.approx(1.0)
    assert lr_factor(10, cfg) == pytest.approx(1.0) and lr_factor(99, cfg) == pytest.approx(0.1)
    mid = lr_factor(int(10 + 89 / 2), cfg)
    assert 0.5 < mid < 0.6  # cosine half-way: 0.1 + 0.9 * 0.5 = 0.55
    linear = TrainConfig(steps=100, warmup_steps=10, decay="linear", final_lr_ratio=0.0)
    assert lr_factor(54, linear) == pytest.approx(0.5, abs=0.01)
    assert all(lr_factor(s, cfg) >= lr_factor(s + 1, cfg) for s in range(10, 99))


def _setup(tmp_path):
    paths = write_synthetic_episodes(tmp_path / "data" / "pick", count=2, steps=6)
    raw = compute_dataset_statistics(paths)
    spec = SampleSpec.from_configs(LAYOUT, NETWORK)
    demos = load_episodes(paths, spec, is_demo=True)
    cache = build_text_cache({e.task for e in demos}, NETWORK.text_embed_dim, max_length=NETWORK.text_max_tokens)
    dataset = EpisodeDataset(demos, spec, statistics_from_dict(raw), cache)
    return dataset, raw, cache


def _trainer(tmp_path, name, dataset, raw, cache):
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    cfg = TrainConfig(steps=4, batch_size=2, warmup_steps=2, save_every=0, progress=False)
    return Trainer(model, dataset, cfg, tmp_path / name, raw, cache)


def test_resume_continues_exactly(tmp_path):
    dataset, raw, cache = _setup(tmp_path)
    straight = _trainer(tmp_path, "straight", dataset, raw, cache)
    full = straight.train()
    assert full.final_step == 4 and len(full.loss_history) == 4

    first = _trainer(tmp_path, "resumed", dataset, raw, cache)
    first.train(until_step=2)
    out = tmp_path / "resumed"
    for name in ("model.safetensors", "config.json", "dataset_statistics.json", "text_embeddings.safetensors",
                 "trainer_state.safetensors", "trainer_state.json"):
        assert (out / name).is_file(), name
    meta = json.loads((out / "trainer_state.json").read_text())
    assert meta["step"] == 2 and meta["train_config"]["lr"] == 1e-4
    assert any(k.startswith("optimizer/") for k in load_file(str(out / "trainer_state.safetensors")))

    second = _trainer(tmp_path, "resumed", dataset, raw, cache)
    assert second.resume() == 2
    rest = second.train()
    assert rest.final_step == 4 and rest.steps_done == 2
    np.testing.assert_allclose(second.loss_history, straight.loss_history, rtol=1e-5)
    for (name, a), b in zip(straight.model.dit.state_dict().items(), second.model.dit.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    sa, sb = straight.optimizer.state_dict()["state"], second.optimizer.state_dict()["state"]
    for index in sa:
        torch.testing.assert_close(sa[index]["exp_avg_sq"], sb[index]["exp_avg_sq"], rtol=1e-5, atol=1e-9)
        assert float(sa[index]["step"]) == float(sb[index]["step"]) == 4


def test_resume_without_state_names_the_fix(tmp_path):
    dataset, raw, cache = _setup(tmp_path)
    trainer = _trainer(tmp_path, "empty", dataset, raw, cache)
    with pytest.raises(FileNotFoundError, match="without --resume"):
        trainer.resume()


def _cached_trainer(tmp_path, name, dataset, raw, cache, steps=4):
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    cfg = TrainConfig(steps=steps, batch_size=4, warmup_steps=2, save_every=0, save_every_s=0, progress=False,
                      cache_latents=True)
    return Trainer(model, dataset, cfg, tmp_path / name, raw, cache)


def test_resume_takes_the_saved_latent_cache_and_repeats_the_run(tmp_path):
    """A resumed CPU run must not re-encode every sample: the latents come back from the checkpoint, and the
    run still repeats the uninterrupted one."""
    dataset, raw, cache = _setup(tmp_path)
    straight = _cached_trainer(tmp_path, "straight", dataset, raw, cache)
    straight.train()

    first = _cached_trainer(tmp_path, "resumed", dataset, raw, cache)
    first.train(until_step=2)
    held = len(first.latent_cache.store)
    assert held > 0 and (tmp_path / "resumed" / "latent_cache.safetensors").is_file()

    second = _cached_trainer(tmp_path, "resumed", dataset, raw, cache)
    assert second.resume() == 2
    assert len(second.latent_cache.store) == held and int(second.latent_cache.flags.sum()) == held
    for key, latent in first.latent_cache.store.items():
        torch.testing.assert_close(second.latent_cache.store[key], latent)
    second.train()
    np.testing.assert_allclose(second.loss_history, straight.loss_history, rtol=1e-5)


def test_a_latent_cache_from_other_data_is_not_taken(tmp_path):
    dataset, raw, cache = _setup(tmp_path)
    first = _cached_trainer(tmp_path, "run", dataset, raw, cache)
    first.train(until_step=2)
    dataset.sample_stride = 2  # other samples: the saved keys mean something else now
    second = _cached_trainer(tmp_path, "run", dataset, raw, cache)
    second.resume()
    assert len(second.latent_cache.store) == 0


def test_value_conditioning_is_trained_and_saved(tmp_path):
    """A planning model trained with V(s') says so in its checkpoint, and loading it restores that."""
    from cosmos_policy.checkpoint import load_checkpoint
    dataset, raw, cache = _setup(tmp_path)
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    cfg = TrainConfig(steps=1, batch_size=2, warmup_steps=1, save_every=0, save_every_s=0, progress=False,
                      value_conditioning="next_state")
    trainer = Trainer(model, dataset, cfg, tmp_path / "planning", raw, cache)
    assert model.value_conditioning == "next_state"
    trainer.train()
    config = json.loads((tmp_path / "planning" / "config.json").read_text())
    assert config["training"]["value_conditioning"] == "next_state"
    assert load_checkpoint(tmp_path / "planning").model.value_conditioning == "next_state"
    with pytest.raises(ValueError, match="value_conditioning"):
        TrainConfig(value_conditioning="s")
