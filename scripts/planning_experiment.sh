#!/usr/bin/env bash
# The planning experiment of issue 10, in the simulator, on CPU, stage by stage; every stage resumes:
#
#   ./scripts/planning_experiment.sh record     # rollouts of the base policy, recorded and scored by the sim
#   ./scripts/planning_experiment.sh finetune   # the planning model (V(s')) from the base, on demos + rollouts
#   ./scripts/planning_experiment.sh evaluate   # best-of-N planning on the evaluation seeds (direct: same seeds)
#   ./scripts/planning_experiment.sh all
#
# Record: ROLLOUTS_PER_TASK (100) rollouts per task of the base checkpoint, lockstep, 96x128 cameras, seeds
#   SEED_START.. (3000..: disjoint from the demos' 0-49 and the evaluation's 1000-1049), both tasks side by
#   side on ROS domains DOMAINS ("111 112"). Each goal is an episode in ROLLOUTS/<task>, scored 0-100 by the
#   sim's stages (docs/scoring.md). Rerunning records the missing episodes with the seeds after the highest
#   one recorded (an interrupted one is dropped; one moved out of the folder is replaced by a new seed).
#   What each stage costs here: docs/planning.md. The domains are above the test
#   suite's 1-100 (ROS 2 advises 0-101 on Linux: higher ones may meet ephemeral ports; set DOMAINS if so).
# Finetune: `cosmos-policy finetune-planning` as docs/planning.md gives it (the release's mix and LR cycle
#   shape), STEPS (4000) x batch 16 on every SAMPLE_STRIDE-th (5) step, into PLANNING; resumes from its
#   5-minute checkpoints (Ctrl-C or SIGTERM saves first). Expected cost: docs/planning.md. DEMOS_AS_SUCCESSES=1
#   (not the release) lets the demos be the successful class when no rollout succeeded (docs/planning.md); its
#   run and reports default to runs/planning_sim_demos and planning_N<N>_planning_sim_demos_<task>.
# Evaluate: eval.launch.py policy_mode:=planning on the evaluation seeds, NUM_CANDIDATES (4) proposals per
#   chunk, each scored by 3 world-model x 5 value samples; the direct column is the shipped policy's on the
#   same seeds (docs/results.md), or EVAL_DIRECT=1 runs it again. Rerunning resumes: the episodes already in
#   eval/planning_N<N>_<planning>_<task>.json are kept and only the missing seeds run.
set -euo pipefail

main() {
    cd "$(dirname "$0")/.."
    source env.sh
    BASE=${BASE:-checkpoints/aloha_sim_default}
    ROLLOUTS=${ROLLOUTS:-data/rollouts_sim}
    ROLLOUTS_PER_TASK=${ROLLOUTS_PER_TASK:-100}
    SEED_START=${SEED_START:-3000}
    DEMOS_AS_SUCCESSES=${DEMOS_AS_SUCCESSES:-0}
    # its own run: resuming the release-mix run (or its evaluation reports) would silently reuse them
    local run=runs/planning_sim
    [ "$DEMOS_AS_SUCCESSES" = 1 ] && run=runs/planning_sim_demos
    PLANNING=${PLANNING:-$run}
    STEPS=${STEPS:-4000}
    SAMPLE_STRIDE=${SAMPLE_STRIDE:-5}  # finetune: every Nth step of each episode is a sample
    NUM_CANDIDATES=${NUM_CANDIDATES:-4}
    EPISODES=${EPISODES:-50}
    MAX_STEPS=${MAX_STEPS:-0}  # evaluate: steps per episode (0: the task's length; small for a smoke test)
    EVAL_DIRECT=${EVAL_DIRECT:-0}
    read -r -a domains <<< "${DOMAINS:-111 112}"
    local tasks=(transfer_cube insertion)
    mkdir -p logs eval

    trap stop_children INT TERM
    case "${1:-all}" in
        record) record ;;
        finetune) finetune ;;
        evaluate) evaluate ;;
        all) record && finetune && evaluate ;;
        *) echo "usage: $0 record|finetune|evaluate|all" >&2; exit 2 ;;
    esac
}

finished() {  # finished episodes in folder $1
    find "$1" -maxdepth 1 -name 'episode_*.hdf5' 2>/dev/null | wc -l
}

record_task() {  # task, ROS domain: the missing rollouts of one task
    local task=$1 domain=$2 dir=$ROLLOUTS/$1
    local log=logs/$(basename "$ROLLOUTS")_$1 report=eval/$(basename "$ROLLOUTS")_$1.json
    mkdir -p "$dir"
    rm -f "$dir"/*.partial  # an interrupted recording: its seed is recorded again below
    local have first
    have=$(finished "$dir")
    if [ "$have" -ge "$ROLLOUTS_PER_TASK" ]; then
        echo "$dir: $have rollouts, nothing to record"
        return 0
    fi
    # after the highest seed recorded (an episode moved out of the folder is not recorded again with its seed)
    first=$(python - "$dir" "$SEED_START" <<'PY'
import glob, sys
import h5py
seeds = [int(h5py.File(p).attrs.get("seed", -1)) for p in glob.glob(f"{sys.argv[1]}/episode_*.hdf5")]
print(max([int(sys.argv[2]) - 1, *seeds]) + 1)
PY
)
    local todo=$((ROLLOUTS_PER_TASK - have))
    echo "$dir: $have of $ROLLOUTS_PER_TASK rollouts; recording seeds $first-$((first + todo - 1)) on ROS domain $domain (log: $log.log)"
    export ROS_DOMAIN_ID=$domain
    : > "${log}_recorder.log"  # the readiness check below must not read a previous run's log
    ./scripts/launch.sh aloha_bringup record.launch.py out_dir:="$dir" image_height:=96 image_width:=128 \
        sim:=true policy_checkpoint:="$BASE" > "${log}_recorder.log" 2>&1 &
    local recorder=$!
    # the recorder learns of goals from the action's status topic: it must be up before the first goal
    timeout 120 bash -c "until grep -q 'recorder ready' ${log}_recorder.log; do sleep 1; done" ||
        { kill -INT $recorder 2>/dev/null || true; echo "the recorder did not start: ${log}_recorder.log" >&2; return 1; }
    local status=0 evaluation
    ./scripts/launch.sh aloha_bringup eval.launch.py tasks:="$task" episodes:=$todo \
        seed_start:=$first checkpoint:="$BASE" out:="$report" \
        label:="rollouts_$(basename "$BASE")" > "$log.log" 2>&1 &
    evaluation=$!
    # in the background, so that a SIGTERM is handled at once (bash runs traps between commands)
    trap 'kill -TERM $evaluation $recorder 2>/dev/null; wait; exit 130' TERM
    wait $evaluation || status=$?
    sleep 3  # the last episode is finalised when its goal ends
    kill -INT $recorder 2>/dev/null || true
    wait $recorder || true
    echo "$dir: $(finished "$dir") rollouts (evaluation harness exit status $status)"
    return $status
}

stop_children() {  # Ctrl-C or SIGTERM to this script stops what it started (the launches hold ROS domains)
    trap - INT TERM
    local pids
    pids=$(jobs -p)
    # SIGTERM: the launcher stops its nodes on it, and a record_task subshell (whose SIGINT a background
    # job ignores) stops its two launches
    [ -n "$pids" ] && kill -TERM $pids 2>/dev/null
    wait
    exit 130
}

record() {
    local pids=() i=0 status=0
    for task in "${tasks[@]}"; do
        record_task "$task" "${domains[$i]}" & pids+=($!)
        i=$((i + 1))
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    return $status
}

finetune() {
    local resume=() stand_in=()
    [ -f "$PLANNING/trainer_state.json" ] && resume=(--resume)
    [ "$DEMOS_AS_SUCCESSES" = 1 ] && stand_in=(--demos-as-successes)
    cosmos-policy finetune-planning --base "$BASE" \
        --demos data/demos_96x128/transfer_cube --demos data/demos_96x128/insertion \
        --rollouts "$ROLLOUTS/transfer_cube" --rollouts "$ROLLOUTS/insertion" --out "$PLANNING" \
        --steps "$STEPS" --warmup-steps $((STEPS / 12)) --lr-cycle-steps $((STEPS * 5 / 6)) \
        --batch-size 16 --cache-latents --latent-versions 1 --sample-stride "$SAMPLE_STRIDE" \
        --num-workers 2 --threads 1 --save-every 0 --save-every-s 300 --no-progress --log-every 25 "${stand_in[@]}" "${resume[@]}"
}

evaluate() {
    local pids=() i=0 status=0 label
    label="planning_N${NUM_CANDIDATES}_$(basename "$PLANNING")"
    for task in "${tasks[@]}"; do
        ROS_DOMAIN_ID=${domains[$i]} ./scripts/launch.sh aloha_bringup eval.launch.py tasks:="$task" \
            episodes:="$EPISODES" checkpoint:="$BASE" planning_checkpoint:="$PLANNING" policy_mode:=planning \
            num_candidates:="$NUM_CANDIDATES" max_steps:="$MAX_STEPS" out:="eval/${label}_$task.json" label:="$label" \
            resume:=true >> "logs/${label}_$task.log" 2>&1 & pids+=($!)
        i=$((i + 1))
    done
    for pid in "${pids[@]}"; do wait "$pid" || status=1; done
    if [ "$EVAL_DIRECT" = 1 ]; then
        ROS_DOMAIN_ID=${domains[0]} ./scripts/launch.sh aloha_bringup eval.launch.py episodes:="$EPISODES" \
            checkpoint:="$BASE" out:="eval/direct_$(basename "$BASE").json" label:=direct || status=1
    fi
    return $status
}

main "$@"
