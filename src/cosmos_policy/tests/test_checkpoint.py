"""Checkpoint directories: save -> load gives identical outputs; wrong layout / missing files are named."""

from __future__ import annotations

import json

import pytest
import torch

from cosmos_policy.checkpoint import load_checkpoint
from cosmos_policy.config import SamplerConfig
from cosmos_policy.objectives import clean_masks
from tiny_model import random_latents, tiny_model, write_checkpoint


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    model = tiny_model(seed=3).eval()
    directory = write_checkpoint(tmp_path_factory.mktemp("ckpt"), model, SamplerConfig(action_steps=7))
    return model, directory


def _denoise(model, seed=0):
    x = random_latents(model, 2, seed=seed)
    clean = clean_masks(model.layout, torch.tensor([0, 1]))
    text = torch.randn(2, 8, model.network_config.text_embed_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model.denoise(x * 3, torch.tensor([5.0, 20.0]), x, clean, text)


def test_save_load_gives_identical_outputs(saved):
    model, directory = saved
    loaded = load_checkpoint(directory)
    assert loaded.layout == model.layout and loaded.network == model.network_config
    assert loaded.sampler.action_steps == 7
    assert torch.equal(_denoise(loaded.model), _denoise(model))
    pixels = torch.rand(1, 3, 5, 64, 64) * 2 - 1
    with torch.no_grad():
        assert torch.equal(loaded.model.vae.encode(pixels).latent_dist.mode(), model.vae.encode(pixels).latent_dist.mode())
    assert loaded.statistics["actions_min"].shape == (14,)
    assert loaded.text_cache is not None and len(loaded.text_cache) == 1
    eps = {b.attn1.norm_q.eps for b in loaded.model.dit.transformer_blocks}
    assert eps == {1e-6}


def test_other_layout_is_refused(saved):
    _, directory = saved
    with pytest.raises(ValueError, match="trained for layout 'aloha', expected 'libero'"):
        load_checkpoint(directory, expected_layout="libero")


def test_missing_files_are_named(saved, tmp_path):
    _, directory = saved
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((directory / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match="missing model.safetensors"):
        load_checkpoint(partial)
    with pytest.raises(FileNotFoundError, match="missing config.json"):
        load_checkpoint(tmp_path)
    (partial / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    with pytest.raises(FileNotFoundError, match="missing dataset_statistics.json"):
        load_checkpoint(partial, require_statistics=True)


def test_weights_of_another_network_are_named(saved, tmp_path):
    _, directory = saved
    config = json.loads((directory / "config.json").read_text())
    config["network"]["num_layers"] = 3
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps(config))
    (other / "model.safetensors").write_bytes((directory / "model.safetensors").read_bytes())
    with pytest.raises(ValueError, match="transformer_blocks.2"):
        load_checkpoint(other)


def test_bf16_load_casts_weights(saved):
    _, directory = saved
    loaded = load_checkpoint(directory, dtype=torch.bfloat16)
    assert next(loaded.model.dit.parameters()).dtype == torch.bfloat16
    out = _denoise(loaded.model)
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
