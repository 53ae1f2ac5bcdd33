#!/usr/bin/env bash
# Train the `medium` ALOHA sim checkpoint on one CUDA GPU: the same scripted demos as the default checkpoint
# (seeds 0-49 per task, 96x128, JPEG as ALOHA stores them), a VAE pretrained on their frames at 128 px, then
# the DiT with a fresh augmentation at every visit (the release's way; no latent cache), then an export.
#
#   ./scripts/train_medium_gpu.sh                       # after ./scripts/setup.sh, with a CUDA build of torch
#   JOBS=16 VAE_STEPS=1500 STEPS=8000 TRAIN_MIN=40 ./scripts/train_medium_gpu.sh
#   STAGES="demos vae" ./scripts/train_medium_gpu.sh   # some stages only (demos, vae, probe, train, export)
#   TRAIN_EXTRA="--cache-latents --latent-versions 4" ./scripts/train_medium_gpu.sh   # more train options
#     (the VAE encode likely bounded the first run at ~200 samples/s: cached latents are the next thing to try)
#
# Every stage is resumable or skipped when done: demos continue with --resume, the VAE is kept once written,
# the DiT run continues from its last checkpoint (saved every 2 minutes and at TRAIN_MIN).
# Measured on one H200 with 16 cores (docs/results.md, "A larger model trained on a GPU"): demos 34 s, VAE 3.4 min,
# DiT about 200 samples/s at batch 64, so the default 8,000 steps take about 45 minutes. The checkpoint there
# (760 steps, all that 15 minutes of device time allowed) is not the default.
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    if [ -f env.sh ]; then source env.sh; fi  # elsewhere the caller sets PYTHONPATH to the src/ packages
    local py=${PYTHON:-python3}
    local data=${DATA:-data/demos_96x128}
    local vae=${VAE:-runs/vae_medium}
    local run=${RUN:-runs/medium}
    local out=${OUT_DIR:-runs/medium_export}
    local episodes=${EPISODES:-50}
    local jobs=${JOBS:-$(nproc)}
    local vae_steps=${VAE_STEPS:-1500}
    local steps=${STEPS:-8000}
    local batch=${BATCH:-64}
    local train_min=${TRAIN_MIN:-0}
    local workers=${WORKERS:-$(( $(nproc) > 2 ? $(nproc) - 2 : 1 ))}
    local stages=${STAGES:-"demos vae train export"}
    local max_steps=()  # DEMO_MAX_STEPS=N: truncated demos, for the script's own test only
    [ -n "${DEMO_MAX_STEPS:-}" ] && max_steps=(--max-steps "$DEMO_MAX_STEPS")
    has() { [[ " $stages " == *" $1 "* ]]; }
    export MUJOCO_GL=${MUJOCO_GL:-egl}

    if has demos; then
        # JOBS recorders in parallel, each a contiguous range of seeds into its own folder, then merged so
        # that episode_<i>.hdf5 holds seed i, exactly as one `aloha_sim_demos --seed-start 0` run writes it
        local per=$(( (2 * episodes + jobs - 1) / jobs )) pids=() task start n
        mkdir -p "$data"
        for task in transfer_cube insertion; do
            for ((start = 0; start < episodes; start += per)); do
                n=$(( episodes - start < per ? episodes - start : per ))
                [ -f "$data/$task/episode_$((start + n - 1)).hdf5" ] && continue
                "$py" -m aloha_sim.demos_cli --task "$task" --episodes "$n" --seed-start "$start" --resume \
                    --out "$data/$task.part/$start" --image-size 96x128 --compress "${max_steps[@]}" >"$data.$task.$start.log" 2>&1 &
                pids+=($!)
            done
        done
        local failed=0 pid
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
        [ "$failed" = 0 ] || { tail -n 5 "$data".*.log >&2; echo "demo recording failed (logs above)" >&2; exit 1; }
        for task in transfer_cube insertion; do
            mkdir -p "$data/$task"
            [ -d "$data/$task.part" ] || continue
            for folder in "$data/$task.part"/*; do
                start=$(basename "$folder")
                for file in "$folder"/episode_*.hdf5; do
                    local i=${file##*/episode_}; i=${i%.hdf5}
                    mv "$file" "$data/$task/episode_$((start + i)).hdf5"
                done
            done
            rm -r "$data/$task.part"
        done
        rm -f "$data".*.log
        echo "demos: $(ls "$data"/transfer_cube | wc -l) transfer_cube, $(ls "$data"/insertion | wc -l) insertion in $data"
    fi

    if has vae && [ ! -f "$vae/vae/config.json" ]; then
        "$py" -m cosmos_policy.cli pretrain-vae --data "$data/transfer_cube" --data "$data/insertion" --network medium \
            --batch-size 32 --steps "$vae_steps" --frames-per-episode 24 --out "$vae" --no-progress --overwrite
    fi

    local train=(--data "$data/transfer_cube" --data "$data/insertion" --layout aloha --network medium --vae-dir "$vae"
                 --batch-size "$batch" --lr 5e-4 --warmup-steps 200 --sample-stride 1 --num-workers "$workers"
                 --save-every 0 --save-every-s 120 --log-every 100 --no-progress --seed 0 ${TRAIN_EXTRA:-})
    if has probe; then  # samples/s of this machine, to choose STEPS for a time budget
        "$py" -m cosmos_policy.cli train "${train[@]}" --out "$run.probe" --overwrite --steps 60 \
            --lr-cycle-steps 60 --save-every-s 0
    fi
    if has train; then
        local resume=(--overwrite)
        [ -f "$run/trainer_state.json" ] && resume=(--resume)
        "$py" -m cosmos_policy.cli train "${train[@]}" --out "$run" "${resume[@]}" --steps "$steps" \
            --lr-cycle-steps "$steps" --time-limit-min "$train_min"
    fi

    if has export; then  # weights + config + statistics + text embeddings, no optimiser state
        mkdir -p "$out"
        cp "$run/model.safetensors" "$run/config.json" "$run/dataset_statistics.json" \
            "$run/text_embeddings.safetensors" "$out/"
        du -sh "$out"
    fi
}

main "$@"; exit $?
