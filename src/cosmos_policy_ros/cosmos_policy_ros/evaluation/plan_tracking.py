"""How far a policy's closed-loop trajectory strays from the scripted expert's for the same seed.

A stage score says an episode failed, not how. This separates the two ways a policy that was trained on
scripted demonstrations can fail:

- it does not see where the objects are: its trajectory stays near *a* demonstration, but no closer to
  this seed's than to those of other seeds;
- it cannot follow any demonstration: it strays further from this seed's than the demonstrations of
  different seeds lie from each other, even where they all agree (e.g. the transfer cube's handover pose).

The expert's trajectory is the joint state the simulator reaches executing the scripted plan (deterministic:
the same seed and commands give the same states). Each seed runs in the MuJoCo simulator directly, without
ROS: the chunk executed ``execute_steps`` at a time at the control rate, smoothed as the policy node smooths it
(``smoothing_window`` of aloha_bringup's config/policy.yaml, unless ``--smoothing-window`` says otherwise) and
otherwise as the policy returns it (none of the node's seam ramp or command shaping). A command the simulator
refuses (outside the joint limits) stops the episode there, and the arms hold the last valid target to the end,
as the robot would.
At each time t it records, in radians (grippers in the ACT 0..1 units), mean over the 14 joints:

- ``own``: |q(t) - q_expert,seed(t)|;
- ``others``: the same against each reference seed's expert, averaged;
- ``spread``: |q_expert,seed(t) - q_expert,ref(t)| averaged over the reference seeds: how much the object
  positions change the demonstration at t.

The JSON report also has ``own`` and ``spread`` per joint at each reported step: a joint that errs where
every expert moves alike (e.g. the left arm while the right one reaches for the cube) errs from imprecision.

    python -m cosmos_policy_ros.evaluation.plan_tracking --checkpoint checkpoints/aloha_sim_default \\
        --task transfer_cube --seeds 1000-1009 --json eval/plan_tracking.json
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from aloha_sim.demos_cli import parse_image_size
from cosmos_policy_ros.chunk_scheduler import Chunk, ChunkScheduler, smooth_rows

# act(images, qpos, task_text, chunk_index) -> (N, 14) joint targets
ActFn = Callable[[dict[str, np.ndarray], np.ndarray, str, int], np.ndarray]
REFERENCE_SEED_START = 5000  # experts of these seeds (never demos nor evaluation seeds) stand for "other scenes"


def expert_plan(env, seed: int) -> np.ndarray:
    """The scripted plan of ``seed``: (T, 14) joint targets, planned from the reset's object poses."""
    from aloha_sim.scripted import plan_episode

    env.reset(seed)
    return plan_episode(env.task, env.object_poses(), env.contract)


def expert_trajectory(env, seed: int) -> np.ndarray:
    """The joint states (T, 14) the simulator passes through executing ``seed``'s scripted plan."""
    plan = expert_plan(env, seed)
    obs = env.observe(render=False)
    states = []
    for command in plan:
        states.append(obs.qpos.copy())
        obs = env.step(command, render=False)
    return np.asarray(states)


def track_episode(env, act: ActFn, seed: int, expert: np.ndarray, references: Sequence[np.ndarray], *,
                  execute_steps: int, max_steps: int | None = None,
                  temporal_ensemble_coeff: float | None = None) -> dict:
    """One closed-loop episode of ``act`` from ``seed``: per-step own / others / spread against the expert's
    joint states (``expert``, ``references``: (T, 14) each), and the stage score.

    Chunks are scheduled by the policy node's own ``ChunkScheduler`` as its blocking client runs them (no
    prefetch: a chunk is asked for when the previous one has run ``execute_steps`` rows), with ACT temporal
    ensembling over every chunk that covers a tick when ``temporal_ensemble_coeff`` is set."""
    from aloha_contract.validation import InvalidCommand

    steps = min(env.episode_steps, len(expert), *(len(r) for r in references))
    if max_steps is not None:
        steps = min(steps, max_steps)
    scheduler = ChunkScheduler(execute_steps, env.contract.control_period_s, prefetch=False,
                               temporal_ensemble_coeff=temporal_ensemble_coeff)
    obs = env.reset(seed)
    visited: list[np.ndarray] = []
    chunk_index, stopped = 0, None
    for tick in range(steps):
        target = None
        if stopped is None:
            if scheduler.should_request(tick):
                scheduler.mark_requested(tick)
                chunk = np.asarray(act(obs.images, obs.qpos, env.task.description, chunk_index), dtype=np.float64)
                if chunk.ndim != 2 or chunk.shape[1] != expert.shape[1]:
                    raise ValueError(f"the policy returned a chunk of shape {chunk.shape}: "
                                     f"expected (N, {expert.shape[1]})")
                scheduler.on_chunk(Chunk(chunk, obs_tick=tick, index=chunk_index), tick)
                chunk_index += 1
            target = scheduler.action_for(tick)
        visited.append(obs.qpos.copy())
        if target is None:  # as on the robot: after a refused command (or with no row) the arms hold
            obs = env.step(env.last_command)
            continue
        try:
            obs = env.step(target)
        except InvalidCommand as exc:
            stopped = f"step {tick}: {exc}"
            obs = env.step(env.last_command)
    q = np.asarray(visited)
    own_by_joint = np.abs(q - expert[:steps])
    spread_by_joint = np.mean([np.abs(expert[:steps] - ref[:steps]) for ref in references], axis=0)
    others = np.mean([np.abs(q - ref[:steps]).mean(axis=1) for ref in references], axis=0)
    return {"seed": seed, "stage_score": float(env.stage_score().score), "own": own_by_joint.mean(axis=1),
            "others": others, "spread": spread_by_joint.mean(axis=1), "own_by_joint": own_by_joint,
            "spread_by_joint": spread_by_joint, "stopped": stopped}


def summarise(episodes: Sequence[dict], times: Sequence[int]) -> dict:
    """Means over episodes at each of ``times`` (steps), and where own is closer than others."""
    rows = []
    for t in times:
        at = [e for e in episodes if len(e["own"]) > t]
        if not at:
            continue
        own = np.array([e["own"][t] for e in at])
        others = np.array([e["others"][t] for e in at])
        spread = np.array([e["spread"][t] for e in at])
        row = {"step": int(t), "episodes": len(at), "own_rad": float(own.mean()),
               "others_rad": float(others.mean()), "spread_rad": float(spread.mean()),
               "own_closer_fraction": float(np.mean(own < others))}
        if all("own_by_joint" in e for e in at):
            # per joint: an error where every expert agrees (spread ~ 0) is imprecision, not blindness
            row["own_by_joint_rad"] = np.mean([e["own_by_joint"][t] for e in at], axis=0).round(4).tolist()
            row["spread_by_joint_rad"] = np.mean([e["spread_by_joint"][t] for e in at], axis=0).round(4).tolist()
        rows.append(row)
    return {"episodes": len(episodes), "mean_stage_score": float(np.mean([e["stage_score"] for e in episodes])),
            "stopped_episodes": sum(e.get("stopped") is not None for e in episodes), "by_step": rows}


def parse_seeds(text: str) -> list[int]:
    """'1000-1009' or '1000,1003,1007'."""
    try:
        if "-" in text:
            first, last = (int(x) for x in text.split("-", 1))
            if last < first:
                raise ValueError
            return list(range(first, last + 1))
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds {text!r}: expected FIRST-LAST or a comma-separated list") from None


def policy_act_fn(policy, *, action_steps: int | None, smoothing_window: int = 0) -> ActFn:
    """The policy's chunk, in robot units, with the node's moving average over ``smoothing_window`` rows (0: as
    returned); chunk i is sampled with seed i, so that a rerun repeats itself."""
    def act(images, qpos, text, chunk_index):
        chunk = policy.act({"images": images, "proprio": qpos, "task": text}, num_steps=action_steps,
                           seed=chunk_index).actions
        return smooth_rows(np.asarray(chunk, dtype=np.float64), smoothing_window)
    return act


def node_parameters() -> dict:
    """The policy node's parameters in aloha_bringup's config/policy.yaml: what the closed loop runs."""
    import yaml
    from ament_index_python.packages import get_package_share_directory

    path = Path(get_package_share_directory("aloha_bringup")) / "config" / "policy.yaml"
    return yaml.safe_load(path.read_text())["/**/policy_node"]["ros__parameters"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cosmos_policy_ros.evaluation.plan_tracking",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", required=True, help="policy checkpoint folder")
    parser.add_argument("--task", default="transfer_cube", help="task of config/tasks.yaml")
    parser.add_argument("--seeds", type=parse_seeds, default=parse_seeds("1000-1009"),
                        help="evaluated seeds, FIRST-LAST or a list (default 1000-1009)")
    parser.add_argument("--reference-seeds", type=int, default=8,
                        help=f"how many other scenes' experts to compare with (seeds {REFERENCE_SEED_START}...)")
    parser.add_argument("--execute-steps", type=int, default=50, help="steps of each chunk executed (default 50)")
    parser.add_argument("--action-steps", type=int, default=None, help="denoising steps (default: the checkpoint's)")
    parser.add_argument("--smoothing-window", type=int, default=None,
                        help="moving average over each chunk's rows, 0 = off (default: the policy node's, "
                             "config/policy.yaml)")
    parser.add_argument("--temporal-ensemble-coeff", type=float, default=None,
                        help="ACT temporal ensembling over the chunks covering each step, weights exp(-coeff * i) "
                             "from the oldest; < 0 = off (default: the policy node's, config/policy.yaml). Pair it "
                             "with a short --execute-steps, e.g. 10")
    parser.add_argument("--image-size", type=parse_image_size, default=None,
                        help="HEIGHTxWIDTH rendered (default: the camera size the checkpoint was trained on)")
    parser.add_argument("--max-steps", type=int, default=None, help="truncate episodes (default: the task's length)")
    parser.add_argument("--every", type=int, default=50, help="report every this many steps (default 50)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, default=None, help="also write the summary and per-episode rows here")
    args = parser.parse_args(argv)
    if min(args.execute_steps, args.reference_seeds, args.every) < 1:
        parser.error("--execute-steps, --reference-seeds and --every must be at least 1")
    if args.smoothing_window is not None and args.smoothing_window < 0:
        parser.error(f"--smoothing-window {args.smoothing_window}: expected 0 (off) or a number of rows")
    image_size = args.image_size

    from tqdm import tqdm

    from aloha_sim.env import AlohaSimEnv
    from cosmos_policy.policy import CosmosPolicy

    policy = CosmosPolicy.from_checkpoint(args.checkpoint, device=args.device,
                                          camera_hw="layout" if image_size is None else image_size)
    node = node_parameters()  # what the options leave unset is the closed loop's setting
    smoothing_window = int(node["smoothing_window"] if args.smoothing_window is None else args.smoothing_window)
    coeff = float(node["temporal_ensemble_coeff"] if args.temporal_ensemble_coeff is None
                  else args.temporal_ensemble_coeff)
    ensemble = coeff if coeff >= 0.0 else None  # the node's convention: negative = off
    act = policy_act_fn(policy, action_steps=args.action_steps, smoothing_window=smoothing_window)
    episodes = []
    with AlohaSimEnv(args.task, image_size=image_size or tuple(policy.layout.camera_hw)) as env:
        references = [expert_trajectory(env, REFERENCE_SEED_START + i) for i in range(args.reference_seeds)]
        for seed in tqdm(args.seeds, desc=f"{args.task} episodes", unit="ep", file=sys.stderr):
            episodes.append(track_episode(env, act, seed, expert_trajectory(env, seed), references,
                                          execute_steps=args.execute_steps, max_steps=args.max_steps,
                                          temporal_ensemble_coeff=ensemble))
    length = max(len(e["own"]) for e in episodes)
    times = list(range(args.every - 1, length, args.every))
    summary = summarise(episodes, times)
    summary.update(checkpoint=str(args.checkpoint), task=args.task, execute_steps=args.execute_steps,
                   smoothing_window=smoothing_window, temporal_ensemble_coeff=ensemble)
    print(f"{args.task}, {len(episodes)} seeds, {args.execute_steps} steps per chunk, smoothing window "
          f"{smoothing_window}, temporal ensembling {'off' if ensemble is None else ensemble}, "
          f"mean stage score {summary['mean_stage_score']:.1f}, "
          f"{summary['stopped_episodes']} stopped by a refused command (the arms then hold)")
    print("step   own rad  others rad  spread rad  own closer")
    for row in summary["by_step"]:
        print(f"{row['step'] + 1:4d}   {row['own_rad']:7.3f}  {row['others_rad']:10.3f}  {row['spread_rad']:10.3f}"
              f"  {row['own_closer_fraction']:10.0%}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        rows = [{"seed": e["seed"], "stage_score": e["stage_score"], "stopped": e["stopped"],  # at the reported steps
                 **{k: [round(float(e[k][t]), 5) for t in times if t < len(e[k])] for k in ("own", "others", "spread")}}
                for e in episodes]
        args.json.write_text(json.dumps({**summary, "per_episode": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
