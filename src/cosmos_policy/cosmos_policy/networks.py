"""Build the DiT (diffusers CosmosTransformer3DModel) and the Wan2.1 VAE (AutoencoderKLWan).

Torchvision-free padding mask: diffusers' Cosmos transformer resizes the padding mask with torchvision
whenever `concat_padding_mask=True`, and torchvision has no build for the CPU torch used here. The
transformer is therefore built with `concat_padding_mask=False` and one more input channel, and
`run_dit` concatenates the (all-zero, unpadded) padding mask itself, already at the latent resolution,
after the condition mask. Channel order and the patch-embedding weight ([hidden, (16 + 1 + 1) * 4]) are
identical to the native network and to a diffusers checkpoint built with `concat_padding_mask=True`.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from .config import NetworkConfig

# Config keys of a diffusers transformer/config.json that must agree with NetworkConfig.
_DIT_ARCH_KEYS = {
    "num_layers": "num_layers",
    "num_attention_heads": "num_attention_heads",
    "attention_head_dim": "attention_head_dim",
    "mlp_ratio": "mlp_ratio",
    "out_channels": "out_channels",
    "text_embed_dim": "text_embed_dim",
    "adaln_lora_dim": "adaln_lora_dim",
    "patch_size": "patch_size",
}
_VAE_ARCH_KEYS = {
    "base_dim": "vae_base_dim", "z_dim": "vae_z_dim", "dim_mult": "vae_dim_mult", "num_res_blocks": "vae_num_res_blocks"
}


def _diffusers():
    # Imported lazily so that `import cosmos_policy` stays light.
    from diffusers import AutoencoderKLWan, CosmosTransformer3DModel

    return CosmosTransformer3DModel, AutoencoderKLWan


def build_transformer(config: NetworkConfig) -> nn.Module:
    """Randomly initialised CosmosTransformer3DModel for `config` (padding-mask channel built in)."""
    CosmosTransformer3DModel, _ = _diffusers()
    model = CosmosTransformer3DModel(
        in_channels=config.in_channels + 1,
        out_channels=config.out_channels,
        num_attention_heads=config.num_attention_heads,
        attention_head_dim=config.attention_head_dim,
        num_layers=config.num_layers,
        mlp_ratio=config.mlp_ratio,
        text_embed_dim=config.text_embed_dim,
        adaln_lora_dim=config.adaln_lora_dim,
        max_size=tuple(config.max_size),
        patch_size=tuple(config.patch_size),
        rope_scale=tuple(config.rope_scale),
        concat_padding_mask=False,
        extra_pos_embed_type=config.extra_pos_embed,
    )
    set_qk_norm_eps(model, config.qk_norm_eps)
    return model


def add_learnable_position_embedding(transformer: nn.Module, config: NetworkConfig) -> nn.Module:
    """A copy of `transformer` (built for `config` without an extra position embedding) with Predict1's
    learnable absolute one added, every trained weight kept. The new embedding starts at zero, as diffusers
    initialises it, so the copy computes what the original did; but diffusers returns emb / (1e-6 + rms(emb)),
    so the first optimiser step sets every token's embedding to rms 1: a trained small DiT's loss jumped from
    0.3 to 13 and was back under 1 after 250 steps. (With eps 1 it grew from zero instead, and 1,500 steps
    left it at rms 0.003: no position to read. From scratch the jump costs nothing.)"""
    if config.extra_pos_embed is not None:
        raise ValueError(f"network extra_pos_embed={config.extra_pos_embed!r}: the transformer already has one")
    target = dataclasses.replace(config, extra_pos_embed="learnable")
    grown = build_transformer(target).to(next(transformer.parameters()).device)
    state = transformer.state_dict()
    missing, unexpected = grown.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("learnable_pos_embed.") for k in missing):
        raise ValueError(f"adding a position embedding: unexpected weights {unexpected[:4]}, missing {missing[:4]}")
    return grown


def set_qk_norm_eps(transformer: nn.Module, eps: float) -> None:
    """Set the q/k RMSNorm eps of every attention (diffusers hard-codes 1e-5; native Predict2 uses 1e-6)."""
    for block in transformer.transformer_blocks:
        for attn in (block.attn1, block.attn2):
            attn.norm_q.eps = eps
            attn.norm_k.eps = eps


def build_vae(config: NetworkConfig, latents_mean: Sequence[float] | None = None,
              latents_std: Sequence[float] | None = None) -> nn.Module:
    """Randomly initialised AutoencoderKLWan for `config`.

    Its per-channel latent mean/std are Wan2.1's unless given: a VAE pretrained for a CPU preset
    (`vae_pretrain`) has its own, which a checkpoint records and passes back here when it rebuilds it.
    """
    _, AutoencoderKLWan = _diffusers()
    stats = {}
    for name, values in (("latents_mean", latents_mean), ("latents_std", latents_std)):
        if values is not None:
            if len(values) != config.vae_z_dim:
                raise ValueError(f"{name}: {len(values)} values for a VAE with {config.vae_z_dim} latent channels")
            stats[name] = [float(v) for v in values]
    return AutoencoderKLWan(
        base_dim=config.vae_base_dim,
        z_dim=config.vae_z_dim,
        dim_mult=list(config.vae_dim_mult),
        num_res_blocks=config.vae_num_res_blocks,
        temperal_downsample=list(config.vae_temporal_downsample),
        **stats,
    )


def vae_fingerprint(vae: nn.Module) -> str:
    """sha256 of a VAE's weights and latent statistics: what cached latents were encoded with."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    for name in ("latents_mean", "latents_std"):
        digest.update(json.dumps([float(v) for v in vae.config[name]]).encode())
    return digest.hexdigest()


def count_parameters(module: nn.Module) -> int:
    """Number of parameters (works on the meta device)."""
    return sum(p.numel() for p in module.parameters())


def run_dit(
    transformer: nn.Module,
    latents: torch.Tensor,
    timestep: torch.Tensor,
    condition_mask: torch.Tensor,
    text_embeddings: torch.Tensor,
) -> torch.Tensor:
    """One DiT evaluation.

    latents (B, C, T, H, W); timestep (B, T) per latent frame; condition_mask (B, T) 1 = clean frame;
    text_embeddings (B, L, D), already zero beyond each prompt's length (no attention mask, as native).
    """
    b, _, t, h, w = latents.shape
    dtype = latents.dtype
    cond = condition_mask.to(dtype)[:, None, :, None, None].expand(b, 1, t, h, w)
    padding = torch.zeros((b, 1, t, h, w), dtype=dtype, device=latents.device)
    out = transformer(
        hidden_states=latents,
        # float32 timesteps: the sinusoidal projection casts to the network dtype itself.
        timestep=timestep.float()[:, None, :, None, None],
        encoder_hidden_states=text_embeddings.to(dtype),
        condition_mask=torch.cat([cond, padding], dim=1),
        fps=None,
        return_dict=False,
    )[0]
    return out


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (expected a diffusers-format model folder)")
    return json.loads(path.read_text())


def _load_safetensors_folder(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    index = folder / "diffusion_pytorch_model.safetensors.index.json"
    single = folder / "diffusion_pytorch_model.safetensors"
    if single.is_file():
        return load_file(str(single))
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state: dict[str, torch.Tensor] = {}
        for shard in shards:
            state.update(load_file(str(folder / shard)))
        return state
    raise FileNotFoundError(
        f"{folder}: no diffusion_pytorch_model.safetensors(.index.json) (only safetensors weights are loaded)"
    )


def load_state_strict(module: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """load_state_dict that names missing / unexpected / mis-shaped keys in its error."""
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [
        f"{k}: got {tuple(state[k].shape)}, expected {tuple(own[k].shape)}"
        for k in sorted(set(own) & set(state))
        if tuple(own[k].shape) != tuple(state[k].shape)
    ]
    if missing or unexpected or shapes:
        raise ValueError(
            f"{what}: weights do not match the network config; missing {missing[:8]}"
            f"{' ...' if len(missing) > 8 else ''} ({len(missing)}), unexpected {unexpected[:8]}"
            f"{' ...' if len(unexpected) > 8 else ''} ({len(unexpected)}), shape mismatches {shapes[:8]}"
        )
    module.load_state_dict(state, strict=True)


def _check_arch(found: dict, config: NetworkConfig, keys: dict[str, str], what: str) -> None:
    bad = []
    for theirs, ours in keys.items():
        if theirs in found:
            a, b = found[theirs], getattr(config, ours)
            if (list(a) if isinstance(a, (list, tuple)) else a) != (list(b) if isinstance(b, (list, tuple)) else b):
                bad.append(f"{theirs}={a} (config {ours}={b})")
    if bad:
        raise ValueError(f"{what}: architecture differs from the network config: {', '.join(bad)}")


def widen_patch_embed(
    weight: torch.Tensor, in_channels_have: int, in_channels_want: int, patch_numel: int
) -> torch.Tensor:
    """Insert zero columns for missing condition-mask channels before the padding-mask channel."""
    hidden = weight.shape[0]
    w = weight.reshape(hidden, in_channels_have, patch_numel)
    extra = torch.zeros(hidden, in_channels_want - in_channels_have, patch_numel, dtype=w.dtype)
    return torch.cat([w[:, :-1], extra, w[:, -1:]], dim=1).reshape(hidden, -1)


def load_transformer_from_diffusers(folder: str | Path, config: NetworkConfig) -> nn.Module:
    """Load `folder/transformer` (a diffusers CosmosTransformer3DModel) into our build of `config`."""
    folder = Path(folder) / "transformer"
    found = _read_json(folder / "config.json")
    _check_arch(found, config, _DIT_ARCH_KEYS, str(folder))
    state = _load_safetensors_folder(folder)
    model = build_transformer(config)
    want = config.in_channels + 1
    have = int(found.get("in_channels", config.in_channels)) + (1 if found.get("concat_padding_mask", True) else 0)
    if have < want:
        # Predict2 Text2Image checkpoints lack the condition-mask input; start it at zero.
        patch_numel = config.patch_size[0] * config.patch_size[1] * config.patch_size[2]
        state["patch_embed.proj.weight"] = widen_patch_embed(state["patch_embed.proj.weight"], have, want, patch_numel)
    load_state_strict(model, state, str(folder))
    return model


def load_vae_from_diffusers(folder: str | Path, config: NetworkConfig) -> nn.Module:
    """Load `folder/vae` (a diffusers AutoencoderKLWan) into our build of `config`."""
    folder = Path(folder) / "vae"
    found = _read_json(folder / "config.json")
    _check_arch(found, config, _VAE_ARCH_KEYS, str(folder))
    vae = build_vae(config, found.get("latents_mean"), found.get("latents_std"))
    load_state_strict(vae, _load_safetensors_folder(folder), str(folder))
    return vae


def build_networks(config: NetworkConfig, base_dir: str | Path | None = None) -> tuple[nn.Module, nn.Module]:
    """(transformer, vae): from a local diffusers-format folder when given, else random init."""
    if base_dir is None:
        return build_transformer(config), build_vae(config)
    base = Path(base_dir)
    if not base.is_dir():
        raise FileNotFoundError(f"base weights folder {base}: not found (expected transformer/ and vae/ inside)")
    return load_transformer_from_diffusers(base, config), load_vae_from_diffusers(base, config)


def latent_stats(vae: nn.Module, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel latent mean and std of the VAE, shaped (1, C, 1, 1, 1)."""
    mean = torch.tensor(vae.config.latents_mean, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=device, dtype=dtype).view(1, -1, 1, 1, 1)
    return mean, std


def encode_normalised(vae: nn.Module, pixels: torch.Tensor) -> torch.Tensor:
    """Pixel video (B, 3, 1 + 4k, H, W) in [-1, 1] -> normalised latents (B, 16, 1 + k, H/8, W/8), one pass."""
    vae_dtype = next(vae.parameters()).dtype
    mu = vae.encode(pixels.to(vae_dtype)).latent_dist.mode()
    mean, std = latent_stats(vae, mu.device, mu.dtype)
    return (mu - mean) / std


def decode_normalised(vae: nn.Module, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents (B, 16, 1 + k, h, w) -> pixel video (B, 3, 1 + 4k, 8h, 8w) in [-1, 1]."""
    vae_dtype = next(vae.parameters()).dtype
    mean, std = latent_stats(vae, latents.device, vae_dtype)
    return vae.decode(latents.to(vae_dtype) * std + mean).sample
