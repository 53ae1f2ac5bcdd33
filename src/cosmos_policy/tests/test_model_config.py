"""Network presets (2B counted on the meta device), layouts as data, the torchvision-free DiT path."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from cosmos_policy.config import LayoutConfig, NetworkConfig, available_layouts, load_layout
from cosmos_policy.networks import build_transformer, build_vae, count_parameters, run_dit


def test_2b_parameter_count_on_meta_device():
    config = NetworkConfig.preset_config("2b")
    with torch.device("meta"):
        dit = build_transformer(config)
        vae = build_vae(config)
    assert round(count_parameters(dit) / 1e9, 3) == 1.956
    assert round(count_parameters(vae) / 1e6) == 127
    assert tuple(dit.patch_embed.proj.weight.shape) == (2048, 72)
    assert len(dit.transformer_blocks) == 28
    assert dit.config.rope_scale == (1.0, 3.0, 3.0)
    eps = {m.eps for b in dit.transformer_blocks for m in (b.attn1.norm_q, b.attn1.norm_k, b.attn2.norm_q, b.attn2.norm_k)}
    assert eps == {1e-6}


def test_layouts_match_the_method():
    assert set(available_layouts()) >= {"aloha", "libero", "robocasa"}
    aloha = load_layout("aloha")
    assert [s.name for s in aloha.slots] == [
        "blank", "proprio", "image/cam_left_wrist", "image/cam_right_wrist", "image/cam_high", "action",
        "future_proprio", "future_image/cam_left_wrist", "future_image/cam_right_wrist", "future_image/cam_high",
        "value",
    ]
    assert (aloha.action_chunk, aloha.action_dim, aloha.proprio_dim, aloha.num_pixel_frames) == (50, 14, 14, 41)
    libero = load_layout("libero")
    assert (libero.num_latent_frames, len(libero.cameras), libero.action_chunk, libero.action_dim) == (9, 2, 16, 7)
    robocasa = load_layout("robocasa")
    assert (robocasa.num_latent_frames, len(robocasa.cameras), robocasa.action_chunk) == (11, 3, 32)
    assert LayoutConfig.from_dict(aloha.to_dict()) == aloha


def test_every_layout_fits_every_preset_frame():
    for name in available_layouts():
        for preset in ("tiny", "small", "medium", "2b"):
            load_layout(name).check_fits(NetworkConfig.preset_config(preset).latent_frame_numel)
    assert NetworkConfig.preset_config("2b").latent_frame_numel == 16 * 28 * 28


def test_vector_too_long_for_a_frame_names_the_problem():
    data = load_layout("aloha").to_dict()
    data["action_chunk"] = 100
    with pytest.raises(ValueError, match="action vector of 1400 values does not fit one latent frame of 1024"):
        LayoutConfig.from_dict(data).check_fits(NetworkConfig.preset_config("tiny").latent_frame_numel)


def test_bad_layout_and_preset_are_refused():
    data = load_layout("aloha").to_dict()
    data["slots"] = [s for s in data["slots"] if s != "value"]
    with pytest.raises(ValueError, match="missing the 'value' slot"):
        LayoutConfig.from_dict(data)
    with pytest.raises(ValueError, match="unknown"):
        load_layout("no_such_robot")
    with pytest.raises(ValueError, match="unknown keys"):
        NetworkConfig.from_dict({"num_layerz": 3})
    assert NetworkConfig.from_dict(NetworkConfig.preset_config("tiny").to_dict()) == NetworkConfig.preset_config("tiny")


class _NearestResize:
    """Stand-in for torchvision's resize, used only to run diffusers' own padding-mask path."""

    class InterpolationMode:
        NEAREST = "nearest"

    class functional:  # noqa: N801 - mirrors torchvision.transforms.functional
        @staticmethod
        def resize(x, size, interpolation=None):
            return torch.nn.functional.interpolate(x, size=size, mode="nearest")


def test_torchvision_free_padding_mask_matches_diffusers_padding_path(monkeypatch):
    from diffusers import CosmosTransformer3DModel
    from diffusers.models.transformers import transformer_cosmos

    torch.manual_seed(0)
    config = NetworkConfig.preset_config("tiny")
    ours = build_transformer(config).eval()
    upstream = CosmosTransformer3DModel(
        **{**dict(ours.config), "in_channels": config.in_channels, "concat_padding_mask": True}
    ).eval()
    upstream.load_state_dict(ours.state_dict())
    for block in upstream.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.norm_q.eps = attn.norm_k.eps = config.qk_norm_eps
    monkeypatch.setattr(transformer_cosmos, "transforms", _NearestResize, raising=False)
    b, t, s = 2, 3, config.latent_size
    x = torch.randn(b, 16, t, s, s)
    timestep = torch.rand(b, t)
    cond = torch.tensor([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    text = torch.randn(b, 4, config.text_embed_dim)
    with torch.no_grad():
        got = run_dit(ours, x, timestep, cond, text)
        want = upstream(
            hidden_states=x,
            timestep=timestep[:, None, :, None, None],
            encoder_hidden_states=text,
            condition_mask=cond[:, None, :, None, None].expand(b, 1, t, s, s),
            padding_mask=torch.zeros(1, 1, config.image_size_px, config.image_size_px),
            fps=None,
            return_dict=False,
        )[0]
    assert got.shape == (b, 16, t, s, s)
    assert torch.equal(got, want)


def test_dit_runs_with_torchvision_import_blocked():
    code = (
        "import sys; sys.modules['torchvision'] = None\n"
        "import torch\n"
        "from cosmos_policy.config import NetworkConfig\n"
        "from cosmos_policy.networks import build_transformer, run_dit\n"
        "c = NetworkConfig.preset_config('tiny'); m = build_transformer(c)\n"
        "text = torch.randn(1, 3, c.text_embed_dim)\n"
        "y = run_dit(m, torch.randn(1, 16, 2, 8, 8), torch.zeros(1, 2), torch.zeros(1, 2), text)\n"
        "assert y.shape == (1, 16, 2, 8, 8) and torch.isfinite(y).all()\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def _env():
    import os

    import cosmos_policy

    root = os.path.dirname(os.path.dirname(cosmos_policy.__file__))
    return {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}


@pytest.mark.parametrize("preset", ["tiny", "small", "medium", "2b"])
def test_dit_width_holds_one_patch_token(preset):
    # narrower than a patch token's latent values, the DiT cannot carry a token through (the tiny model
    # then stays at the dataset-mean action error, tests/test_train_learns.py)
    c = NetworkConfig.preset_config(preset)
    token_values = c.vae_z_dim * c.patch_size[0] * c.patch_size[1] * c.patch_size[2]
    assert c.num_attention_heads * c.attention_head_dim >= token_values


def test_presets_grow_from_tiny_to_2b():
    # each preset has more DiT width x depth and at least the image size of the one before: `medium` sits
    # between the CPU-trained `small` and the 2B model, as its place in the CLI says
    sizes = []
    for preset in ("tiny", "small", "medium", "2b"):
        c = NetworkConfig.preset_config(preset)
        sizes.append((c.num_layers * (c.num_attention_heads * c.attention_head_dim) ** 2, c.image_size_px))
    assert [s[0] for s in sizes] == sorted(s[0] for s in sizes) and len({s[0] for s in sizes}) == 4
    assert [s[1] for s in sizes] == sorted(s[1] for s in sizes)
    assert NetworkConfig.preset_config("medium").latent_size == 16  # 128 px: 4x the small preset's tokens
