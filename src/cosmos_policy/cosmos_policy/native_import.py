"""Import the release: native Predict2 DiT names -> diffusers names, and the T5 cache without unpickling.

Native names (with the `net.` prefix) map onto diffusers' CosmosTransformer3DModel one to one;
TransformerEngine `_extra_state` entries and buffers (`pos_embedder.*`, `accum_*` counters) carry no
weights and are skipped.
"""

from __future__ import annotations

import io
import pickle
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .networks import load_state_strict

NATIVE_PREFIX = "net."

# (native name, diffusers name); "{i}" is a block index.
_NAME_PAIRS: list[tuple[str, str]] = [
    ("x_embedder.proj.1.weight", "patch_embed.proj.weight"),
    ("t_embedder.1.linear_1.weight", "time_embed.t_embedder.linear_1.weight"),
    ("t_embedder.1.linear_2.weight", "time_embed.t_embedder.linear_2.weight"),
    ("t_embedding_norm.weight", "time_embed.norm.weight"),
    ("final_layer.adaln_modulation.1.weight", "norm_out.linear_1.weight"),
    ("final_layer.adaln_modulation.2.weight", "norm_out.linear_2.weight"),
    ("final_layer.linear.weight", "proj_out.weight"),
    ("blocks.{i}.mlp.layer1.weight", "transformer_blocks.{i}.ff.net.0.proj.weight"),
    ("blocks.{i}.mlp.layer2.weight", "transformer_blocks.{i}.ff.net.2.weight"),
]
for _native_attn, _ours_attn in (("self_attn", "attn1"), ("cross_attn", "attn2")):
    for _native_p, _ours_p in (("q_proj", "to_q"), ("k_proj", "to_k"), ("v_proj", "to_v"), ("output_proj", "to_out.0"),
                               ("q_norm", "norm_q"), ("k_norm", "norm_k")):
        _NAME_PAIRS.append((f"blocks.{{i}}.{_native_attn}.{_native_p}.weight",
                            f"transformer_blocks.{{i}}.{_ours_attn}.{_ours_p}.weight"))
for _native_mod, _ours_norm in (("self_attn", "norm1"), ("cross_attn", "norm2"), ("mlp", "norm3")):
    for _k in (1, 2):
        _NAME_PAIRS.append((f"blocks.{{i}}.adaln_modulation_{_native_mod}.{_k}.weight",
                            f"transformer_blocks.{{i}}.{_ours_norm}.linear_{_k}.weight"))

# Native entries without weights: TransformerEngine extra state, RoPE tables, training counters.
_SKIPPED = re.compile(r"(.*\._extra_state$|^_extra_state$|^pos_embedder\.|^accum_)")


def _compile(template: str) -> re.Pattern:
    return re.compile("^" + re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)") + "$")


_NATIVE_TO_OURS = [(_compile(n), d) for n, d in _NAME_PAIRS]
_OURS_TO_NATIVE = [(_compile(d), n) for n, d in _NAME_PAIRS]


def _rename(name: str, table: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, template in table:
        match = pattern.match(name)
        if match:
            return template.replace("{i}", match.group("i")) if "i" in match.groupdict() else template
    return None


def is_skipped_native_key(name: str) -> bool:
    """True for native entries that hold no weights (extra state, buffers, counters)."""
    return bool(_SKIPPED.match(name.removeprefix(NATIVE_PREFIX)))


def native_to_diffusers_key(name: str) -> str | None:
    """Diffusers name of a native `net.` weight name; None when the name is not a known weight."""
    if not name.startswith(NATIVE_PREFIX):
        return None
    return _rename(name[len(NATIVE_PREFIX):], _NATIVE_TO_OURS)


def diffusers_to_native_key(name: str) -> str | None:
    """Native `net.`-prefixed name of a diffusers transformer weight name; None when unknown."""
    native = _rename(name, _OURS_TO_NATIVE)
    return None if native is None else NATIVE_PREFIX + native


def convert_native_state_dict(native: dict[str, Any]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(diffusers state dict, skipped native names); unknown native names raise, named."""
    out: dict[str, torch.Tensor] = {}
    skipped: list[str] = []
    unknown: list[str] = []
    for name, value in native.items():
        if is_skipped_native_key(name):
            skipped.append(name)
            continue
        ours = native_to_diffusers_key(name)
        if ours is None or not isinstance(value, torch.Tensor):
            unknown.append(name)
            continue
        out[ours] = value
    if unknown:
        raise ValueError(
            f"native checkpoint: {len(unknown)} unknown entries {unknown[:10]}{' ...' if len(unknown) > 10 else ''} "
            f"(expected Predict2 DiT names with the 'net.' prefix)"
        )
    return out, skipped


def diffusers_to_native_state_dict(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Inverse map: a diffusers CosmosTransformer3DModel state dict in the native `net.` naming."""
    out = {}
    for name, value in state.items():
        native = diffusers_to_native_key(name)
        if native is None:
            raise ValueError(f"diffusers weight {name!r} has no native name")
        out[native] = value
    return out


def load_native_into(transformer: nn.Module, native: dict[str, Any]) -> list[str]:
    """Load a native-named state dict into our transformer (strict); returns the skipped names."""
    state, skipped = convert_native_state_dict(native)
    own = transformer.state_dict()
    state = {k: v.to(own[k].dtype) if k in own else v for k, v in state.items()}
    load_state_strict(transformer, state, "native checkpoint")
    return skipped


def load_release_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Flat `net.` state dict of a release checkpoint: .pt via torch.load(weights_only=True), or .safetensors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: release checkpoint not found")
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: release checkpoint is empty (0 bytes): the download or copy failed; fetch it again")
    if path.suffix == ".safetensors":
        from .checkpoint import read_safetensors

        return read_safetensors(path, "release checkpoint")
    try:
        # TransformerEngine `_extra_state` entries may be BytesIO blobs: they only hold bytes (and are skipped).
        with torch.serialization.safe_globals([io.BytesIO]):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        # PyTorch's own message suggests weights_only=False, i.e. running the file's code: never pass that on
        raise ValueError(
            f"{path}: refused, it holds objects that torch.load(weights_only=True) will not build "
            f"({_first_reason(error)}). Only plain tensor checkpoints are imported: convert it to .safetensors "
            f"on a trusted machine"
        ) from None
    except (RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{path}: not a readable PyTorch checkpoint ({_first_reason(error)}): it is probably "
                         f"truncated or not a .pt file; fetch it again") from None
    if not isinstance(state, dict) or not any(str(k).startswith(NATIVE_PREFIX) for k in state):
        raise ValueError(f"{path}: expected a flat dict of 'net.<name>' tensors (the release's DiT checkpoint)")
    return state


def _first_reason(error: BaseException) -> str:
    """The cause in PyTorch's error text, without its advice to load with weights_only=False."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    keep = [line for line in lines if "weights_only" not in line and "WeightsUnpickler" not in line
            and "trust" not in line.lower() and "documentation" not in line.lower()]
    text = "; ".join(line.split(". ")[0].rstrip(".") for line in keep[:2]) or type(error).__name__
    return text[:300]


def _load_storage_bytes(data: bytes):
    # Replaces torch.storage._load_from_bytes, which would call torch.load(weights_only=False).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return torch.load(io.BytesIO(data), weights_only=True)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    untyped = storage.untyped_storage() if hasattr(storage, "untyped_storage") else storage
    dtype = storage.dtype if hasattr(storage, "dtype") else torch.uint8
    tensor = torch.empty((0,), dtype=dtype)
    tensor.set_(untyped, storage_offset, size, stride)
    return tensor.clone()


class _RestrictedUnpickler(pickle.Unpickler):
    """Builds only containers, numpy arrays and CPU tensors; every other global is refused."""

    _ALLOWED = {
        ("collections", "OrderedDict"): lambda *a: dict(*a),
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor_v2,
        ("torch.storage", "_load_from_bytes"): _load_storage_bytes,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    }

    def find_class(self, module: str, name: str):
        allowed = self._ALLOWED.get((module, name))
        if allowed is None:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed (only tensors and arrays)")
        return allowed

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("persistent ids are not allowed (not a plain pickle of tensors)")


def _to_tensor(value: Any, key: str) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, np.ndarray) and value.dtype != object:
        return torch.from_numpy(np.ascontiguousarray(value))
    raise ValueError(f"T5 cache entry {key!r}: got {type(value).__name__}, expected a tensor or numeric array")


def load_t5_pickle(path: str | Path) -> dict[str, torch.Tensor]:
    """{task text: embedding} from the release's pickled T5 cache, built by a restricted unpickler.

    Only dicts, strings, numbers, numpy arrays and torch tensors can come out; a pickle that names any
    other global (code, os, subprocess, ...) raises ValueError before anything runs.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: T5 embedding pickle not found")
    try:
        with path.open("rb") as f:
            data = _RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, AttributeError, EOFError, TypeError) as error:
        raise ValueError(f"{path}: refused as a T5 embedding cache: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a dict {{task text: embedding}}, got {type(data).__name__}")
    out = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ValueError(f"{path}: key {key!r} is not a task string")
        out[key] = _to_tensor(value, key).float()
    return out


def t5_pickle_to_cache(path: str | Path, max_length: int = 512):
    """The release's T5 pickle as a TextEmbeddingCache (embedding (L, d) zero-padded, mask of non-zero rows)."""
    from .data.text import TextEmbeddingCache

    entries = {}
    for text, emb in load_t5_pickle(path).items():
        emb = emb.reshape(-1, emb.shape[-1])[:max_length]
        padded = torch.zeros(max_length, emb.shape[-1])
        padded[: emb.shape[0]] = emb
        mask = padded.abs().sum(dim=-1) > 0
        entries[text] = (padded, mask)
    return TextEmbeddingCache(entries, source=f"release-pickle:{Path(path).name}")


def import_release_checkpoint(
    pt_path: str | Path,
    out_dir: str | Path,
    *,
    layout: str,
    vae_base_dir: str | Path | None = None,
    t5_pickle: str | Path | None = None,
    statistics_path: str | Path | None = None,
    network_preset: str = "2b",
) -> Path:
    """Convert a release DiT checkpoint (+ T5 pickle + dataset_statistics.json) into our checkpoint directory.

    The Wan VAE comes from `vae_base_dir` (a diffusers folder with vae/); without it a random VAE is
    stored, which is only useful for tests.
    """
    from .checkpoint import save_checkpoint
    from .config import NetworkConfig, load_layout
    from .data.statistics import load_statistics
    from .deploy import RELEASE_DEPLOY, default_deploy
    from .diffusion import CosmosPolicyModel
    from .networks import build_transformer, build_vae, load_vae_from_diffusers

    network = NetworkConfig.preset_config(network_preset)
    transformer = build_transformer(network)
    load_native_into(transformer, load_release_state_dict(pt_path))
    vae = load_vae_from_diffusers(vae_base_dir, network) if vae_base_dir is not None else build_vae(network)
    layout_config = load_layout(layout)
    model = CosmosPolicyModel(network, layout_config, transformer=transformer, vae=vae)
    statistics = load_statistics(statistics_path) if statistics_path is not None else None
    cache = t5_pickle_to_cache(t5_pickle, max_length=network.text_max_tokens) if t5_pickle is not None else None
    # the release's deploy values (ALOHA: 25 Hz, 10 action steps, the whole 50-step chunk open loop)
    deploy = RELEASE_DEPLOY.get(layout_config.name) or default_deploy(layout_config)
    return save_checkpoint(out_dir, model, statistics=statistics, text_cache=cache, vae_base_dir=vae_base_dir,
                           deploy=deploy)
