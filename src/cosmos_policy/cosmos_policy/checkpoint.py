"""Checkpoint directories: model.safetensors + config.json + dataset_statistics.json + text_embeddings.safetensors.

Weights are stored as `dit.<diffusers name>` and `vae.<diffusers name>`; the VAE is left out when the
checkpoint names a diffusers base folder to take it from (`vae_base_dir` in config.json).
Loading never unpickles.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .config import LayoutConfig, NetworkConfig, SamplerConfig
from .deploy import DeployConfig, default_deploy, deploy_from_checkpoint_config
from .diffusion import CosmosPolicyModel
from .networks import build_transformer, build_vae, load_state_strict, load_vae_from_diffusers

FORMAT = "cosmos_policy.checkpoint/1"
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATISTICS_FILE = "dataset_statistics.json"
TEXT_FILE = "text_embeddings.safetensors"


class CheckpointFileError(ValueError):
    """A checkpoint file that cannot be read (truncated, not JSON, not safetensors): the message names the
    file and the fix. A ValueError, so callers that catch those keep working."""


def read_safetensors(path: str | Path, what: str) -> dict[str, torch.Tensor]:
    """All tensors of a .safetensors file, or CheckpointFileError naming the file (truncated, empty, not one)."""
    from safetensors.torch import load_file

    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CheckpointFileError(f"{what}: {path} is empty (0 bytes): the save was interrupted or the copy failed; "
                                  f"copy the file again from where the checkpoint was written")
    try:
        return load_file(str(path))
    except Exception as error:  # safetensors raises its own SafetensorError (and OSError) for damaged files
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointFileError(
            f"{what}: {path} ({size} bytes) is not a readable safetensors file ({reason}): it is probably truncated "
            f"(an interrupted save or copy); copy it again, or use another checkpoint") from None


def read_json(path: str | Path, what: str) -> Any:
    """A JSON file, or CheckpointFileError naming the file, line and column."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except UnicodeDecodeError:
        raise CheckpointFileError(f"{what}: {path} is not a text file (expected JSON)") from None
    except json.JSONDecodeError as error:
        raise CheckpointFileError(f"{what}: {path} is not valid JSON ({error.msg} at line {error.lineno} column "
                                  f"{error.colno}): fix or restore the file") from None


@dataclass
class LoadedCheckpoint:
    """Everything a checkpoint directory holds, loaded."""

    model: CosmosPolicyModel
    network: NetworkConfig
    layout: LayoutConfig
    sampler: SamplerConfig
    statistics: dict[str, Any] | None
    text_cache: Any | None
    config: dict[str, Any]
    deploy: DeployConfig


def save_checkpoint(
    directory: str | Path,
    model: CosmosPolicyModel,
    *,
    sampler: SamplerConfig | None = None,
    statistics: dict[str, Any] | None = None,
    text_cache: Any | None = None,
    vae_base_dir: str | Path | None = None,
    extra_config: dict[str, Any] | None = None,
    dit_state: dict[str, torch.Tensor] | None = None,
    deploy: DeployConfig | None = None,
) -> Path:
    """Write a checkpoint directory (weights, config, statistics, text embeddings when given).

    `deploy`: control rate and chunk execution the checkpoint is meant for (default: the layout's).

    `dit_state`: the DiT weights to write instead of `model.dit.state_dict()`, e.g. the full state an
    FSDP run gathered on rank 0 (its `model.dit` holds only shards).
    """
    from safetensors.torch import save_file

    from .data.statistics import save_statistics

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if dit_state is None:
        dit_state = model.dit.state_dict()
    tensors = {f"dit.{k}": v.detach().contiguous().cpu() for k, v in dit_state.items()}
    if vae_base_dir is None:
        tensors.update({f"vae.{k}": v.detach().contiguous().cpu() for k, v in model.vae.state_dict().items()})
    save_file(tensors, str(directory / MODEL_FILE), metadata={"format": FORMAT})
    config = {
        "format": FORMAT,
        "network": model.network_config.to_dict(),
        "layout": model.layout.to_dict(),
        "sampler": (sampler or SamplerConfig()).to_dict(),
        "deploy": (deploy or default_deploy(model.layout)).to_dict(),
        "vae_base_dir": str(vae_base_dir) if vae_base_dir is not None else None,
        "vae_latents_mean": list(model.vae.config.latents_mean),
        "vae_latents_std": list(model.vae.config.latents_std),
    }
    if extra_config:
        config.update(extra_config)
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n")
    if statistics is not None:
        save_statistics(statistics, directory / STATISTICS_FILE)
    if text_cache is not None:
        text_cache.save(directory / TEXT_FILE)
    return directory


def read_checkpoint_config(directory: str | Path) -> dict[str, Any]:
    """config.json of a checkpoint directory, checked for format."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint {directory}: not a directory")
    path = directory / CONFIG_FILE
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {directory}: missing {CONFIG_FILE} (not a cosmos_policy checkpoint?)")
    config = read_json(path, f"checkpoint {directory}")
    if not isinstance(config, dict):
        raise CheckpointFileError(f"checkpoint {directory}: {CONFIG_FILE} holds a JSON {type(config).__name__}, "
                                  f"expected an object")
    if config.get("format") != FORMAT:
        raise ValueError(f"checkpoint {directory}: {CONFIG_FILE} format {config.get('format')!r}, expected {FORMAT!r}")
    for key in ("network", "layout", "sampler"):
        if key not in config:
            raise ValueError(f"checkpoint {directory}: {CONFIG_FILE} lacks the {key!r} section")
    return config


def load_checkpoint(
    directory: str | Path,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    expected_layout: str | None = None,
    require_statistics: bool = False,
    require_text: bool = False,
    vae_base_dir: str | Path | None = None,
) -> LoadedCheckpoint:
    """Load a checkpoint directory; the DiT is cast to `dtype` (VAE too) and moved to `device`.

    `vae_base_dir` overrides the diffusers base folder the checkpoint names for its VAE: a checkpoint moved
    to another machine finds the base model where that machine keeps it.
    """
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    network = NetworkConfig.from_dict(config["network"])
    layout = LayoutConfig.from_dict(config["layout"])
    sampler = SamplerConfig.from_dict(config["sampler"])
    if expected_layout is not None and layout.name != expected_layout:
        raise ValueError(
            f"checkpoint {directory}: trained for layout {layout.name!r}, expected {expected_layout!r} "
            f"(pick a checkpoint trained on this embodiment)"
        )
    weights_path = directory / MODEL_FILE
    if not weights_path.is_file():
        raise FileNotFoundError(f"checkpoint {directory}: missing {MODEL_FILE}")
    tensors = read_safetensors(weights_path, f"checkpoint {directory}")
    dit_state = {k[4:]: v for k, v in tensors.items() if k.startswith("dit.")}
    vae_state = {k[4:]: v for k, v in tensors.items() if k.startswith("vae.")}
    with torch.device("meta"):
        transformer = build_transformer(network)
    load_state_strict_meta(transformer, dit_state, f"checkpoint {directory}: dit")
    deploy = deploy_from_checkpoint_config(config, layout)
    base_dir = vae_base_dir or config.get("vae_base_dir")
    if base_dir:
        if not Path(base_dir).is_dir():
            hint = "pass vae_base_dir= (node parameter vae_base_dir)" if vae_base_dir is None else "check the path"
            raise FileNotFoundError(
                f"checkpoint {directory}: its VAE comes from the diffusers base folder {base_dir}, which is not a "
                f"directory here ({hint})"
            )
        vae = load_vae_from_diffusers(base_dir, network)
    else:
        if not vae_state:
            raise ValueError(
                f"checkpoint {directory}: {MODEL_FILE} holds no vae.* weights and config names no vae_base_dir"
            )
        with torch.device("meta"):
            # a VAE pretrained for a CPU preset normalises its latents by its own statistics, kept in config
            vae = build_vae(network, config.get("vae_latents_mean"), config.get("vae_latents_std"))
        load_state_strict_meta(vae, vae_state, f"checkpoint {directory}: vae")
    model = CosmosPolicyModel(network, layout, transformer=transformer, vae=vae)
    model.to(device=device, dtype=dtype)
    # how its value objective was trained (V(s') for a release-style planning model); a fine-tune keeps it
    model.value_conditioning = (config.get("training") or {}).get("value_conditioning", model.value_conditioning)
    # a policy trained without proprio input (proprio_dropout 1.0) gets none at inference either
    model.proprio_input = float((config.get("training") or {}).get("proprio_dropout", 0.0)) < 1.0
    statistics = _load_statistics(directory, require_statistics)
    text_cache = _load_text(directory, require_text)
    return LoadedCheckpoint(model, network, layout, sampler, statistics, text_cache, config, deploy)


def _mismatch(module: torch.nn.Module, state: dict[str, torch.Tensor]) -> bool:
    own = module.state_dict()
    return set(own) != set(state) or any(tuple(own[k].shape) != tuple(state[k].shape) for k in own)


def load_state_strict_meta(module: torch.nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    """Strict load into a module built on the meta device (tensors assigned, not copied)."""
    if _mismatch(module, state):
        load_state_strict(module, state, what)
    module.load_state_dict(state, strict=True, assign=True)
    left = [n for n, t in list(module.named_parameters()) + list(module.named_buffers()) if t.is_meta]
    if left:
        raise ValueError(f"{what}: no weights for {left[:8]}")


def _load_statistics(directory: Path, required: bool) -> dict[str, Any] | None:
    from .data.statistics import load_statistics

    path = directory / STATISTICS_FILE
    if not path.is_file():
        if required:
            raise FileNotFoundError(
                f"checkpoint {directory}: missing {STATISTICS_FILE} (actions/proprio min/max are needed to "
                f"(un)normalise; copy the training run's statistics file into the checkpoint)"
            )
        return None
    return load_statistics(path)


def _load_text(directory: Path, required: bool):
    from .data.text import TextEmbeddingCache

    path = directory / TEXT_FILE
    if not path.is_file():
        if required:
            raise FileNotFoundError(
                f"checkpoint {directory}: missing {TEXT_FILE} (task text embeddings; create them with "
                f"`cosmos-policy embed-text`)"
            )
        return None
    return TextEmbeddingCache.load(path)
