"""Trainer options: activation checkpointing and torch.compile change nothing numerically (to float error);
accumulation and bf16 run."""

import dataclasses

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


def test_compiled_dit_trains_as_the_plain_one_and_saves_plain_names(tmp_path):
    plain, a = _run(tmp_path, "plain")
    compiled, b = _run(tmp_path, "compiled", compile=True)
    assert compiled.model.dit._compiled_call_impl is not None  # the option reached the module
    np.testing.assert_allclose(a.loss_history, b.loss_history, rtol=1e-4)
    for x, y in zip(plain.model.dit.parameters(), compiled.model.dit.parameters()):
        torch.testing.assert_close(x, y, rtol=1e-4, atol=1e-6)
    # the checkpoint's tensor names are the uncompiled module's: it loads for inference and resumes as usual
    assert b.checkpoint is not None
    saved = load_file(str(b.checkpoint / "model.safetensors"))
    assert not any("_orig_mod" in name for name in saved)
    assert set(saved) == set(load_file(str(a.checkpoint / "model.safetensors")))


def test_compile_without_a_cpp_compiler_is_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr("cosmos_policy.train.shutil.which", lambda name: None)
    with pytest.raises(RuntimeError, match="--compile on a CPU needs a C\\+\\+ compiler.*without --compile"):
        _run(tmp_path, "no_compiler", compile=True)
    assert not (tmp_path / "no_compiler" / "ckpt").exists()


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
    # with cached latents too (the float16 cache is read under CPU autocast): 4 steps, the second pass cached
    cached, bf16_cached = _run(tmp_path, "bf16_cached", augment=False, steps=4, precision="bf16", cache_latents=True)
    assert len(cached.latent_cache.store) == 6 and np.all(np.isfinite(bf16_cached.loss_history))


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


def test_hidden_proprio_is_zeros_for_the_drawn_share_and_reproducible():
    from cosmos_policy.train import hide_proprio

    proprio = torch.rand(4000, 14) * 2 - 1
    hidden = hide_proprio(proprio, 0.25, torch.Generator().manual_seed(3))
    zero_rows = (hidden == 0).all(dim=1)
    assert 0.22 < float(zero_rows.float().mean()) < 0.28
    torch.testing.assert_close(hidden[~zero_rows], proprio[~zero_rows])  # the others untouched
    torch.testing.assert_close(hidden, hide_proprio(proprio, 0.25, torch.Generator().manual_seed(3)))
    assert (hide_proprio(proprio, 1.0, torch.Generator()) == 0).all()
    torch.testing.assert_close(hide_proprio(proprio, 0.0, torch.Generator()), proprio)


def test_a_policy_trained_without_proprio_gets_none_at_inference(tmp_path, monkeypatch):
    from tiny_model import observation

    from cosmos_policy.checkpoint import load_checkpoint
    from cosmos_policy.policy import CosmosPolicy

    seen = []
    original = CosmosPolicyModel.training_loss

    def spy(self, batch, *args, **kwargs):
        seen.append(batch["proprio"].clone())
        return original(self, batch, *args, **kwargs)

    monkeypatch.setattr(CosmosPolicyModel, "training_loss", spy)
    trainer, _ = _run(tmp_path, "blind_to_state", proprio_dropout=1.0)
    assert seen and all((p == 0).all() for p in seen)  # the network never saw a proprio value
    seen.clear()
    _run(tmp_path, "with_state")
    assert any((p != 0).any() for p in seen)  # the default (the release) does
    saved = trainer.save()
    assert load_checkpoint(saved).model.proprio_input is False
    policy = CosmosPolicy.from_checkpoint(saved, camera_hw=None)
    obs = observation(policy.layout, task="t")
    prepared = policy.prepare(obs)
    assert (prepared.proprio == 0).all()
    # the robot state is still checked: hiding it from the network is no excuse to accept a bad one
    with pytest.raises(ValueError, match="proprio"):
        policy.prepare({**obs, "proprio": np.full(14, np.nan)})
    # and a checkpoint trained with proprio keeps it
    with_state = CosmosPolicy.from_checkpoint(tmp_path / "with_state" / "ckpt", camera_hw=None)
    assert with_state.model.proprio_input and (with_state.prepare(obs).proprio != 0).any()


def test_proprio_dropout_outside_zero_to_one_is_refused():
    with pytest.raises(ValueError, match="proprio_dropout=1.5"):
        TrainConfig(proprio_dropout=1.5)


def test_action_loss_weight_scales_the_action_frame_only(monkeypatch):
    from cosmos_policy import diffusion

    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    b, t = 2, LAYOUT.num_latent_frames
    batch = {
        "proprio": torch.zeros(b, 14), "future_proprio": torch.zeros(b, 14), "actions": torch.zeros(b, 50, 14),
        "value": torch.zeros(b), "text_embeddings": torch.zeros(b, NETWORK.text_max_tokens, NETWORK.text_embed_dim),
        "objective": torch.tensor([0, 2]),  # policy (action among its 6 targets), value (action is an input)
    }
    monkeypatch.setattr(diffusion, "sample_training_sigma", lambda *a, **k: torch.tensor([1.0, 1.0]))
    action = LAYOUT.index("action")
    miss = torch.ones(t)
    miss[action] = 2.0  # squared error 4 on the action frame, 1 on every other target frame
    monkeypatch.setattr(CosmosPolicyModel, "denoise",
                        lambda self, xt, sigma, x_clean, clean, text: torch.where(
                            clean[:, None, :, None, None], x_clean, x_clean + miss[None, None, :, None, None]))
    x0 = torch.zeros(b, 16, t, 8, 8)
    losses = {w: float(model.training_loss(batch, latents=x0, action_weight=w)[0]) for w in (1.0, 5.0)}
    # sigma 1: weight 4. Policy sample: action 4 x w + 5 other targets x 1; value sample: its value frame, 1
    for w, loss in losses.items():
        assert loss == pytest.approx(10 * 4 * ((4 * w + 5) / t + 1 / t) / 2, rel=1e-6)


def test_action_loss_weight_must_be_positive():
    with pytest.raises(ValueError, match="action_loss_weight=0"):
        TrainConfig(action_loss_weight=0.0)
