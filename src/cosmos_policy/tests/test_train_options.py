"""Trainer options: activation checkpointing changes nothing numerically; accumulation and bf16 run."""

import dataclasses

import numpy as np
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel
from cosmos_policy.train import StepBatchSampler, TrainConfig, Trainer

NETWORK = NetworkConfig.preset_config("tiny")
LAYOUT = dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64))


def _run(tmp_path, name, augment=True, **options):
    paths = write_synthetic_episodes(tmp_path / name / "data" / "t", count=1, steps=6)
    raw = compute_dataset_statistics(paths)
    spec = SampleSpec.from_configs(LAYOUT, NETWORK)
    demos = load_episodes(paths, spec, is_demo=True)
    cache = build_text_cache({"t"}, NETWORK.text_embed_dim, max_length=NETWORK.text_max_tokens)
    dataset = EpisodeDataset(demos, spec, statistics_from_dict(raw), cache, augment=augment)
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    settings = {"steps": 2, "batch_size": 2, "warmup_steps": 1, "save_every": 0, "progress": False, **options}
    config = TrainConfig(**settings)
    trainer = Trainer(model, dataset, config, tmp_path / name / "ckpt", raw, cache)
    return trainer, trainer.train()


def test_activation_checkpointing_gives_the_same_training(tmp_path):
    plain, a = _run(tmp_path, "plain")
    checkpointed, b = _run(tmp_path, "ckpt", activation_checkpointing=True)
    assert checkpointed.model.dit.gradient_checkpointing
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-6)
    for x, y in zip(plain.model.dit.parameters(), checkpointed.model.dit.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-7)


def test_cached_latents_give_the_same_training(tmp_path, monkeypatch):
    # 4 steps of batch 2 over 6 items: the second pass takes its latents from the cache
    encoded = []
    original = CosmosPolicyModel.encode_batch

    def counting(self, batch):
        encoded.append(batch["images"].shape[0])
        return original(self, batch)

    monkeypatch.setattr(CosmosPolicyModel, "encode_batch", counting)
    _, plain = _run(tmp_path, "plain", augment=False, steps=4)
    assert sum(encoded) == 8
    encoded.clear()
    cached_trainer, cached = _run(tmp_path, "cached", augment=False, steps=4, cache_latents=True,
                                  latent_cache_dtype="float32")
    assert sum(encoded) == 6 and len(cached_trainer.latent_cache.store) == 6
    assert "encode_batch" not in vars(cached_trainer.model)  # the model is not patched
    np.testing.assert_allclose(cached.loss_history, plain.loss_history, rtol=1e-6)


def test_gradient_accumulation_and_cpu_bf16_autocast_run(tmp_path):
    _, accumulated = _run(tmp_path, "accum", grad_accum=2, batch_size=1)
    assert accumulated.final_step == 2 and np.all(np.isfinite(accumulated.loss_history))
    _, bf16 = _run(tmp_path, "bf16", precision="bf16")
    assert np.all(np.isfinite(bf16.loss_history))


def test_step_sampler_positions_are_disjoint_across_ranks_and_resume_exactly():
    ranks = [list(StepBatchSampler(10, 2, seed=1, start_micro_step=0, num_micro_steps=5, rank=r, world_size=2))
             for r in (0, 1)]
    # positions 0..9 (one pass): rank 0 micro-steps 0-2 and rank 1 micro-steps 0-1
    first_pass = [i for batch in ranks[0][:3] + ranks[1][:2] for i in batch]
    assert sorted(first_pass) == list(range(10))  # one permutation covers every item once
    whole = list(StepBatchSampler(10, 2, seed=1, start_micro_step=0, num_micro_steps=6))
    tail = list(StepBatchSampler(10, 2, seed=1, start_micro_step=4, num_micro_steps=2))
    assert whole[4:] == tail
    assert all(i >= 10 for batch in whole[5:] for i in batch)  # second pass indices carry the pass
