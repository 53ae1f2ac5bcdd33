"""Single-stage training: the objective mix over one network, AdamW, the release's LR schedule, checkpoints.

One trainer serves both the base run (demos) and the planning fine-tune (start from a checkpoint, demos
+ rollouts with a demo sampling probability): only the data arguments differ.

- Optimiser: AdamW lr 1e-4, weight decay 0.1, betas (0.9, 0.99), gradient clipping at norm 1.0.
- Learning rate (`decay="release"`, default, as the release's scheduler): linear warm-up from 0 over
  `warmup_steps`, then the factor falls linearly from 1.0 to `cycle_final_ratio` (0.3) at the end of the
  first cycle of `lr_cycle_steps` steps (warm-up included; ALOHA base: 20k), then stays at
  `after_cycle_ratio` (0.06) for the rest of training. Options: `"cosine"` / `"linear"` decay to
  `final_lr_ratio` x lr at the last step, `"none"` for constant.
- Frozen-VAE latents (`cache_latents`): each sample's clean latents are encoded once per augmentation
  version (`latent_versions` draws per sample, each a fixed function of (seed, sample, version)) and
  kept in memory (`latent_cache_dtype`, float16 by default: 22 KiB per sample at 64 px). On CPU the
  VAE runs inside the data items, so with `num_workers` >= 1 a worker process encodes while the main
  process trains; a shared flag array tells the workers which samples need no encoding (their frames
  are then not even read). A latent is rounded to the cache dtype before its first use, so cached and
  freshly encoded latents are the same and a resumed run repeats the uninterrupted one (up to the last
  float bits of a VAE output computed in another batch composition, which the float16 rounding hides).
  Fidelity cost: the release draws a new augmentation every time a sample is seen; here a sample has
  `latent_versions` fixed augmentations (the objective, the noise and sigma are still drawn anew).
  The cache is saved with each checkpoint (`latent_cache.safetensors`, written again only when it grew)
  and loaded on resume when its fingerprint (episode files, sampling, augmentation, seed, network) still
  matches: a resumed CPU run does not spend its first half hour re-encoding.
- Precision: bf16 autocast on CUDA by default; fp32 on CPU, where bf16 autocast alone is little faster
  (small preset on a CPU with avx512_bf16: 1.14x, benchmarks/train_throughput.py) and less precise.
  `compile` (torch.compile of the DiT) is off by default; on 2 CPU cores, with bf16, training steps 1.2x faster.
- Multi-process: run the same command under torchrun; WORLD_SIZE > 1 starts DDP (NCCL on GPU, gloo on
  CPU), `distributed="fsdp"` shards the DiT (FSDP2) for the 2B model. One plain process otherwise.
- Determinism: the samples of step s and the noise of its loss are drawn from generators seeded by
  (seed, s, rank), so a resumed run repeats an uninterrupted one exactly given the saved weights and
  optimiser state.
- Checkpoints every `save_every` steps and/or every `save_every_s` seconds (default 5 min, so an
  interrupted CPU run loses little), on Ctrl-C, or SIGTERM under the CLI (one process only; optimiser
  steps and saves hold the signal until they are whole, stop_signals.py; `TrainingInterrupted` names the
  saved step), and at the end:
  checkpoint.py's directory (weights, config, statistics, text embeddings) plus
  `trainer_state.safetensors` (optimiser tensors, RNG states) and `trainer_state.json` (step, optimiser
  hyper-parameters, scheduler, train config). Never pickle.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import random
import shutil
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.utils.data import DataLoader, Sampler
from tqdm import tqdm

from .checkpoint import CONFIG_FILE, MODEL_FILE, save_checkpoint
from .config import SamplerConfig
from .data.datasets import EpisodeDataset, describe
from .data.text import TextEmbeddingCache
from .diffusion import CosmosPolicyModel
from .latent_sequence import inject_vectors
from .networks import vae_fingerprint
from .objectives import STATE_ACTION_NEXT_STATE, check_value_conditioning
from .stop_signals import stop_signals_deferred

log = logging.getLogger(__name__)

TRAINER_STATE_TENSORS = "trainer_state.safetensors"
TRAINER_STATE_JSON = "trainer_state.json"
LATENT_CACHE_FILE = "latent_cache.safetensors"
TRAINER_FORMAT = "cosmos_policy.trainer_state/1"

# allowed values of TrainConfig's string options; the CLI offers the same lists as its choices
DECAY_CHOICES = ("release", "cosine", "linear", "none")
PRECISION_CHOICES = ("auto", "fp32", "bf16")
DISTRIBUTED_CHOICES = ("ddp", "fsdp")
LATENT_CACHE_DTYPES = ("float16", "bfloat16", "float32")


@dataclass
class TrainConfig:
    """Optimiser, schedule and loop settings (defaults: the paper's).

    The one home of the training defaults: `cosmos-policy train` reads its option defaults from here.
    """

    steps: int = 50_000
    batch_size: int = 8  # per process and micro-step; global batch = batch_size x grad_accum x world size
    grad_accum: int = 1
    lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    warmup_steps: int = 2000
    decay: str = "release"
    final_lr_ratio: float = 0.1  # cosine / linear decay only
    lr_cycle_steps: int = 20_000  # release schedule: length of the first cycle (warm-up included)
    cycle_final_ratio: float = 0.3
    after_cycle_ratio: float = 0.06
    precision: str = "auto"
    activation_checkpointing: bool = False
    # torch.compile the DiT (inductor; needs a C++ compiler on a CPU). Off by default: the first steps pay
    # about a minute of compilation. On 2 CPU cores the small preset's DiT step alone is ~1.25x faster in
    # fp32, ~1.5x with bf16 autocast (benchmarks/train_throughput.py --compile); whole training steps with
    # bf16, 1.2x (the rest of a step is not compiled)
    compile: bool = False
    distributed: str = "ddp"
    save_every: int = 1000
    save_every_s: float = 300.0  # also save when this many seconds passed since the last save (0: off)
    log_every: int = 10
    seed: int = 0
    num_workers: int = 0
    threads: int = 0  # torch intra-op threads of the main process (0: leave torch's default)
    cache_latents: bool = False
    latent_versions: int = 1  # augmented versions cached per sample (augmentation on)
    latent_cache_dtype: str = "float16"
    progress: bool = True
    time_limit_s: float = 0.0  # stop (and save) after the step that passes this wall time (0: off)
    # the value objective: V(s, a, s') for a base run; "next_state" = V(s') for the release's planning model
    value_conditioning: str = STATE_ACTION_NEXT_STATE
    # Not the release (0: it always conditions on the robot state). The share of samples whose current
    # proprio is hidden (written as zeros). On scripted demos the arm's pose mid-approach already says where
    # the cube is, and a policy that conditions on it copies its own state instead of looking (measured:
    # with another episode's proprio its chunk follows that episode's demo 20 times in 20, whatever the
    # cameras show; model_quality's state swap). 1.0 trains a policy without proprio input; the checkpoint
    # then hides it at inference. Measured at 1.0: the policy then reads the arms from the images instead.
    proprio_dropout: float = 0.0
    # Not the release (1): the weight of the action frame's error in the loss (diffusion.training_loss).
    action_loss_weight: float = 1.0

    def __post_init__(self) -> None:
        check_value_conditioning(self.value_conditioning)
        if not 0.0 <= self.proprio_dropout <= 1.0:
            raise ValueError(f"proprio_dropout={self.proprio_dropout}: expected a share between 0 and 1")
        if not self.action_loss_weight > 0.0:
            raise ValueError(f"action_loss_weight={self.action_loss_weight}: expected a positive weight (1: the release)")
        for name, allowed in (("decay", DECAY_CHOICES), ("latent_cache_dtype", LATENT_CACHE_DTYPES),
                              ("precision", PRECISION_CHOICES), ("distributed", DISTRIBUTED_CHOICES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}: expected one of {', '.join(allowed)}")
        if self.latent_versions < 1:
            raise ValueError(f"latent_versions={self.latent_versions}: expected >= 1")
        for name in ("steps", "batch_size", "grad_accum"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)}: expected >= 1")
        self.betas = tuple(self.betas)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def lr_factor(step: int, config: TrainConfig) -> float:
    """Learning-rate multiplier of optimiser step `step` (0-based): warm-up, then decay."""
    if config.warmup_steps > 0 and step < config.warmup_steps:
        return (step + 1) / config.warmup_steps
    if config.decay == "none":
        return 1.0
    if config.decay == "release":
        if step >= config.lr_cycle_steps:
            return config.after_cycle_ratio
        span = max(1, config.lr_cycle_steps - config.warmup_steps)
        progress = (step - config.warmup_steps) / span
        return 1.0 - (1.0 - config.cycle_final_ratio) * progress
    span = max(1, config.steps - config.warmup_steps - 1)
    progress = min(1.0, max(0.0, (step - config.warmup_steps) / span))
    floor = config.final_lr_ratio
    if config.decay == "linear":
        return 1.0 - (1.0 - floor) * progress
    return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the torchrun process group when WORLD_SIZE > 1 (NCCL on GPU, gloo on CPU); else one process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device(device)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistributedContext(rank, world_size, local_rank, dev)


class StepBatchSampler(Sampler[list[int]]):
    """Index lists of each micro-batch from `start_micro_step` on; a function of (seed, position) only.

    Sample position p = (micro_step * world_size + rank) * batch_size + j walks through a fresh
    permutation per pass; the dataset index p // N * N + perm[p % N] tells the dataset its pass.
    """

    def __init__(self, num_items: int, batch_size: int, seed: int, start_micro_step: int, num_micro_steps: int,
                 rank: int = 0, world_size: int = 1):
        self.n, self.batch_size, self.seed = num_items, batch_size, seed
        self.start, self.count, self.rank, self.world_size = start_micro_step, num_micro_steps, rank, world_size
        self._perm: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if self._perm is None or self._perm[0] != epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(self.n, generator=generator))
        return self._perm[1]

    def __len__(self) -> int:
        return self.count

    def __iter__(self) -> Iterator[list[int]]:
        for micro in range(self.start, self.start + self.count):
            first = (micro * self.world_size + self.rank) * self.batch_size
            batch = []
            for p in range(first, first + self.batch_size):
                epoch, within = divmod(p, self.n)
                batch.append(epoch * self.n + int(self._permutation(epoch)[within]))
            yield batch


class _LossModule(nn.Module):
    """forward(batch) = model.training_loss, so DDP / FSDP hooks see the forward pass."""

    def __init__(self, model: CosmosPolicyModel, action_weight: float = 1.0):
        super().__init__()
        self.model = model
        self.action_weight = action_weight

    def forward(self, batch: dict[str, torch.Tensor], generator: torch.Generator | None = None,
                latents: torch.Tensor | None = None):
        return self.model.training_loss(batch, generator=generator, latents=latents, action_weight=self.action_weight)


class ItemEncoder:
    """Clean latents (16, T, h, w) of dataset items, encoded where the items are built (a DataLoader worker).

    Set as `dataset.encoder` on CPU; the dataset's batched fetch encodes a batch's un-cached items in one
    VAE call (a sample's latent may then differ from its alone-encoded latent in the last float bits,
    which the cache's float16 rounding removes in practice).
    """

    def __init__(self, model: CosmosPolicyModel):
        self.model = model
        network, layout = model.network_config, model.layout
        side = network.latent_size
        self.latent_shape = (network.latent_channels, layout.num_latent_frames, side, side)

    KEYS = ("images", "future_images", "proprio", "actions", "future_proprio", "value")

    def __call__(self, item: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.encode_items([item])[0]

    def encode_items(self, items: list[dict[str, torch.Tensor]]) -> torch.Tensor:
        """Latents (N, 16, T, h, w) of N items in one VAE call."""
        with torch.no_grad():
            return self.model.encode_batch({k: torch.stack([item[k] for item in items]) for k in self.KEYS})


class LatentCache:
    """Clean latents per sample key (sample x augmentation version): the VAE is frozen.

    Kept in host memory in `dtype` (float16: 16 x 11 x 8 x 8 x 2 bytes = 22 KiB per sample at 64 px);
    `flags` (shared memory) marks the keys held, so DataLoader workers skip them. Injected vectors are
    written again in float32 from the batch on every use, so actions / proprio / values stay exact.
    """

    def __init__(self, model: CosmosPolicyModel, num_keys: int, dtype: torch.dtype = torch.float16):
        self.model = model
        self.dtype = dtype
        self.store: dict[int, torch.Tensor] = {}
        self.flags = torch.zeros(num_keys, dtype=torch.uint8).share_memory_()
        self.encoded_here = 0
        self.saved_count = 0

    def save(self, path: Path, fingerprint: str) -> bool:
        """Write the held latents to `path` (atomically) if the store grew since the last save."""
        if len(self.store) <= self.saved_count:
            return False
        keys = sorted(self.store)
        tmp = path.with_name(path.name + ".tmp")
        save_file({"keys": torch.tensor(keys, dtype=torch.int64),
                   "latents": torch.stack([self.store[k] for k in keys]).contiguous()},
                  str(tmp), metadata={"fingerprint": fingerprint})
        os.replace(tmp, path)
        self.saved_count = len(keys)
        return True

    def load(self, path: Path, fingerprint: str) -> int:
        """Take the latents saved at `path` if they were encoded from the same data; the number taken."""
        if not path.is_file():
            return 0
        try:
            with safe_open(str(path), "pt") as f:
                saved_for = (f.metadata() or {}).get("fingerprint")
        except Exception as exc:  # noqa: BLE001 - a damaged cache is only a lost speed-up
            log.warning("%s: unreadable (%s); encoding the latents again", path, exc)
            return 0
        if saved_for != fingerprint:
            log.warning("%s: encoded from other data or settings; encoding the latents again", path)
            return 0
        tensors = load_file(str(path))
        keys = tensors["keys"].tolist()
        if keys and max(keys) >= len(self.flags):
            log.warning("%s: keys beyond this dataset; encoding the latents again", path)
            return 0
        for key, latent in zip(keys, tensors["latents"]):
            self.store[key] = latent.to(self.dtype)
            self.flags[key] = 1
        self.saved_count = len(self.store)
        return len(keys)

    def __call__(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Clean latents (B, 16, T, h, w) of the batch, encoding (or taking from the items) unseen samples."""
        if "sample_key" not in batch:
            raise KeyError("batch: no 'sample_key' (set dataset.return_sample_key = True to cache latents)")
        keys = [int(k) for k in batch["sample_key"]]
        has = batch.get("has_latents")
        missing = [i for i, key in enumerate(keys) if key not in self.store
                   and not (has is not None and bool(has[i]))]
        if missing:
            if "images" not in batch:
                raise KeyError(f"samples {[keys[i] for i in missing]}: neither cached nor encoded in the items")
            index = torch.tensor(missing)
            with torch.no_grad():
                encoded = self.model.encode_batch({k: v[index.to(v.device)] for k, v in batch.items()})
            self.encoded_here += len(missing)
            fresh = dict(zip(missing, encoded))
        else:
            fresh = {}
        rows = []
        for i, key in enumerate(keys):
            latent = self.store.get(key)
            if latent is None:
                new = fresh[i] if i in fresh else batch["latents"][i]
                latent = new.detach().to("cpu", self.dtype)
                self.store[key] = latent
                self.flags[key] = 1
            rows.append(latent)
        device = self.model.device
        with torch.autocast("cpu", enabled=False):  # CPU autocast (bf16) rejects stacking the float16 rows
            x0 = torch.stack(rows).to(device).float()
        return inject_vectors(self.model.layout, x0, proprio=batch["proprio"].to(device),
                              actions=batch["actions"].to(device), future_proprio=batch["future_proprio"].to(device),
                              value=batch["value"].to(device))


def require_cpp_compiler() -> None:
    """torch.compile on a CPU builds C++ kernels: fail before training, not at the first step, without one."""
    candidates = [os.environ.get("CXX"), "g++", "clang++", "c++"]
    if not any(name and shutil.which(name) for name in candidates):
        raise RuntimeError("--compile on a CPU needs a C++ compiler and none was found (CXX, g++, clang++, c++): "
                           "install one (Debian: sudo apt install g++) or train without --compile")


def _autocast_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if config.precision == "bf16" or (config.precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def hide_proprio(proprio: torch.Tensor, share: float, generator: torch.Generator) -> torch.Tensor:
    """Normalised proprio (B, d) with each sample's row zeroed with probability `share` (all rows at 1.0):
    the value a policy trained without proprio input sees at inference too (`CosmosPolicy.prepare`)."""
    if share >= 1.0:
        return torch.zeros_like(proprio)
    hidden = torch.rand(proprio.shape[0], generator=generator) < share
    return torch.where(hidden.to(proprio.device)[:, None], torch.zeros_like(proprio), proprio)


def _step_generator(seed: int, step: int, rank: int, micro: int) -> torch.Generator:
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 4099 + rank) * 131 + micro)


def optimizer_state_to_flat(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An optimiser state dict as flat tensors (safetensors) + JSON-able param groups and scalar entries."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, Any] = {}
    for index, entry in state["state"].items():
        for name, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}/{name}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_state_from_flat(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of `optimizer_state_to_flat`: a state dict for `optimizer.load_state_dict`."""
    state: dict[int | str, dict[str, Any]] = defaultdict(dict)

    def param_key(text: str) -> int | str:
        # plain optimisers key state by parameter index, FSDP full state dicts by parameter name
        return int(text) if text.isdigit() else text

    for key, value in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state[param_key(index)][name] = value
    for key, value in meta.get("scalars", {}).items():
        index, name = key.rsplit("/", 1)
        state[param_key(index)][name] = value
    groups = meta["param_groups"]
    for group in groups:
        if "betas" in group:
            group["betas"] = tuple(group["betas"])
    return {"state": dict(state), "param_groups": groups}


@dataclass
class TrainSummary:
    steps_done: int
    final_step: int
    elapsed_s: float
    samples_per_s: float
    losses: dict[str, float]
    checkpoint: Path | None
    loss_history: list[float]

    def format(self) -> str:
        lines = [f"trained steps {self.final_step - self.steps_done}..{self.final_step} "
                 f"({self.steps_done} steps) in {self.elapsed_s:.1f} s, {self.samples_per_s:.1f} samples/s"]
        for name, value in sorted(self.losses.items()):
            lines.append(f"  {name:<34s} {value:.4f}")
        if self.checkpoint is not None:
            lines.append(f"checkpoint: {self.checkpoint}")
        return "\n".join(lines)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped `Trainer.train`; says which step the checkpoint in `out_dir` holds (None: none written).

    A KeyboardInterrupt, so code that already handles Ctrl-C keeps working; the message tells how to go on.
    """

    def __init__(self, step: int, final: int, out_dir: Path, saved_step: int | None):
        self.step, self.final, self.out_dir, self.saved_step = step, final, out_dir, saved_step
        super().__init__(self.message())

    def message(self) -> str:
        where = f"interrupted at step {self.step} of {self.final}"
        if self.saved_step is None:
            return (f"{where}, before any checkpoint was written to {self.out_dir}; "
                    f"rerun the same command to start again")
        saved = ("checkpoint saved" if self.saved_step == self.step
                 else f"the last checkpoint (step {self.saved_step}) is")
        return f"{where}: {saved} in {self.out_dir}; rerun with --resume (and without --overwrite) to continue"

    def __str__(self) -> str:
        return self.message()


class Trainer:
    """Trains a CosmosPolicyModel on an EpisodeDataset and writes resumable checkpoint directories."""

    def __init__(self, model: CosmosPolicyModel, dataset: EpisodeDataset, config: TrainConfig, out_dir: str | Path,
                 statistics: dict[str, Any], text_cache: TextEmbeddingCache, *,
                 sampler_config: SamplerConfig | None = None, vae_base_dir: str | Path | None = None,
                 context: DistributedContext | None = None, extra_config: dict[str, Any] | None = None):
        self.config = config
        self.context = context or DistributedContext()
        self.model = model.to(self.context.device)
        self.dataset = dataset
        self.out_dir = Path(out_dir)
        self.statistics = statistics
        self.text_cache = text_cache
        self.sampler_config = sampler_config or SamplerConfig()
        self.vae_base_dir = vae_base_dir
        self.extra_config = dict(extra_config or {})
        self.step = 0
        self.saved_step: int | None = None  # step of the checkpoint in out_dir (None: none from this run)
        self.loss_history: list[float] = []
        if config.activation_checkpointing:
            model.dit.enable_gradient_checkpointing()
        if config.compile:
            if self.context.device.type == "cpu":
                require_cpp_compiler()
            model.dit.compile()  # in place: the state dict keeps its names, checkpoints load uncompiled
        if config.threads > 0:
            torch.set_num_threads(config.threads)
        self.latent_cache: LatentCache | None = None
        if config.cache_latents:
            versions = config.latent_versions if dataset.augment else 1
            dataset.return_sample_key = True
            dataset.latent_versions = versions
            self.latent_cache = LatentCache(model, len(dataset) * versions, getattr(torch, config.latent_cache_dtype))
            dataset.cached_flags = self.latent_cache.flags
            if self.context.device.type == "cpu":
                dataset.encoder = ItemEncoder(model)
        model.value_conditioning = config.value_conditioning  # the loss reads it; saved in the checkpoint
        self.loss_module = self._wrap(_LossModule(model, config.action_loss_weight))
        self.optimizer = torch.optim.AdamW(model.trainable_parameters(), lr=config.lr, betas=config.betas,
                                           weight_decay=config.weight_decay)

    def _wrap(self, module: nn.Module) -> nn.Module:
        if self.context.world_size == 1:
            if self.config.distributed == "fsdp":
                log.warning("distributed=fsdp needs torchrun with WORLD_SIZE > 1; training unsharded in one process")
                self.config.distributed = "ddp"
            return module
        if self.config.distributed == "fsdp":
            from torch.distributed.fsdp import fully_shard

            for block in self.model.dit.transformer_blocks:
                fully_shard(block)
            fully_shard(self.model.dit)
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.context.local_rank] if self.context.device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=ids)

    def _model_state(self) -> dict[str, torch.Tensor]:
        if self.config.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

            options = StateDictOptions(full_state_dict=True, cpu_offload=True)
            return get_model_state_dict(self.model.dit, options=options)
        return self.model.dit.state_dict()

    def save(self) -> Path:
        """Write the checkpoint directory for the current step (main process only)."""
        model_state = self._model_state()
        optimizer_state = self._optimizer_state()
        if not self.context.is_main:
            self.saved_step = self.step
            return self.out_dir
        directory = self.out_dir
        save_checkpoint(directory, self.model, dit_state=model_state, sampler=self.sampler_config,
                        statistics=self.statistics, text_cache=self.text_cache, vae_base_dir=self.vae_base_dir,
                        extra_config={"training": {"step": self.step, "value_conditioning": self.config.value_conditioning,
                                                     "proprio_dropout": self.config.proprio_dropout,
                                                     **self.extra_config}})
        tensors, optimizer_meta = optimizer_state
        tensors["rng/torch"] = torch.get_rng_state()
        if torch.cuda.is_available():
            tensors["rng/cuda"] = torch.cuda.get_rng_state()
        np_state = np.random.get_state()
        meta = {
            "format": TRAINER_FORMAT,
            "step": self.step,
            "train_config": self.config.to_dict(),
            "scheduler": {"kind": f"warmup+{self.config.decay}", "lr_cycle_steps": self.config.lr_cycle_steps,
                          "lr_factor": lr_factor(max(self.step - 1, 0), self.config)},
            "optimizer": optimizer_meta,
            "rng": {"python": _jsonable(random.getstate()),
                    "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]},
            "loss_history": self.loss_history,
            "world_size": self.context.world_size,
        }
        save_file(tensors, str(directory / TRAINER_STATE_TENSORS), metadata={"format": TRAINER_FORMAT})
        (directory / TRAINER_STATE_JSON).write_text(json.dumps(meta) + "\n")
        if self.latent_cache is not None and self.latent_cache.save(directory / LATENT_CACHE_FILE,
                                                                    self.latent_cache_fingerprint()):
            log.info("latent cache: %d samples saved to %s", self.latent_cache.saved_count,
                     directory / LATENT_CACHE_FILE)
        self.saved_step = self.step
        return directory

    def _resume_vae(self, directory: Path, vae_state: dict[str, torch.Tensor]) -> None:
        """Take the frozen VAE the run was saved with (a pretrained one: weights and latent statistics), so a
        resume without the original `--vae-dir` does not train on a different image code."""
        if not vae_state:
            return  # the checkpoint names a base folder instead; the model was built from it
        self.model.vae.load_state_dict(vae_state, strict=True)
        saved = json.loads((directory / CONFIG_FILE).read_text())
        for name in ("latents_mean", "latents_std"):
            if saved.get(f"vae_{name}") is not None:
                self.model.vae.register_to_config(**{name: list(saved[f"vae_{name}"])})

    def latent_cache_fingerprint(self) -> str:
        """What the cached latents depend on: the episode files, which samples and augmentations, the
        network (its VAE and latent size). A resumed run takes a saved cache only if this is unchanged."""
        import hashlib

        data = self.dataset
        episodes = []
        for episode in data.episodes:
            path = Path(getattr(episode.frames, "path", episode.source))
            stat = path.stat() if path.is_file() else None
            episodes.append([str(path), stat.st_size if stat else None, stat.st_mtime_ns if stat else None])
        spec = {"episodes": episodes, "sample_stride": data.sample_stride, "augment": bool(data.augment),
                "augment_variant": data.augment_variant, "latent_versions": data.latent_versions,
                "seed": self.config.seed, "dtype": self.config.latent_cache_dtype,
                "image_hw": list(data.spec.image_hw), "layout": self.model.layout.name,
                "network": self.model.network_config.to_dict(), "vae": vae_fingerprint(self.model.vae)}
        if spec["network"]["vae_frames"] == "video":  # the default: caches saved before the option still match
            del spec["network"]["vae_frames"]
        del spec["network"]["extra_pos_embed"]  # the DiT's alone: the latents do not depend on it
        if data.spec.camera_crops:  # only when set, so that caches saved before crops existed still match
            spec["camera_crops"] = [[cam, list(box)] for cam, box in data.spec.camera_crops]
        return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()

    def _optimizer_state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        if self.config.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

            full = get_optimizer_state_dict(self.model.dit, self.optimizer,
                                            options=StateDictOptions(full_state_dict=True, cpu_offload=True))
            if not self.context.is_main:  # cpu_offload gathers the full state on rank 0 only
                return {}, {}
            return optimizer_state_to_flat(full)
        return optimizer_state_to_flat(self.optimizer.state_dict())

    def resume(self, directory: str | Path | None = None) -> int:
        """Load weights, optimiser, step and RNG state from a checkpoint directory written by `save`."""
        directory = Path(directory or self.out_dir)
        meta_path, tensor_path = directory / TRAINER_STATE_JSON, directory / TRAINER_STATE_TENSORS
        if not meta_path.is_file() or not tensor_path.is_file():
            raise FileNotFoundError(f"{directory}: no {TRAINER_STATE_JSON} / {TRAINER_STATE_TENSORS} to resume from "
                                    f"(start without --resume, or point --out at a training checkpoint)")
        meta = json.loads(meta_path.read_text())
        if meta.get("format") != TRAINER_FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {TRAINER_FORMAT!r}")
        weights = load_file(str(directory / MODEL_FILE))
        dit_state = {k[4:]: v for k, v in weights.items() if k.startswith("dit.")}
        self._resume_vae(directory, {k[4:]: v for k, v in weights.items() if k.startswith("vae.")})
        if self.config.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

            set_model_state_dict(self.model.dit, dit_state, options=StateDictOptions(full_state_dict=True))
        else:
            self.model.dit.load_state_dict(dit_state, strict=True)
        tensors = load_file(str(tensor_path))
        optimizer_state = optimizer_state_from_flat(tensors, meta["optimizer"])
        if self.config.distributed == "fsdp":
            from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

            set_optimizer_state_dict(self.model.dit, self.optimizer, optimizer_state,
                                     options=StateDictOptions(full_state_dict=True))
        else:
            self.optimizer.load_state_dict(optimizer_state)
        torch.set_rng_state(tensors["rng/torch"])
        if "rng/cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng/cuda"])
        random.setstate(_python_rng_state(meta["rng"]["python"]))
        np_state = meta["rng"]["numpy"]
        np.random.set_state((np_state[0], np.asarray(np_state[1], dtype=np.uint32), *np_state[2:]))
        self.step = int(meta["step"])
        self.saved_step = self.step
        if self.latent_cache is not None:
            taken = self.latent_cache.load(directory / LATENT_CACHE_FILE, self.latent_cache_fingerprint())
            if taken:
                log.info("latent cache: %d samples taken from %s", taken, directory / LATENT_CACHE_FILE)
        self.loss_history = list(meta.get("loss_history", []))
        return self.step

    def _loader(self, start_step: int, num_steps: int) -> DataLoader:
        cfg = self.config
        sampler = StepBatchSampler(len(self.dataset), cfg.batch_size, cfg.seed, start_step * cfg.grad_accum,
                                   num_steps * cfg.grad_accum, self.context.rank, self.context.world_size)
        return DataLoader(self.dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                          pin_memory=self.context.device.type == "cuda", persistent_workers=False)

    def _set_lr(self) -> float:
        lr = self.config.lr * lr_factor(self.step, self.config)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train(self, until_step: int | None = None) -> TrainSummary:
        """Run optimiser steps until `until_step` (default: config.steps); save every save_every and at the end."""
        cfg, ctx = self.config, self.context
        final = cfg.steps if until_step is None else min(until_step, cfg.steps)
        todo = max(0, final - self.step)
        first_step = self.step
        if ctx.is_main:
            log.info("training:\n%s", describe(self.dataset))
        self.loss_module.train()
        autocast_dtype = _autocast_dtype(cfg, ctx.device)
        loader = iter(self._loader(self.step, todo))
        window: dict[str, list[float]] = defaultdict(list)
        bar = tqdm(total=final, initial=self.step, desc="train", unit="step", dynamic_ncols=True,
                   disable=not (cfg.progress and ctx.is_main))
        start = time.perf_counter()
        try:
            last_saved = self._train_loop(final, loader, window, bar, start, autocast_dtype)
        except KeyboardInterrupt:
            bar.close()
            raise self._interrupted(final) from None
        elapsed = time.perf_counter() - start
        todo = self.step - first_step
        losses = {name: float(np.mean(values[-max(1, cfg.log_every):])) for name, values in window.items() if values}
        samples = todo * cfg.batch_size * cfg.grad_accum * ctx.world_size
        return TrainSummary(todo, self.step, elapsed, samples / elapsed if elapsed > 0 else 0.0, losses,
                            last_saved if ctx.is_main else None, self.loss_history[first_step:])

    def _interrupted(self, final: int) -> TrainingInterrupted:
        """After Ctrl-C: save the steps done since the last checkpoint, if that is safe, and say where they are.

        The state is consistent here (optimiser steps and saves run with Ctrl-C held). Several processes
        cannot agree on a last step after a signal, and FSDP's save is collective, so only one saves.
        """
        unsaved = self.step > 0 and self.saved_step != self.step
        if unsaved and self.context.world_size == 1:
            log.warning("interrupted at step %d: saving a checkpoint to %s", self.step, self.out_dir)
            with stop_signals_deferred():
                self.save()
        return TrainingInterrupted(self.step, final, self.out_dir, self.saved_step)

    def _train_loop(self, final: int, loader: Iterator, window: dict[str, list[float]], bar: tqdm, start: float,
                    autocast_dtype: torch.dtype | None) -> Path | None:
        """The optimiser steps up to `final` and the saves (periodic and the last); returns the last checkpoint."""
        cfg, ctx = self.config, self.context
        first_step = self.step
        last_save_time = start
        last_saved = None
        while self.step < final:
            out_of_time = bool(cfg.time_limit_s) and time.perf_counter() - start >= cfg.time_limit_s
            if ctx.world_size > 1 and cfg.time_limit_s:  # every rank stops at the same step
                flag = torch.tensor([float(out_of_time)], device=ctx.device)
                dist.broadcast(flag, src=0)
                out_of_time = bool(flag.item())
            if out_of_time:
                log.warning("time limit %.0f s reached at step %d of %d: saving and stopping (resume with "
                            "--resume)", cfg.time_limit_s, self.step, final)
                break
            lr = self._set_lr()
            self.optimizer.zero_grad(set_to_none=True)
            step_loss = 0.0
            for micro in range(cfg.grad_accum):
                batch = {k: v.to(ctx.device, non_blocking=True) for k, v in next(loader).items()}
                generator = _step_generator(cfg.seed, self.step, ctx.rank, micro)
                if cfg.proprio_dropout > 0.0:
                    batch["proprio"] = hide_proprio(batch["proprio"], cfg.proprio_dropout,
                                                    _step_generator(cfg.seed + 7, self.step, ctx.rank, micro))
                is_ddp = isinstance(self.loss_module, nn.parallel.DistributedDataParallel)
                sync_off = is_ddp and micro < cfg.grad_accum - 1  # all-reduce once, on the last micro-batch
                autocast = (torch.autocast(ctx.device.type, dtype=autocast_dtype) if autocast_dtype is not None
                            else nullcontext())
                with self.loss_module.no_sync() if sync_off else nullcontext(), autocast:
                    latents = self.latent_cache(batch) if self.latent_cache is not None else None
                    loss, metrics = self.loss_module(batch, generator, latents)
                    (loss / cfg.grad_accum).backward()
                step_loss += float(loss.detach()) / cfg.grad_accum
                for name, value in metrics.items():
                    window[name].append(value)
            with stop_signals_deferred():  # weights, optimiser state and step counter change together
                if cfg.grad_clip > 0:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(self.model.trainable_parameters(),
                                                                     cfg.grad_clip))
                else:
                    grad_norm = float("nan")
                self.optimizer.step()
                self.step += 1
                self.loss_history.append(step_loss)
            window["loss"].append(step_loss)
            window["grad_norm"].append(grad_norm)
            bar.update(1)
            if self.step % cfg.log_every == 0 or self.step == final:
                postfix = _postfix(window, lr)
                if self.latent_cache is not None:
                    postfix += f" cached {len(self.latent_cache.store)}"
                bar.set_postfix_str(postfix, refresh=False)
                if not cfg.progress and ctx.is_main:
                    done = self.step - first_step
                    rate = done * cfg.batch_size * cfg.grad_accum * ctx.world_size / (time.perf_counter() - start)
                    log.info("step %d/%d %s | %.1f samples/s", self.step, final, postfix, rate)
            due_steps = cfg.save_every and self.step % cfg.save_every == 0
            due_time = bool(cfg.save_every_s) and time.perf_counter() - last_save_time >= cfg.save_every_s
            if ctx.world_size > 1 and cfg.save_every_s:  # every rank must take the same decision
                flag = torch.tensor([float(due_time)], device=ctx.device)
                dist.broadcast(flag, src=0)
                due_time = bool(flag.item())
            if (due_steps or due_time) and self.step < final:
                with stop_signals_deferred():  # a checkpoint cut in half mixes two steps
                    last_saved = self.save()
                last_save_time = time.perf_counter()
        bar.close()
        if self.step > first_step:
            with stop_signals_deferred():
                last_saved = self.save()
        return last_saved


def _postfix(window: dict[str, list[float]], lr: float) -> str:
    def recent(name: str) -> float | None:
        values = window.get(name)
        return float(np.mean(values[-20:])) if values else None

    parts = [f"loss {recent('loss'):.3f}"]
    for name, short in (("l1/action", "act"), ("l1/future_proprio", "prop"), ("l1/value", "val")):
        value = recent(name)
        if value is not None:
            parts.append(f"{short} {value:.3f}")
    images = [recent(n) for n in window if n.startswith("l1/future_image/")]
    images = [v for v in images if v is not None]
    if images:
        parts.append(f"img {np.mean(images):.3f}")
    parts.append(f"lr {lr:.1e}")
    return " ".join(parts)


def _jsonable(value):
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    return value


def _python_rng_state(value):
    version, state, gauss = value
    return version, tuple(state), gauss
