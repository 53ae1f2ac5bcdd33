#!/usr/bin/env bash
# Train LeRobot's ACT on an exported LeRobot dataset (scripts/export_lerobot.sh), in .venv-lerobot, on a wall-time
# budget, seeded, checkpointing periodically in LeRobot's own layout, resumable:
#
#   ./scripts/train_act.sh --dataset data/lerobot/aloha_sim_transfer_cube --out runs/act/transfer_cube --budget-min 34
#
# Re-running the same command resumes from <out>/checkpoints/last until the budget (counted over all runs of
# that output folder) is spent; a larger --budget-min continues a finished run. SIGINT/SIGTERM save a checkpoint
# before exiting. The model: ACTConfig with no pretrained backbone (nothing is downloaded: a ResNet18 trained from
# scratch), chunk 50, every camera of the dataset, 14-D state/action, LeRobot's ACT preset (AdamW, lr 1e-5,
# weight decay 1e-4, KL weight 10). ACT takes no text: train one model per task (one dataset per task); a dataset
# holding several tasks trains one model that must tell them apart from the images.
#
# Why not `lerobot-train` itself: it has no wall-time budget, and its --resume re-seeds the data order to the
# start of the same permutation. This loop uses LeRobot's own config, dataset, policy, processor, optimizer
# preset and checkpoint functions, and writes LeRobot's checkpoint layout (checkpoints/<step>/{pretrained_model,
# training_state}; `lerobot-train --resume` reads that layout, not tried on these runs).
#
# Options (defaults): --batch-size 8 --seed 1000 --save-every-min 10 --max-steps 0 (no limit) --num-workers 1
# --threads 0 (torch default) --log-every 25 --chunk 50 --n-action-steps 50 --lr 1e-5; model size for tests:
# --dim-model 512 --dim-feedforward 3200 --n-encoder-layers 4 --n-vae-encoder-layers 4.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VPY="${LEROBOT_PYTHON:-$ROOT/.venv-lerobot/bin/python}"
[ -x "$VPY" ] || { echo "[train_act] error: $VPY not found: run ./scripts/setup_lerobot.sh first" >&2; exit 1; }
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
unset PYTHONPATH AMENT_PREFIX_PATH
exec "$VPY" - "$@" <<'PY'
import argparse
import json
import logging
import math
import shutil
import signal
import sys
import time
from pathlib import Path

p = argparse.ArgumentParser(prog="train_act.sh")
p.add_argument("--dataset", required=True, help="LeRobot dataset root (scripts/export_lerobot.sh --out)")
p.add_argument("--repo-id", default=None, help="its repo_id (default: from meta/info.json or local/<name>)")
p.add_argument("--out", required=True, help="training output folder (checkpoints/<step>, checkpoints/last)")
p.add_argument("--budget-min", type=float, default=10.0, help="wall minutes of training over all runs of --out")
p.add_argument("--max-steps", type=int, default=0, help="stop at this step as well (0: budget only)")
p.add_argument("--batch-size", type=int, default=8)
p.add_argument("--seed", type=int, default=1000)
p.add_argument("--save-every-min", type=float, default=10.0)
p.add_argument("--num-workers", type=int, default=1)
p.add_argument("--threads", type=int, default=0)
p.add_argument("--log-every", type=int, default=25)
p.add_argument("--chunk", type=int, default=50)
p.add_argument("--n-action-steps", type=int, default=50)
p.add_argument("--lr", type=float, default=1e-5)
p.add_argument("--dim-model", type=int, default=512)
p.add_argument("--dim-feedforward", type=int, default=3200)
p.add_argument("--n-encoder-layers", type=int, default=4)
p.add_argument("--n-vae-encoder-layers", type=int, default=4)
p.add_argument("--device", default="cpu")
args = p.parse_args()

import torch  # noqa: E402
from lerobot.configs.default import DatasetConfig  # noqa: E402
from lerobot.configs.train import TrainPipelineConfig  # noqa: E402
from lerobot.datasets.factory import make_dataset  # noqa: E402
from lerobot.optim.factory import make_optimizer_and_scheduler  # noqa: E402
from lerobot.policies.act.configuration_act import ACTConfig  # noqa: E402
from lerobot.policies.factory import make_policy, make_pre_post_processors  # noqa: E402
from lerobot.utils.random_utils import set_seed  # noqa: E402
from lerobot.utils.train_utils import (get_step_checkpoint_dir, load_training_state, save_checkpoint,  # noqa: E402
                                       update_last_checkpoint)

logging.basicConfig(level=logging.WARNING)
say = lambda msg: print(f"[train_act] {msg}", flush=True)  # noqa: E731
if args.threads > 0:
    torch.set_num_threads(args.threads)

dataset_root = Path(args.dataset).resolve()
info = json.loads((dataset_root / "meta" / "info.json").read_text())
repo_id = args.repo_id or f"local/{dataset_root.name}"
out = Path(args.out).resolve()
last = out / "checkpoints" / "last"
resume = (last / "training_state").is_dir()
STATE_FILE = "aloha_train_state.json"
TASKS_FILE = "aloha_tasks.json"
prior = json.loads((last / STATE_FILE).read_text()) if resume and (last / STATE_FILE).is_file() else {}
elapsed_before = float(prior.get("elapsed_s", 0.0))
budget_s = args.budget_min * 60.0
if resume and elapsed_before >= budget_s and (not args.max_steps or prior.get("step", 0) >= args.max_steps):
    say(f"{out}: budget spent ({elapsed_before / 60:.1f} of {args.budget_min:g} min, step {prior.get('step')}); "
        f"nothing to do (raise --budget-min to continue)")
    sys.exit(0)

policy_cfg = ACTConfig(chunk_size=args.chunk, n_action_steps=args.n_action_steps, pretrained_backbone_weights=None,
                       device=args.device, push_to_hub=False, optimizer_lr=args.lr, optimizer_lr_backbone=args.lr,
                       dim_model=args.dim_model, dim_feedforward=args.dim_feedforward,
                       n_encoder_layers=args.n_encoder_layers, n_vae_encoder_layers=args.n_vae_encoder_layers)
cfg = TrainPipelineConfig(dataset=DatasetConfig(repo_id=repo_id, root=str(dataset_root)), policy=policy_cfg,
                          output_dir=out, job_name=f"act_{dataset_root.name}", resume=resume, seed=args.seed,
                          num_workers=args.num_workers, batch_size=args.batch_size,
                          steps=args.max_steps or 999_999, eval_freq=0, log_freq=args.log_every,
                          save_freq=1_000_000)
if not resume and out.exists() and any(out.iterdir()):
    sys.exit(f"[train_act] error: {out} exists and holds no checkpoint to resume; choose another --out or delete it")
if resume:
    # the policy config of the run being resumed wins over the command line (same model)
    from lerobot.configs.policies import PreTrainedConfig
    saved = PreTrainedConfig.from_pretrained(last / "pretrained_model")
    saved.device = args.device
    saved.pretrained_path = last / "pretrained_model"
    cfg.policy = saved
    cfg.checkpoint_path = last.resolve()
cfg.optimizer = cfg.policy.get_optimizer_preset()
cfg.scheduler = cfg.policy.get_scheduler_preset()

set_seed(args.seed)
t0 = time.perf_counter()
dataset = make_dataset(cfg)
policy = make_policy(cfg=cfg.policy, ds_meta=dataset.meta)
preprocessor, postprocessor = make_pre_post_processors(policy_cfg=cfg.policy, dataset_stats=dataset.meta.stats)
optimizer, lr_scheduler = make_optimizer_and_scheduler(cfg, policy)
step = 0
if resume:
    step, optimizer, lr_scheduler = load_training_state(cfg.checkpoint_path, optimizer, lr_scheduler)
tasks = [str(t) for t in dataset.meta.tasks.index]
export_meta = dataset_root / "meta" / "aloha_export.json"
task_names = sorted(set(json.loads(export_meta.read_text()).get("task_names", {}).values())) if export_meta.is_file() else []
n_params = sum(q.numel() for q in policy.parameters())
say(f"{'resuming at step ' + str(step) if resume else 'new run'}: {out}; dataset {dataset_root} "
    f"({dataset.num_episodes} episodes, {dataset.num_frames} frames, tasks {task_names or tasks}); ACT "
    f"{n_params / 1e6:.1f} M parameters, cameras {list(cfg.policy.image_features)}, chunk {cfg.policy.chunk_size}; "
    f"batch {args.batch_size}, seed {args.seed}; budget {args.budget_min:g} min ({elapsed_before / 60:.1f} spent); "
    f"set-up {time.perf_counter() - t0:.1f} s")

# data order: seeded, and different after a resume (seed + step), never the start of the same permutation again
generator = torch.Generator().manual_seed(args.seed + step)
loader = torch.utils.data.DataLoader(dataset, batch_size=args.batch_size, shuffle=True, generator=generator,
                                     num_workers=args.num_workers, drop_last=True,
                                     persistent_workers=args.num_workers > 0,
                                     prefetch_factor=2 if args.num_workers > 0 else None)


def batches():
    while True:
        yield from loader


stop = {"signal": None}


def on_signal(signum, frame):
    stop["signal"] = signal.Signals(signum).name


signal.signal(signal.SIGINT, on_signal)
signal.signal(signal.SIGTERM, on_signal)


def save(step: int, elapsed: float, history: dict) -> Path:
    ckpt = get_step_checkpoint_dir(out, cfg.steps, step)
    save_checkpoint(checkpoint_dir=ckpt, step=step, cfg=cfg, policy=policy, optimizer=optimizer,
                    scheduler=lr_scheduler, preprocessor=preprocessor, postprocessor=postprocessor)
    pretrained = ckpt / "pretrained_model"
    (pretrained / TASKS_FILE).write_text(json.dumps(
        {"tasks": tasks, "task_names": task_names, "fps": dataset.meta.fps, "dataset": str(dataset_root)}, indent=1))
    (ckpt / STATE_FILE).write_text(json.dumps({"step": step, "elapsed_s": round(elapsed, 1), **history}, indent=1))
    update_last_checkpoint(ckpt)
    for old in (out / "checkpoints").iterdir():  # keep the newest only: each holds ~0.6 GB of optimizer state
        if old.is_dir() and not old.is_symlink() and old.name != ckpt.name:
            shutil.rmtree(old)
    return ckpt


policy.train()
grad_clip = cfg.optimizer.grad_clip_norm
run_start = time.perf_counter()
run_cpu_start = time.process_time()
last_save = run_start
window = {"loss": 0.0, "l1": 0.0, "kld": 0.0, "n": 0, "data_s": 0.0, "step_s": 0.0, "cpu_s": 0.0}
history = {k: prior.get(k) for k in ("seconds_per_step", "cpu_seconds_per_step", "last_loss", "last_l1") if k in prior}
steps_this_run = 0
it = batches()
while True:
    elapsed = elapsed_before + (time.perf_counter() - run_start)
    if elapsed >= budget_s or (args.max_steps and step >= args.max_steps) or stop["signal"]:
        break
    t_step = time.perf_counter()
    c_step = time.process_time()
    batch = next(it)
    t_data = time.perf_counter() - t_step
    batch = preprocessor(batch)
    loss, out_dict = policy.forward(batch)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip, error_if_nonfinite=False)
    optimizer.step()
    optimizer.zero_grad()
    if lr_scheduler is not None:
        lr_scheduler.step()
    step += 1
    steps_this_run += 1
    loss_value = float(loss.detach())
    window["loss"] += loss_value
    window["l1"] += float(out_dict.get("l1_loss", math.nan))
    window["kld"] += float(out_dict.get("kld_loss", math.nan))
    window["n"] += 1
    window["data_s"] += t_data
    window["step_s"] += time.perf_counter() - t_step
    window["cpu_s"] += time.process_time() - c_step  # this process's CPU time, all its threads (not the loader's)
    if not math.isfinite(loss_value):
        sys.exit(f"[train_act] error: loss is {loss_value} at step {step}; stopping without saving")
    if step % args.log_every == 0:
        n = window["n"]
        history.update(seconds_per_step=round(window["step_s"] / n, 3), cpu_seconds_per_step=round(window["cpu_s"] / n, 3),
                       last_loss=round(window["loss"] / n, 4),
                       last_l1=round(window["l1"] / n, 4))
        say(f"step {step}: loss {window['loss'] / n:.4f} (l1 {window['l1'] / n:.4f}, kld {window['kld'] / n:.4f}); "
            f"{window['step_s'] / n:.2f} s/step wall ({window['data_s'] / n:.2f} s waiting for data), "
            f"{window['cpu_s'] / n:.2f} CPU-s/step; "
            f"{(elapsed_before + time.perf_counter() - run_start) / 60:.1f} of {args.budget_min:g} min")
        window = dict.fromkeys(window, 0.0) | {"n": 0}
    if time.perf_counter() - last_save >= args.save_every_min * 60:
        ckpt = save(step, elapsed_before + time.perf_counter() - run_start, history)
        say(f"checkpoint {ckpt}")
        last_save = time.perf_counter()

elapsed = elapsed_before + (time.perf_counter() - run_start)
if steps_this_run:
    run_wall, run_cpu = time.perf_counter() - run_start, time.process_time() - run_cpu_start
    history.update(run_steps=steps_this_run, run_seconds_per_step=round(run_wall / steps_this_run, 3),
                   run_cpu_seconds_per_step=round(run_cpu / steps_this_run, 3))
    say(f"this run: {steps_this_run} steps in {run_wall / 60:.1f} min: {run_wall / steps_this_run:.2f} s/step wall, "
        f"{run_cpu / steps_this_run:.2f} CPU-s/step (batch {args.batch_size})")
if steps_this_run or not resume:
    ckpt = save(step, elapsed, history)
    say(f"{'stopped by ' + stop['signal'] if stop['signal'] else 'done'}: step {step}, {elapsed / 60:.1f} min of "
        f"training; checkpoint {ckpt} (serve it with checkpoint:=lerobot:{out})")
PY
