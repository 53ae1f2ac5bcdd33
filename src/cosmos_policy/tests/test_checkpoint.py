"""Checkpoint directories: save -> load gives identical outputs; wrong layout / missing files are named."""

from __future__ import annotations

import json

import pytest
import torch
from tiny_model import random_latents, tiny_model, write_checkpoint

from cosmos_policy.checkpoint import load_checkpoint, save_checkpoint
from cosmos_policy.config import SamplerConfig
from cosmos_policy.objectives import clean_masks


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


def test_explicit_dit_state_is_written_instead_of_the_models(saved, tmp_path):
    model, _ = saved
    other = tiny_model(seed=4)
    # as an FSDP run hands over the full state gathered on rank 0 (its model.dit holds shards only)
    save_checkpoint(tmp_path / "ckpt", model, dit_state=other.dit.state_dict())
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(_denoise(loaded.model), _denoise(other.eval()))
    assert not torch.equal(_denoise(loaded.model), _denoise(model))
    assert torch.equal(loaded.model.vae.decoder.conv_out.weight, model.vae.decoder.conv_out.weight)


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


def _save_diffusers_base(directory, model, in_channels, concat_padding_mask=True):
    from diffusers import CosmosTransformer3DModel

    upstream = CosmosTransformer3DModel(
        **{**dict(model.dit.config), "in_channels": in_channels, "concat_padding_mask": concat_padding_mask}
    )
    state = dict(model.dit.state_dict())
    if in_channels == 16:
        weight = state["patch_embed.proj.weight"].reshape(-1, 18, 4)
        state["patch_embed.proj.weight"] = torch.cat([weight[:, :16], weight[:, 17:]], dim=1).reshape(-1, 17 * 4)
    upstream.load_state_dict(state)
    upstream.save_pretrained(directory / "transformer")
    model.vae.save_pretrained(directory / "vae")


def test_base_weights_load_from_a_diffusers_folder(tmp_path):
    from cosmos_policy.diffusion import CosmosPolicyModel

    source = tiny_model(seed=4).eval()
    _save_diffusers_base(tmp_path / "video2world", source, in_channels=17)
    loaded = CosmosPolicyModel(source.network_config, source.layout, base_dir=tmp_path / "video2world").eval()
    assert torch.equal(_denoise(loaded), _denoise(source))
    # A checkpoint without the condition-mask input gets a zero-initialised column for it.
    _save_diffusers_base(tmp_path / "text2image", source, in_channels=16)
    widened = CosmosPolicyModel(source.network_config, source.layout, base_dir=tmp_path / "text2image")
    weight = widened.dit.patch_embed.proj.weight.reshape(-1, 18, 4)
    assert torch.all(weight[:, 16] == 0)
    assert torch.equal(weight[:, 17], source.dit.patch_embed.proj.weight.reshape(-1, 18, 4)[:, 17])


def test_base_folder_of_another_architecture_is_named(tmp_path):
    from cosmos_policy.config import NetworkConfig
    from cosmos_policy.diffusion import CosmosPolicyModel

    source = tiny_model(seed=4)
    _save_diffusers_base(tmp_path, source, in_channels=17)
    other = NetworkConfig.from_dict({**source.network_config.to_dict(), "num_layers": 3})
    with pytest.raises(ValueError, match=r"num_layers=2 \(config num_layers=3\)"):
        CosmosPolicyModel(other, source.layout, base_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match="base weights folder"):
        CosmosPolicyModel(source.network_config, source.layout, base_dir=tmp_path / "nowhere")
