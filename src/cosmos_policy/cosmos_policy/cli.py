"""`cosmos-policy` command: train, finetune-planning, stats, embed-text, infer, import-release, bench."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import logging
import sys
from pathlib import Path

import numpy as np

from .stop_signals import sigterm_as_ctrl_c

log = logging.getLogger("cosmos_policy")

NETWORK_PRESETS = ["tiny", "small", "medium", "2b"]
CAMERA_CROP_HELP = ("region of interest of one camera (repeatable), fractions of its frame, e.g. "
                    "cam_high=0.3,0.15,0.5,0.7; not the release, which sees whole frames: it enlarges small objects "
                    "in the CPU presets' 64 px input")
EXIT_USAGE = 2  # a mistake the user can fix (bad option, missing or unreadable file), as argparse exits
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a SIGINT death

# What an expected user mistake raises: the library's own errors (CheckpointFileError, EpisodeFileError, ...)
# derive from ValueError, and file problems are OSErrors that name the file. These print one line, not a
# traceback; anything else is a bug and keeps its traceback (as do these with -v).
EXPECTED_ERRORS = (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                   PermissionError)


class UsageError(Exception):
    """A mistake in the command line that the user fixes by changing it; the message says how."""


def _objective_mix(text: str) -> tuple[float, float, float]:
    parts = [float(p) for p in text.split(",")]
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected three weights 'policy,world_model,value', e.g. 0.5,0.25,0.25")
    return parts[0], parts[1], parts[2]


def _add_train(sub) -> None:
    from .train import TrainConfig

    p = sub.add_parser("train", help="train (or fine-tune) a policy on ACT / release HDF5 episodes")
    p.add_argument("--data", type=Path, action="append", required=True,
                   help="folder of demo episodes (repeatable): ACT episode_<i>.hdf5 files or the release's "
                        "preprocessed layout")
    p.add_argument("--rollouts", type=Path, action="append", default=[],
                   help="folder of rollout episodes (attrs success, success_score, task_description); repeatable")
    p.add_argument("--layout", default="aloha", help="layout name (aloha, libero, robocasa) or a layout .yaml")
    p.add_argument("--network", default="2b", choices=NETWORK_PRESETS,
                   help="network preset: 2b (the real model, GPU), small (CPU-trainable, the default ALOHA sim "
                        "checkpoint), tiny (tests)")
    p.add_argument("--base-dir", type=Path, help="local diffusers folder (transformer/ + vae/) with the base weights")
    p.add_argument("--camera-crop", action="append", default=[], metavar="CAMERA=TOP,LEFT,HEIGHT,WIDTH",
                   help=CAMERA_CROP_HELP + "; kept in the checkpoint, so inference crops the same way")
    p.add_argument("--vae-dir", type=Path,
                   help="folder written by `cosmos-policy pretrain-vae` (vae/ inside): the frozen VAE to train with "
                        "instead of a random one; the checkpoint embeds its weights and latent statistics")
    p.add_argument("--init-checkpoint", type=Path,
                   help="start from this checkpoint (weights, statistics, text embeddings): the planning fine-tune")
    p.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    p.add_argument("--objective-mix", type=_objective_mix, default=None,
                   help="policy,world_model,value weights of an older per-item draw; default: the release mix "
                        "(demo with --demo-sampling-prob -> policy, else a rollout -> world model / value)")
    p.add_argument("--stats", type=Path, help="dataset_statistics.json to use instead of computing it from --data")
    _add_training_options(p, TrainConfig(), demo_sampling_prob=None, success_sampling_prob=None)
    p.set_defaults(func=cmd_train, job="train", demos_as_successes=False)


def _add_finetune_planning(sub) -> None:
    from .planning_finetune import PLANNING_MIX, PLANNING_TRAIN_DEFAULTS
    from .train import TrainConfig

    mix = PLANNING_MIX
    p = sub.add_parser(
        "finetune-planning",
        help="fine-tune the planning model (V(s')) from the base checkpoint on demos + scored rollouts",
        description="The release's planning fine-tune as defaults: demos drawn with p=0.1 (policy objective "
                    "only), successful vs failed rollouts 50/50, rollout samples 50/50 world model / value, "
                    "value V(s'), LR cycle 15k steps with 1.5k warm-up then 0.06, 18k steps; weights, statistics "
                    "and text embeddings from --base. See docs/planning.md.")
    p.add_argument("--base", type=Path, required=True,
                   help="the base policy's checkpoint directory (weights, statistics, text embeddings start here)")
    p.add_argument("--demos", type=Path, action="append", required=True,
                   help="folder of demo episodes (repeatable), e.g. the base run's --data folders")
    p.add_argument("--rollouts", type=Path, action="append", required=True,
                   help="folder of scored rollout episodes (repeatable): the recorder's out_dir, bag-converted "
                        "episodes; *.partial recordings are never read")
    p.add_argument("--out", type=Path, required=True, help="planning checkpoint directory to write")
    p.add_argument("--demos-as-successes", action="store_true",
                   help="not the release: when no rollout succeeded, the demos are the successful class of the "
                        "rollout draws (world model and value, value target R = 1), as in the base run; without "
                        "it the value never sees a success (measured: every candidate then scores 0 and planning "
                        "runs the first proposal; docs/planning.md)")
    _add_training_options(p, dataclasses.replace(TrainConfig(), **PLANNING_TRAIN_DEFAULTS),
                          demo_sampling_prob=mix.demo_sampling_prob, success_sampling_prob=mix.success_sampling_prob,
                          world_model_prob=mix.world_model_prob)
    # what `train` takes from its own options, fixed here: the network, layout and statistics are the base's
    p.set_defaults(func=cmd_finetune_planning, job="finetune-planning", objective_mix=None, stats=None,
                   network=None, layout=None, base_dir=None, vae_dir=None, camera_crop=[])


def _add_training_options(p, d, *, demo_sampling_prob: float | None, success_sampling_prob: float | None,
                          world_model_prob: float | None = None) -> None:
    """The options `train` and `finetune-planning` share; `d` (a TrainConfig) and the mix give the defaults."""
    # torch is imported anyway by every command, so importing train.py to build the parser costs nothing extra
    from .data.augment import AUGMENT_VARIANTS, DEFAULT_AUGMENT_VARIANT
    from .data.datasets import DEFAULT_WORLD_MODEL_PROB, EpisodeDataset
    from .objectives import VALUE_CONDITIONINGS
    from .train import DECAY_CHOICES, DISTRIBUTED_CHOICES, LATENT_CACHE_DTYPES, PRECISION_CHOICES

    # the dataset's own defaults, so that each is written once (in EpisodeDataset's signature)
    dataset_defaults = {name: param.default for name, param in
                        inspect.signature(EpisodeDataset.__init__).parameters.items()}
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="continue the run saved in --out")
    existing.add_argument("--overwrite", action="store_true",
                          help="start a new run even though --out already holds a checkpoint (it is replaced)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="per process and micro-step")
    p.add_argument("--grad-accum", type=int, default=d.grad_accum)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--warmup-steps", type=int, default=d.warmup_steps)
    p.add_argument("--decay", default=d.decay, choices=DECAY_CHOICES,
                   help="release: warm-up, factor 1.0 -> 0.3 linearly over the first --lr-cycle-steps, then 0.06")
    p.add_argument("--lr-cycle-steps", type=int, default=d.lr_cycle_steps,
                   help="release schedule: length of the first cycle, warm-up included (ALOHA base: 20000, "
                        "planning: 15000)")
    p.add_argument("--final-lr-ratio", type=float, default=d.final_lr_ratio, help="cosine / linear decay: final factor")
    p.add_argument("--grad-clip", type=float, default=d.grad_clip)
    p.add_argument("--precision", default=d.precision, choices=PRECISION_CHOICES,
                   help="auto: bf16 autocast on GPU, fp32 on CPU")
    p.add_argument("--activation-checkpointing", action="store_true")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the DiT (needs a C++ compiler on a CPU; about a minute before the first "
                        "step): with --precision bf16, training steps 1.2x faster on 2 CPU cores")
    p.add_argument("--distributed", default=d.distributed, choices=DISTRIBUTED_CHOICES,
                   help="under torchrun with WORLD_SIZE > 1")
    p.add_argument("--demo-sampling-prob", type=float, default=demo_sampling_prob,
                   help="probability of drawing a demo (policy objective); otherwise a rollout (the demos when "
                        "there are no --rollouts) trains world model or value. Default: train 0.5 (the base run), "
                        "finetune-planning 0.1 (the release's planning run)")
    p.add_argument("--success-sampling-prob", type=float, default=success_sampling_prob,
                   help="rollout draws: probability of a successful rollout (else a failed one), whatever their "
                        "counts. Default: train none (a step uniformly over all rollout steps), finetune-planning "
                        "0.5. Success is the episode's `success` attr, else a full score")
    p.add_argument("--world-model-prob", type=float,
                   default=DEFAULT_WORLD_MODEL_PROB if world_model_prob is None else world_model_prob,
                   help="rollout samples: probability of the world-model objective (else value)")
    p.add_argument("--text-embeddings", type=Path, help="text embedding cache (.safetensors) to start from")
    p.add_argument("--t5-dir", type=Path, help="local T5 encoder folder for tasks without a cached embedding")
    p.add_argument("--task", help="task text for episodes without a task_description attr (default: folder name)")
    p.add_argument("--skip-bad-episodes", action="store_true", help="log and skip unreadable episode files")
    p.add_argument("--no-augment", action="store_true", help="centre crop instead of random crop + jitter")
    p.add_argument("--augment", default=DEFAULT_AUGMENT_VARIANT, choices=sorted(AUGMENT_VARIANTS),
                   help="stronger (release ALOHA runs): 90%% crop, rotation +-5 deg, brightness 0.7-1.3, "
                        "contrast 0.6-1.4, saturation 0.5-1.5, hue +-0.05; weaker: no rotation, 0.8-1.2")
    p.add_argument("--cache-latents", action="store_true",
                   help="encode each (sample, augmentation version) once with the frozen VAE and keep it in memory")
    p.add_argument("--latent-versions", type=int, default=d.latent_versions,
                   help="with --cache-latents and augmentation: fixed augmented versions per sample")
    p.add_argument("--latent-cache-dtype", default=d.latent_cache_dtype, choices=LATENT_CACHE_DTYPES)
    p.add_argument("--start-prob", type=float, default=0.0,
                   help="share of demo draws taken from the first --start-steps steps of an episode, where the "
                        "scene is the only cue (not the release: 0, every step alike)")
    p.add_argument("--start-steps", type=int, default=50, help="what --start-prob counts as an episode's start")
    p.add_argument("--proprio-dropout", type=float, default=d.proprio_dropout,
                   help="share of samples whose current proprio is hidden (not the release: 0). 1.0 trains a policy "
                        "that sees no proprio, only cameras and text: on scripted demos a policy given the arm's pose "
                        "copies it instead of looking at the scene (docs/results.md)")
    p.add_argument("--action-loss-weight", type=float, default=d.action_loss_weight,
                   help="weight of the action frame's error in the loss (not the release: 1); the action is one of "
                        "the six frames a policy sample predicts")
    p.add_argument("--extra-pos-embed", choices=["learnable"], default=None,
                   help="add Predict1's learnable absolute position embedding to the DiT (not the release: RoPE "
                        "only, whose values do not say where a token is). With --init-checkpoint it is added at zero "
                        "and its first step makes it unit size: the loss jumps, then recovers. Pass it again on "
                        "--resume")
    p.add_argument("--value-conditioning", default=d.value_conditioning, choices=VALUE_CONDITIONINGS,
                   help="value objective: V(s, a, s') (base run) or next_state = V(s'), current state and action "
                        "masked, as the release trains its planning model. Default %(default)s")
    p.add_argument("--sample-stride", type=int, default=dataset_defaults["sample_stride"],
                   help="train on every Nth step of each episode (1: all; the action chunks keep every step). "
                        "Fewer distinct samples for the VAE to encode on CPU; a fidelity cost, see train.py")
    p.add_argument("--time-limit-min", type=float, default=d.time_limit_s / 60.0,
                   help="stop and save after this many minutes of training (0: off); --resume continues")
    p.add_argument("--save-every", type=int, default=d.save_every, help="save every N steps (0: off)")
    p.add_argument("--save-every-s", type=float, default=d.save_every_s,
                   help="also save when this many seconds passed since the last save (0: off; default %(default)s)")
    p.add_argument("--log-every", type=int, default=d.log_every)
    p.add_argument("--no-progress", action="store_true", help="log lines every --log-every steps instead of a bar")
    p.add_argument("--threads", type=int, default=d.threads,
                   help="torch threads of the main process (0: torch's default). On a shared 2-core CPU use 1 "
                        "with --num-workers 1: oversubscribed OpenMP threads spin and run ~25x slower")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--num-workers", type=int, default=d.num_workers)
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def _add_pretrain_vae(sub) -> None:
    from .vae_pretrain import VaePretrainConfig

    d = VaePretrainConfig()
    p = sub.add_parser(
        "pretrain-vae",
        help="train a CPU preset's VAE as an autoencoder of the demos' camera frames (then: train --vae-dir)",
        description="The CPU presets have no pretrained Wan VAE to freeze; a random one barely tells frames apart "
                    "and the policy trained on it is blind. This trains the preset's VAE on the episodes' frames "
                    "(reconstruction + small KL, half through the training augmentation), measures its latent "
                    "mean/std, and writes OUT/vae/ (diffusers) and OUT/vae_pretrain.json (held-out PSNR).")
    p.add_argument("--data", type=Path, action="append", required=True, help="folder of episodes (repeatable)")
    p.add_argument("--network", default="small", choices=[n for n in NETWORK_PRESETS if n != "2b"],
                   help="preset whose VAE to train (the 2b preset takes Wan2.1's pretrained VAE via --base-dir)")
    p.add_argument("--layout", default="aloha", help="layout whose cameras to read (aloha, libero, ... or a .yaml)")
    p.add_argument("--out", type=Path, required=True, help="folder to write (vae/ and vae_pretrain.json)")
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.learning_rate)
    p.add_argument("--frames-per-episode", type=int, default=d.frames_per_episode,
                   help="frames per camera and episode kept in memory for training")
    p.add_argument("--detail-weight", type=float, default=d.detail_weight,
                   help="extra loss weight per unit of local detail |x - blur(x)|: keeps small objects (a 2-px cube) "
                        "in the code; 0 = plain MSE")
    p.add_argument("--colour-weight", type=float, default=d.colour_weight,
                   help="extra loss weight per unit of colour saturation: coloured objects on a grey scene; 0 = off")
    p.add_argument("--init", type=Path, help="continue from the VAE of an earlier pretrain-vae --out (vae/ inside)")
    p.add_argument("--camera-crop", action="append", default=[], metavar="CAMERA=TOP,LEFT,HEIGHT,WIDTH",
                   help=CAMERA_CROP_HELP + "; train the policy with the same crops")
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available); frames are augmented on the CPU")
    p.add_argument("--overwrite", action="store_true", help="replace a VAE already in --out")
    p.add_argument("--no-progress", action="store_true", help="log every 100 steps instead of a progress bar")
    p.set_defaults(func=cmd_pretrain_vae)


def cmd_pretrain_vae(args) -> int:
    import json

    import torch

    from .config import NetworkConfig, load_layout
    from .vae_pretrain import REPORT_FILE, VAE_FOLDER, VaePretrainConfig, pretrain_vae

    if (args.out / VAE_FOLDER).exists() and not args.overwrite:
        raise UsageError(f"--out {args.out} already holds {VAE_FOLDER}/: pass --overwrite to replace it, or choose "
                         f"another --out")
    if args.init is not None and not (args.init / VAE_FOLDER / "config.json").is_file():
        raise UsageError(f"--init {args.init}: no {VAE_FOLDER}/config.json inside (pass an earlier pretrain-vae --out)")
    for name in ("steps", "batch_size", "frames_per_episode"):
        if getattr(args, name) < 1:
            raise UsageError(f"--{name.replace('_', '-')} {getattr(args, name)}: must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    config = VaePretrainConfig(steps=args.steps, batch_size=args.batch_size, learning_rate=args.lr,
                               frames_per_episode=args.frames_per_episode, detail_weight=args.detail_weight,
                               colour_weight=args.colour_weight, seed=args.seed)
    layout = _layout_with_crops(load_layout(args.layout), args.camera_crop)
    report = pretrain_vae(NetworkConfig.preset_config(args.network), layout.cameras, _episode_files(args.data),
                          args.out, config, progress=not args.no_progress, init_dir=args.init,
                          device=args.device or ("cuda" if torch.cuda.is_available() else "cpu"),
                          camera_crops=dict(layout.camera_crops))
    shown = {k: report[k] for k in ("heldout_psnr_db_start", "heldout_psnr_db",
                                    "heldout_detail_psnr_db_start", "heldout_detail_psnr_db",
                                    "latent_sensitivity", "train_frames", "wall_s")}
    print(json.dumps(shown, indent=2))
    print(f"wrote {args.out / VAE_FOLDER} and {args.out / REPORT_FILE}; next: cosmos-policy train --network "
          f"{args.network} --vae-dir {args.out} ...")
    return 0


def _add_stats(sub) -> None:
    p = sub.add_parser("stats", help="write dataset_statistics.json (actions / proprio min, max, mean, std, ...)")
    p.add_argument("--data", type=Path, action="append", required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--skip-bad-episodes", action="store_true")
    p.set_defaults(func=cmd_stats)


def _add_embed_text(sub) -> None:
    p = sub.add_parser("embed-text", help="cache task-text embeddings as safetensors")
    p.add_argument("--texts", nargs="+", required=True, help="task descriptions")
    p.add_argument("--t5-dir", type=Path, help="local T5 encoder folder (without it: a test-only fallback)")
    p.add_argument("--network", default="2b", choices=["tiny", "2b"], help="sets d_text / length of the fallback")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--append", action="store_true", help="add to an existing cache file")
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_embed_text)


def _add_infer(sub) -> None:
    p = sub.add_parser("infer", help="run the policy on one recorded observation and print the chunk")
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--episode", type=Path, required=True, help="an ACT (or release-layout) episode file")
    p.add_argument("--step", type=int, default=0)
    p.add_argument("--task", help="task text (default: the episode's task_description or folder name)")
    p.add_argument("--num-steps", type=int, help="denoising steps for the action (default: the checkpoint's)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=cmd_infer)


def _add_import_release(sub) -> None:
    p = sub.add_parser("import-release", help="convert a released checkpoint (native names) to a checkpoint directory")
    p.add_argument("--weights", type=Path, required=True,
                   help="the release's DiT weights (.pt of plain tensors, or .safetensors)")
    p.add_argument("--layout", default="aloha")
    p.add_argument("--base-dir", type=Path,
                   help="local diffusers folder with the Wan VAE (vae/); without it the VAE is random")
    p.add_argument("--stats", type=Path, help="the release's dataset statistics JSON")
    p.add_argument("--t5-pickle", type=Path, help="the release's T5 embedding pickle (read without running code)")
    p.add_argument("--network", default="2b", choices=["tiny", "2b"])
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=cmd_import_release)


def _add_bench(sub) -> None:
    p = sub.add_parser("bench", help="time the inference path (a checkpoint, or random weights of a preset)")
    p.add_argument("--checkpoint", type=Path, help="checkpoint directory (default: random weights)")
    p.add_argument("--network", default="tiny", choices=["tiny", "2b"], help="preset for random weights")
    p.add_argument("--layout", default="aloha", help="layout for random weights")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--action-steps", type=int, nargs="+", default=[1, 5, 10])
    p.add_argument("--candidates", type=int, default=8, help="best-of-N size (1: skip the planning timings)")
    p.add_argument("--no-future-images", action="store_true")
    p.set_defaults(func=cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cosmos-policy", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging; errors show their traceback")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_finetune_planning(sub)
    _add_pretrain_vae(sub)
    _add_stats(sub)
    _add_embed_text(sub)
    _add_infer(sub)
    _add_import_release(sub)
    _add_bench(sub)
    return parser


def _layout_with_crops(layout, crop_args: list[str]):
    """The layout with --camera-crop's regions of interest (none given: the layout unchanged)."""
    from .config import parse_camera_crops

    if not crop_args:
        return layout
    try:
        crops = parse_camera_crops(crop_args)
        return dataclasses.replace(layout, camera_crops=crops)
    except ValueError as exc:
        raise UsageError(f"--camera-crop: {exc}") from None


def _episode_files(folders: list[Path]) -> list[Path]:
    from .data.datasets import find_episode_files

    files = [f for folder in folders for f in find_episode_files(folder)]
    if not files:
        raise UsageError(f"no episode files (*.hdf5) under {', '.join(map(str, folders))}: "
                         f"check the folder, or record demos first (aloha_sim_demos)")
    return files


def cmd_stats(args) -> int:
    from .data.datasets import compute_dataset_statistics
    from .data.statistics import save_statistics

    files = _episode_files(args.data)
    stats = compute_dataset_statistics(files, skip_bad_episodes=args.skip_bad_episodes)
    save_statistics(stats, args.out)
    print(f"{args.out}: {stats['num_episodes']} episodes, {stats['num_steps']} steps, "
          f"actions {len(stats['actions_min'])}-D, proprio {len(stats['proprio_min'])}-D")
    return 0


def cmd_embed_text(args) -> int:
    from .config import NetworkConfig
    from .data.text import TextEmbeddingCache, build_text_cache

    network = NetworkConfig.preset_config(args.network)
    cache = build_text_cache(args.texts, network.text_embed_dim, t5_dir=args.t5_dir,
                             max_length=network.text_max_tokens, device=args.device)
    if args.append and args.out.is_file():
        existing = TextEmbeddingCache.load(args.out)
        existing.update(cache)
        cache = existing
    cache.save(args.out)
    print(f"{args.out}: {len(cache)} task embedding(s), {cache.d_text}-D, source {cache.source}")
    return 0


def train_config_from_args(args):
    """The TrainConfig of `cosmos-policy train`'s options (the parser's defaults are TrainConfig's own)."""
    from .train import TrainConfig

    return TrainConfig(steps=args.steps, batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                       weight_decay=args.weight_decay, grad_clip=args.grad_clip, warmup_steps=args.warmup_steps,
                       decay=args.decay, final_lr_ratio=args.final_lr_ratio, lr_cycle_steps=args.lr_cycle_steps,
                       precision=args.precision,
                       activation_checkpointing=args.activation_checkpointing, compile=args.compile,
                       distributed=args.distributed, save_every=args.save_every, save_every_s=args.save_every_s,
                       log_every=args.log_every,
                       seed=args.seed, num_workers=args.num_workers, threads=args.threads,
                       cache_latents=args.cache_latents, latent_versions=args.latent_versions,
                       latent_cache_dtype=args.latent_cache_dtype, progress=not args.no_progress,
                       time_limit_s=args.time_limit_min * 60.0, value_conditioning=args.value_conditioning,
                       proprio_dropout=args.proprio_dropout, action_loss_weight=args.action_loss_weight)


def check_train_out(out: Path, resume: bool, overwrite: bool) -> None:
    """Refuse a --out that would lose work: a checkpoint there is continued (--resume) or replaced (--overwrite).

    Checked before anything is loaded, so a mistake costs seconds, not a data-loading pass.
    """
    from .checkpoint import MODEL_FILE
    from .train import TRAINER_STATE_JSON

    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out}: is a file, expected a checkpoint directory")
    if resume:
        if not (out / TRAINER_STATE_JSON).is_file():
            raise UsageError(f"--resume: {out} holds no {TRAINER_STATE_JSON} to continue from; start without "
                             f"--resume (with --overwrite if {out} holds other checkpoint files)")
        return
    found = [name for name in (MODEL_FILE, TRAINER_STATE_JSON) if (out / name).is_file()]
    if found and not overwrite:
        raise UsageError(f"--out {out} already holds a checkpoint ({', '.join(found)}); pass --resume to continue "
                         f"its training, --overwrite to replace it, or choose another --out")


def cmd_train(args) -> int:
    import json

    import torch

    from .checkpoint import CONFIG_FILE, STATISTICS_FILE, TEXT_FILE, load_checkpoint, read_checkpoint_config
    from .config import NetworkConfig, SamplerConfig, load_layout
    from .data.datasets import EpisodeDataset, SampleSpec, camera_frame_hw, compute_dataset_statistics, load_episodes
    from .data.statistics import load_statistics, statistics_from_dict
    from .data.text import TextEmbeddingCache, build_text_cache
    from .diffusion import CosmosPolicyModel
    from .networks import add_learnable_position_embedding, load_vae_from_diffusers
    from .planning_finetune import mix_config
    from .train import Trainer, init_distributed
    from .vae_pretrain import read_vae_camera_crops, read_vae_frames

    planning = args.job == "finetune-planning"
    check_train_out(args.out, args.resume, args.overwrite)
    config = train_config_from_args(args)  # option mistakes surface before the process group starts
    context = init_distributed(args.device)
    torch.manual_seed(args.seed)
    sampler_config = SamplerConfig()
    text_cache = TextEmbeddingCache(source="empty")
    if args.init_checkpoint is not None:
        if args.vae_dir is not None:
            raise UsageError("--vae-dir with --init-checkpoint: a fine-tune keeps the frozen VAE of the checkpoint "
                             "it starts from; drop --vae-dir")
        loaded = load_checkpoint(args.init_checkpoint, require_statistics=True)
        model, network, layout, sampler_config = loaded.model, loaded.network, loaded.layout, loaded.sampler
        if args.camera_crop and _layout_with_crops(layout, args.camera_crop).camera_crops != layout.camera_crops:
            raise UsageError(f"--camera-crop with --init-checkpoint: a fine-tune keeps the checkpoint's regions of "
                             f"interest ({dict(layout.camera_crops) or 'whole frames'}); drop --camera-crop")
        raw_stats = json.loads((Path(args.init_checkpoint) / STATISTICS_FILE).read_text())
        if loaded.text_cache is not None:
            text_cache.update(loaded.text_cache)
        vae_base_dir = loaded.config.get("vae_base_dir")
        log.info("fine-tuning from %s (its statistics and text embeddings are kept)", args.init_checkpoint)
        if args.extra_pos_embed is not None and network.extra_pos_embed is None:
            model.dit = add_learnable_position_embedding(model.dit, network)
            network = model.network_config = dataclasses.replace(network, extra_pos_embed=args.extra_pos_embed)
            log.info("added a %s position embedding (zero at the start) to the DiT of %s", args.extra_pos_embed,
                     args.init_checkpoint)
    else:
        network = NetworkConfig.preset_config(args.network)
        layout = _layout_with_crops(load_layout(args.layout), args.camera_crop)
        vae = None
        vae_base_dir = args.base_dir
        if args.vae_dir is not None:
            vae_crops = read_vae_camera_crops(args.vae_dir)
            if vae_crops is not None and vae_crops != dict(layout.camera_crops):
                # the frozen VAE only knows the views it was pretrained on
                raise UsageError(f"--vae-dir {args.vae_dir} was pretrained on camera crops {vae_crops or 'none'}, "
                                 f"this run has {dict(layout.camera_crops) or 'none'}: pass the same --camera-crop "
                                 f"as its pretrain-vae run")
            vae = load_vae_from_diffusers(args.vae_dir, network)
            vae_base_dir = None  # the checkpoint embeds this VAE rather than naming the base folder's
            if read_vae_frames(args.vae_dir) == "per_frame":
                # pretrained on single frames: its temporal layers never learnt, so frames go through it one by one
                network = dataclasses.replace(network, vae_frames="per_frame")
            log.info("frozen VAE from %s (latent statistics of its own; frames encoded %s)", args.vae_dir / "vae",
                     "one at a time" if network.vae_frames == "per_frame" else "as one video")
        elif network.preset != "2b" and args.base_dir is None:  # the CPU presets have no pretrained VAE
            log.warning("--network %s without --vae-dir: the frozen VAE is random, so the latents barely tell "
                        "camera frames apart and the policy cannot see (make one with `cosmos-policy pretrain-vae`)",
                        network.preset)
        if args.resume and (args.out / CONFIG_FILE).is_file():
            saved = read_checkpoint_config(args.out).get("network", {}).get("vae_frames", "video")
            if args.vae_dir is None:  # the run's own VAE is restored on resume: so is the way it is fed
                network = dataclasses.replace(network, vae_frames=saved)
            elif saved != network.vae_frames:
                # a run saved before per-frame encoding existed: its DiT learnt other latents of the same frames
                raise UsageError(f"--resume {args.out}: that run fed its VAE the frames as {saved!r}, this one would "
                                 f"feed them {network.vae_frames!r} (a pretrain-vae VAE is now fed frame by frame), "
                                 f"which changes every input of the trained network; start a new --out")
        if args.extra_pos_embed is not None:
            network = dataclasses.replace(network, extra_pos_embed=args.extra_pos_embed)
        model = CosmosPolicyModel(network, layout, base_dir=args.base_dir, vae=vae)
        raw_stats = None
    if args.resume and (args.out / CONFIG_FILE).is_file():
        saved_embed = read_checkpoint_config(args.out).get("network", {}).get("extra_pos_embed")
        if saved_embed != network.extra_pos_embed:
            fix = (f"pass --extra-pos-embed {saved_embed}" if saved_embed
                   else "drop --extra-pos-embed (or start a new --out)")
            raise UsageError(f"--resume {args.out}: that run's DiT has extra_pos_embed {saved_embed!r}, this one "
                             f"would have {network.extra_pos_embed!r}: {fix}")
    if args.resume and (args.out / STATISTICS_FILE).is_file():
        raw_stats = json.loads((args.out / STATISTICS_FILE).read_text())
    if args.resume and (args.out / TEXT_FILE).is_file():
        text_cache.update(TextEmbeddingCache.load(args.out / TEXT_FILE))
    if args.stats is not None:
        load_statistics(args.stats)
        raw_stats = json.loads(args.stats.read_text())

    demo_files = _episode_files(args.data)
    rollout_files = _episode_files(args.rollouts) if args.rollouts else []
    if raw_stats is None:
        raw_stats = compute_dataset_statistics(demo_files, skip_bad_episodes=args.skip_bad_episodes)
    stats = statistics_from_dict(raw_stats)
    spec = SampleSpec.from_configs(layout, network)
    demos = load_episodes(demo_files, spec, is_demo=True, task=args.task, skip_bad_episodes=args.skip_bad_episodes,
                          desc="demos")
    rollouts = load_episodes(rollout_files, spec, is_demo=False, task=args.task,
                             skip_bad_episodes=args.skip_bad_episodes, desc="rollouts")
    if args.text_embeddings is not None:
        text_cache.update(TextEmbeddingCache.load(args.text_embeddings))
    missing = sorted({e.task for e in demos + rollouts} - set(text_cache.texts))
    if missing and planning and args.t5_dir is None:
        # the planning model scores the base's proposals for the base's tasks: a text the base has no
        # embedding for is most likely an episode without task_description, named after its folder
        source = {e.task: e.source for e in demos + rollouts}
        raise UsageError(f"task text(s) unknown to --base {args.init_checkpoint}: "
                         + ", ".join(f"{task!r} ({source[task]})" for task in missing[:3])
                         + f"; it knows {sorted(text_cache.texts)}: record rollouts through run_policy goals (they "
                           f"carry task_description), pass --task TEXT, or --t5-dir / --text-embeddings for new tasks")
    if missing:
        if args.t5_dir is None and network.preset == "2b":
            raise UsageError(f"tasks without a text embedding: {missing}; pass --t5-dir LOCAL_T5_DIR or "
                             f"--text-embeddings FILE (the hash fallback is only for --network tiny)")
        text_cache.update(build_text_cache(missing, network.text_embed_dim, t5_dir=args.t5_dir,
                                           max_length=network.text_max_tokens))
    dataset = EpisodeDataset(demos, spec, stats, text_cache, rollouts=rollouts, objective_probs=args.objective_mix,
                             demo_sampling_prob=args.demo_sampling_prob, augment=not args.no_augment, seed=args.seed,
                             world_model_prob=args.world_model_prob, augment_variant=args.augment,
                             sample_stride=args.sample_stride, success_sampling_prob=args.success_sampling_prob,
                             demos_as_successes=args.demos_as_successes, start_prob=args.start_prob,
                             start_steps=args.start_steps)
    recorded_hw = camera_frame_hw(dataset)
    if planning and layout.camera_hw is not None and tuple(layout.camera_hw) != recorded_hw:
        # the planning checkpoint scores the base's proposals on the same camera stream, so it must keep
        # the base's resolution (a checkpoint refuses frames of another size)
        raise UsageError(f"--base {args.init_checkpoint} was trained on {layout.camera_hw[0]}x{layout.camera_hw[1]} "
                         f"camera frames, the episodes hold {recorded_hw[0]}x{recorded_hw[1]}; record the rollouts "
                         f"(and demos) at the base's resolution")
    if layout.camera_hw is not None and tuple(layout.camera_hw) != recorded_hw:
        # the checkpoint insists on the resolution it was trained on, so a deployment camera
        # configured differently is refused instead of silently resized
        log.info("camera frames are %dx%d (layout default %dx%d): the checkpoint records %dx%d",
                 *recorded_hw, *layout.camera_hw, *recorded_hw)
        layout = dataclasses.replace(layout, camera_hw=recorded_hw)
        model.layout = layout
    run_config = {"job": args.job, "data": [str(d) for d in args.data], "rollouts": [str(r) for r in args.rollouts],
                  "mix": mix_config(dataset)}
    if args.init_checkpoint is not None:
        run_config["init_checkpoint"] = str(args.init_checkpoint)
    trainer = Trainer(model, dataset, config, args.out, raw_stats, text_cache, sampler_config=sampler_config,
                      vae_base_dir=vae_base_dir, context=context, extra_config=run_config)
    if args.resume:
        step = trainer.resume(args.out)
        log.info("resumed %s at step %d", args.out, step)
    summary = trainer.train()
    if context.is_main:
        from .data.datasets import describe

        print(describe(dataset))
        print(summary.format())
    if context.world_size > 1:
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    return 0


def cmd_finetune_planning(args) -> int:
    """`train` from --base on --demos + --rollouts with the release's planning mix (planning_finetune.py)."""
    from .planning_finetune import check_base, check_rollout_folders

    # the cheap checks first: a wrong folder costs seconds, not a model load and a data pass
    check_train_out(args.out, args.resume, args.overwrite)
    check_base(args.base)
    check_rollout_folders(args.rollouts)
    args.data, args.init_checkpoint = args.demos, args.base
    return cmd_train(args)


def _observation(path: Path, cameras: list[str], step: int, task: str | None) -> tuple[dict, np.ndarray]:
    from .data.datasets import read_episode_record, task_from_path

    record = read_episode_record(path, cameras)
    steps = record.actions.shape[0]
    if not 0 <= step < steps:
        raise UsageError(f"--step {step}: {path} has steps 0..{steps - 1}")
    text = task or str(record.attrs.get("task_description") or task_from_path(path))
    frames = record.frames.read([step])
    obs = {"images": {cam: frames[cam][0] for cam in cameras}, "proprio": record.proprio[step], "task": text}
    return obs, record.actions


def cmd_infer(args) -> int:
    from .policy import CosmosPolicy

    policy = CosmosPolicy.from_checkpoint(args.checkpoint, device=args.device)
    layout = policy.layout
    obs, actions = _observation(args.episode, list(layout.cameras), args.step, args.task)
    policy.act(obs, num_steps=args.num_steps, seed=args.seed)  # warm-up: first call pays one-off costs
    chunk = policy.act(obs, num_steps=args.num_steps, seed=args.seed)
    last = actions.shape[0] - 1
    recorded = actions[np.minimum(np.arange(args.step, args.step + layout.action_chunk), last)]
    np.set_printoptions(precision=3, suppress=True, linewidth=160)
    print(f"task: {obs['task']!r}  step {args.step} of {args.episode}")
    print(f"chunk: {chunk.actions.shape[0]} x {chunk.actions.shape[1]}  first action: {chunk.actions[0]}")
    print(f"chunk min per dim: {chunk.actions.min(axis=0)}")
    print(f"chunk max per dim: {chunk.actions.max(axis=0)}")
    print(f"L1 to the recorded actions: {np.abs(chunk.actions - recorded).mean():.4f}")
    print(f"value: {chunk.value:.3f}   latency: {chunk.latency_s * 1000:.0f} ms")
    return 0


def cmd_import_release(args) -> int:
    from .native_import import import_release_checkpoint

    if args.base_dir is None:
        log.warning("no --base-dir: the checkpoint gets a random VAE (only useful for tests)")
    out = import_release_checkpoint(args.weights, args.out, layout=args.layout, vae_base_dir=args.base_dir,
                                    t5_pickle=args.t5_pickle, statistics_path=args.stats,
                                    network_preset=args.network)
    print(f"{out}: imported {args.weights} (layout {args.layout}, network {args.network})")
    return 0


def cmd_bench(args) -> int:
    import torch

    from .latency import benchmark_policy, format_table, random_policy, synthetic_observation
    from .policy import CosmosPolicy

    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    args.device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.checkpoint is not None:
        policy = CosmosPolicy.from_checkpoint(args.checkpoint, device=args.device, dtype=dtype)
        if policy.text_cache is None or not len(policy.text_cache):
            raise UsageError(f"{args.checkpoint}: no text embeddings to time with (add them with embed-text)")
        obs = synthetic_observation(policy, task=policy.text_cache.texts[0])
        what = str(args.checkpoint)
    else:
        policy = random_policy(args.network, args.layout, args.device, dtype=dtype)
        obs = synthetic_observation(policy)
        what = f"random {args.network} weights, layout {args.layout}"
    rows = benchmark_policy(policy, obs, runs=args.runs, action_steps=tuple(args.action_steps),
                            candidates=args.candidates, future_images=not args.no_future_images)
    print(f"{what} on {args.device} ({args.dtype})")
    print(format_table(rows))
    return 0


def _error_text(exc: BaseException) -> str:
    """One line for the user: OSErrors raised by open() carry the file apart from their message."""
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return str(exc) or type(exc).__name__


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `cosmos-policy` console script.

    Exit status: 0 done, 2 a mistake the message explains (bad option, missing or invalid file), 130 Ctrl-C
    or SIGTERM.
    """
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    prog = f"cosmos-policy {args.command}"
    try:
        with sigterm_as_ctrl_c():  # a background job (`cmd &` ignores Ctrl-C) stopped by kill saves as Ctrl-C does
            return int(args.func(args) or 0)
    except (UsageError, *EXPECTED_ERRORS) as exc:
        if args.verbose:
            raise
        print(f"{prog}: error: {_error_text(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        # TrainingInterrupted says which step was saved and how to go on; a bare Ctrl-C had nothing to save
        print(f"{prog}: {str(exc) or 'interrupted'}", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
