"""World-model and value quality on held-out episodes (demos and/or recorded rollouts).

For steps spread over each episode, the checkpoint gets the recorded observation (images, proprio, task)
and the RECORDED action chunk, then
- the world model predicts the future proprio (step t + K): L1 to the recorded one, in robot units and
  min/max-normalised units (a baseline: the L1 of "the state does not change", future = current);
- the value function predicts V(s') from the predicted future (as planning uses it), in [0, 1];
- the policy samples its own chunk from the observation: L1 to the recorded chunk (normalised units), the
  offline action error (`policy_action_steps` denoising steps; 0 skips it), and again with every camera
  black (same noise): how far the chunk moves is how much the policy looks at its cameras. A policy whose
  VAE gives no image information moves < 0.001 (measured on a random-VAE `small` checkpoint).
Whether the policy sees the task's objects, not only its own arms (`--policy-action-steps`, on demos): at the
first step of every episode the arms stand at the same start pose, so two episodes' first frames differ only
where the objects lie. The policy's first chunk is sampled from each episode's first observation and again
with the next episode's cameras (same noise): how far it moves against how far the two demonstrations'
chunks differ, and how often the swapped chunk lands closer to the other demonstration's chunk. A policy
blind to the objects moves by ~0 and gets ~half of these "right" by chance. The state swap asks the opposite,
later in the episode (step 50, the arms on their way): episode i's cameras with episode i+1's proprio. A
chunk that lands closer to episode i+1's demonstration follows the robot's state, not what the cameras show.
The value's ability to tell success from failure is the ROC AUC of the predicted values against the
episodes' success labels (demos and success-attr rollouts count as successes); it needs both classes.

With `--planner CKPT`, best-of-N as the policy node runs it (this checkpoint proposes, CKPT scores with
3 world-model x 5 value samples, the release's majority mean) at each observation: how often every candidate
gets the same value (then the first proposal wins by default: the planner chose nothing), the spread of the
candidates' values, and the raw V(s') samples against the majority mean's threshold (0.05): a planner whose
samples all fall below it values every candidate at 0.

    python -m cosmos_policy.data.model_quality --checkpoint checkpoints/aloha_sim_default \
        --episodes data/rollouts_eval [--episodes data/demos_heldout] [--steps-per-episode 8]
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cosmos_policy.metrics import roc_auc


@dataclass
class QualityReport:
    """Per-sample predictions and the summary figures."""

    episodes: list[str] = field(default_factory=list)
    success: list[bool] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    future_proprio_l1: list[float] = field(default_factory=list)  # robot units
    future_proprio_l1_normalised: list[float] = field(default_factory=list)
    static_baseline_l1: list[float] = field(default_factory=list)  # robot units, future = current
    action_l1_normalised: list[float] = field(default_factory=list)  # policy chunk vs recorded chunk
    blank_camera_action_change: list[float] = field(default_factory=list)  # chunk vs chunk with black cameras
    # best-of-N's raw material: N chunks sampled at one observation (different noise seeds)
    proposal_spread: list[float] = field(default_factory=list)  # mean pairwise L1 between them, normalised
    best_proposal_action_l1: list[float] = field(default_factory=list)  # the one closest to the recorded chunk
    # best-of-N with a planning checkpoint: per observation
    planning_tied: list[bool] = field(default_factory=list)  # every candidate got the same value
    planning_value_spread: list[float] = field(default_factory=list)  # max - min over the candidates
    planning_samples_above_threshold: list[float] = field(default_factory=list)  # fraction of raw V(s') samples
    planning_sample_mean: list[float] = field(default_factory=list)  # mean raw V(s') sample
    # first observations with another episode's cameras (objects elsewhere, arms alike): per episode pair
    scene_swap_action_change: list[float] = field(default_factory=list)  # own chunk vs swapped-camera chunk
    scene_swap_demo_difference: list[float] = field(default_factory=list)  # the two recorded chunks
    scene_swap_toward_other: list[bool] = field(default_factory=list)  # swapped chunk closer to the other demo
    state_swap_follows_state: list[bool] = field(default_factory=list)  # cameras of i, proprio of j: nearer j's demo

    def summary(self) -> dict:
        per_episode: dict[str, list[float]] = {}
        label: dict[str, bool] = {}
        for ep, v, s in zip(self.episodes, self.values, self.success):
            per_episode.setdefault(ep, []).append(v)
            label[ep] = s
        names = sorted(per_episode)
        return {
            "samples": len(self.values),
            "episodes": len(names),
            "successful_episodes": int(sum(label[n] for n in names)),
            "future_proprio_l1": float(np.mean(self.future_proprio_l1)) if self.values else None,
            "future_proprio_l1_normalised": float(np.mean(self.future_proprio_l1_normalised)) if self.values else None,
            "static_baseline_l1": float(np.mean(self.static_baseline_l1)) if self.values else None,
            "policy_action_l1_normalised": _mean(self.action_l1_normalised),
            "blank_camera_action_change_normalised": _mean(self.blank_camera_action_change),
            "proposal_spread_normalised": _mean(self.proposal_spread),
            "best_proposal_action_l1_normalised": _mean(self.best_proposal_action_l1),
            "value_mean_success": _mean([v for v, s in zip(self.values, self.success) if s]),
            "value_mean_failure": _mean([v for v, s in zip(self.values, self.success) if not s]),
            "value_auc_samples": roc_auc(self.values, self.success),
            "value_auc_episodes": roc_auc([np.mean(per_episode[n]) for n in names], [label[n] for n in names]),
            "planning_observations": len(self.planning_tied),
            "planning_tied_fraction": _mean([float(t) for t in self.planning_tied]),
            "planning_value_spread": _mean(self.planning_value_spread),
            "planning_samples_above_threshold": _mean(self.planning_samples_above_threshold),
            "planning_sample_mean": _mean(self.planning_sample_mean),
            "scene_swap_pairs": len(self.scene_swap_action_change),
            "scene_swap_action_change_normalised": _mean(self.scene_swap_action_change),
            "scene_swap_demo_difference_normalised": _mean(self.scene_swap_demo_difference),
            "scene_swap_toward_other_fraction": _mean([float(t) for t in self.scene_swap_toward_other]),
            "state_swap_follows_state_fraction": _mean([float(t) for t in self.state_swap_follows_state]),
        }


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def episode_success(attrs: dict, is_demo: bool) -> bool:
    """Demos are successes; rollouts by their `success` attr (else a `success_score` of 1)."""
    if is_demo:
        return True
    if "success" in attrs:
        return bool(attrs["success"])
    return float(attrs.get("success_score", 0.0)) >= 1.0


@torch.no_grad()
def evaluate_quality(policy, episode_files: Sequence[str | Path], *, steps_per_episode: int = 8,
                     demos: bool = False, world_model_steps: int | None = None, value_steps: int | None = None,
                     seed: int = 0, task: str | None = None, policy_action_steps: int = 0,
                     proposals: int = 0, planner=None, candidates: int = 4) -> QualityReport:
    """World-model future-proprio L1 and predicted values of `policy` (a CosmosPolicy) on episode files.

    With ``policy_action_steps``, also the policy's own chunk against the recorded one, and how much it moves
    with black cameras. With ``proposals`` N >= 2 as well, N chunks per observation (the first is the policy's
    own): how far apart they are, and how close the best of them gets to the recorded chunk. Best-of-N
    planning can only pick among proposals: when they barely differ, no value function can help. With a
    ``planner`` (a CosmosPolicy), best-of-``candidates`` planning at each observation (see the module text).
    """
    from cosmos_policy.data.datasets import read_episode_record, task_from_path
    from cosmos_policy.injection import extract, extract_value, value_to_unit
    from cosmos_policy.latent_sequence import inject_vectors
    from cosmos_policy.objectives import VALUE, WORLD_MODEL, clean_mask_for
    from cosmos_policy.sampler import generate

    layout, model, cfg = policy.layout, policy.model, policy.sampler
    wm_steps = world_model_steps or cfg.future_state_steps
    v_steps = value_steps or cfg.value_steps
    actions_norm, proprio_norm = policy._normalizer("actions"), policy._normalizer("proprio")
    generator = torch.Generator(device=policy.device).manual_seed(seed)
    wm_mask = clean_mask_for(layout, WORLD_MODEL).to(policy.device)[None]
    value_mask = clean_mask_for(layout, VALUE).to(policy.device)[None]
    fp_index, value_index = layout.index("future_proprio"), layout.index("value")
    report = QualityReport()
    for path in episode_files:
        path = Path(path)
        record = read_episode_record(path, layout.cameras)
        steps = record.actions.shape[0]
        text = task or str(record.attrs.get("task_description") or task_from_path(path))
        success = episode_success(record.attrs, demos)
        chosen = np.unique(np.linspace(0, steps - 1, num=min(steps_per_episode, steps)).round().astype(int))
        frames = record.frames.read(chosen.tolist())
        for row, t in enumerate(chosen.tolist()):
            obs = {"images": {cam: frames[cam][row] for cam in layout.cameras}, "proprio": record.proprio[t],
                   "task": text}
            prepared = policy.prepare(obs)
            images, proprio, text_emb = policy._to_device(prepared)
            chunk = record.actions[np.minimum(np.arange(t, t + layout.action_chunk), steps - 1)]
            chunk_n = torch.as_tensor(np.clip(actions_norm.normalize(chunk), -1, 1), dtype=torch.float32)
            x = policy.encode_observation(images, proprio)
            x = inject_vectors(layout, x, actions=chunk_n[None].to(policy.device))
            x = generate(model, x, wm_mask, text_emb, wm_steps, cfg, generator)
            predicted_n = extract(x, fp_index, layout.proprio_dim)[0].float().cpu().numpy()
            predicted = np.asarray(proprio_norm.unnormalize(torch.as_tensor(predicted_n)), dtype=np.float64)
            truth = record.proprio[min(t + layout.action_chunk, steps - 1)].astype(np.float64)
            truth_n = np.asarray(proprio_norm.normalize(truth[None].astype(np.float32)))[0]
            x = generate(model, x, value_mask, text_emb, v_steps, cfg, generator)
            value = float(value_to_unit(extract_value(x, value_index))[0])
            report.episodes.append(str(path))
            report.success.append(success)
            report.values.append(value)
            report.future_proprio_l1.append(float(np.abs(predicted - truth).mean()))
            report.future_proprio_l1_normalised.append(float(np.abs(predicted_n - truth_n).mean()))
            report.static_baseline_l1.append(float(np.abs(record.proprio[t] - truth).mean()))
            if policy_action_steps > 0:
                own = policy.infer(prepared, num_steps=policy_action_steps, seed=seed + t).actions
                own_n = np.clip(actions_norm.normalize(own), -1, 1)
                report.action_l1_normalised.append(float(np.abs(own_n - chunk_n.numpy()).mean()))
                blank = policy.prepare({**obs, "images": {cam: np.zeros_like(img) for cam, img in obs["images"].items()}})
                blind = policy.infer(blank, num_steps=policy_action_steps, seed=seed + t).actions
                blind_n = np.clip(actions_norm.normalize(blind), -1, 1)
                report.blank_camera_action_change.append(float(np.abs(own_n - blind_n).mean()))
                if proposals >= 2:
                    chunks = [own_n] + [np.clip(actions_norm.normalize(policy.infer(
                        prepared, num_steps=policy_action_steps, seed=seed + t + 100_003 * k).actions), -1, 1)
                        for k in range(1, proposals)]
                    pairs = [float(np.abs(a - b).mean()) for i, a in enumerate(chunks) for b in chunks[i + 1:]]
                    report.proposal_spread.append(float(np.mean(pairs)))
                    report.best_proposal_action_l1.append(min(float(np.abs(c - chunk_n.numpy()).mean()) for c in chunks))
            if planner is not None:
                add_planning_decision(report, planner.plan(obs, proposer=policy, num_candidates=candidates,
                                                           seed=seed + t))
    return report


@torch.no_grad()
def evaluate_scene_swap(policy, episode_files: Sequence[str | Path], *, policy_action_steps: int, seed: int = 0,
                        task: str | None = None, report: QualityReport | None = None,
                        state_step: int = 50) -> QualityReport:
    """Does the policy's chunk follow the objects, or the robot's state? (see the module text) Episode i's
    first observation is run as recorded and with episode i+1's cameras (cyclic); at `state_step`, episode i's
    cameras with episode i+1's proprio. The same noise throughout."""
    from cosmos_policy.data.datasets import read_episode_record, task_from_path

    report = report if report is not None else QualityReport()
    layout = policy.layout
    actions_norm = policy._normalizer("actions")
    episodes = []
    for path in episode_files:
        record = read_episode_record(path, layout.cameras)
        steps = [0, min(state_step, record.actions.shape[0] - 1)]
        frames = record.frames.read(steps)
        episodes.append([({cam: frames[cam][row] for cam in layout.cameras}, record.proprio[t],
                          np.clip(actions_norm.normalize(record.actions[t:t + layout.action_chunk]), -1, 1))
                         for row, t in enumerate(steps)]
                        + [task or str(record.attrs.get("task_description") or task_from_path(Path(path)))])
    if len(episodes) < 2:
        return report

    def chunk(images, proprio, text) -> np.ndarray:
        prepared = policy.prepare({"images": images, "proprio": proprio, "task": text})
        return np.clip(actions_norm.normalize(policy.infer(prepared, num_steps=policy_action_steps,
                                                           seed=seed).actions), -1, 1)

    def l1(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean())

    for i, (first, later, text) in enumerate(episodes):
        other_first, other_later, other_text = episodes[(i + 1) % len(episodes)]
        if other_text != text or len(first[2]) != len(other_first[2]) or len(later[2]) != len(other_later[2]):
            continue  # the pair must differ only in the scene (and be long enough for whole chunks)
        own, swapped = chunk(first[0], first[1], text), chunk(other_first[0], first[1], text)
        report.scene_swap_action_change.append(l1(own, swapped))
        report.scene_swap_demo_difference.append(l1(first[2], other_first[2]))
        report.scene_swap_toward_other.append(l1(swapped, other_first[2]) < l1(own, other_first[2]))
        mixed = chunk(later[0], other_later[1], text)  # cameras of i, state of i+1
        report.state_swap_follows_state.append(l1(mixed, other_later[2]) < l1(mixed, later[2]))
    return report


def add_planning_decision(report: QualityReport, chunk) -> None:
    """One best-of-N decision (a planning ActionChunk) into the report's planning figures."""
    from cosmos_policy.policy import RELEASE_VALUE_THRESHOLD

    values, samples = np.asarray(chunk.candidate_values), np.asarray(chunk.candidate_value_samples)
    report.planning_tied.append(bool(np.all(values == values[0])))
    report.planning_value_spread.append(float(np.ptp(values)))
    report.planning_samples_above_threshold.append(float(np.mean(samples >= RELEASE_VALUE_THRESHOLD)))
    report.planning_sample_mean.append(float(np.mean(samples)))


def main(argv: list[str] | None = None) -> int:
    from cosmos_policy.data.datasets import find_episode_files
    from cosmos_policy.policy import CosmosPolicy

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--episodes", type=Path, action="append", default=[],
                        help="rollout folder(s): success from the episodes' `success` / `success_score` attrs")
    parser.add_argument("--demos", type=Path, action="append", default=[],
                        help="held-out demo folder(s): all successes")
    parser.add_argument("--steps-per-episode", type=int, default=8)
    parser.add_argument("--world-model-steps", type=int)
    parser.add_argument("--value-steps", type=int)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy-action-steps", type=int, default=5,
                        help="also sample the policy's own chunk with this many steps (0: skip)")
    parser.add_argument("--proposals", type=int, default=0,
                        help="also sample N chunks per observation (N >= 2): their spread and the best one's "
                             "error, what best-of-N planning has to choose from")
    parser.add_argument("--planner", type=Path,
                        help="planning checkpoint: also run best-of-N at each observation (this checkpoint "
                             "proposes, the planner scores): ties, value spread, raw value samples")
    parser.add_argument("--candidates", type=int, default=4, help="best-of-N's N with --planner (default 4)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args(argv)
    if not args.episodes and not args.demos:
        parser.error("give --episodes and/or --demos")
    policy = CosmosPolicy.from_checkpoint(args.checkpoint, device=args.device)
    planner = CosmosPolicy.from_checkpoint(args.planner, device=args.device) if args.planner else None
    if planner is not None:
        planner.camera_hw = None  # it sees the frames the base policy accepted, as in the policy node
    report = QualityReport()
    for folders, demos in ((args.episodes, False), (args.demos, True)):
        files = [f for folder in folders for f in find_episode_files(folder, split=None)]
        part = evaluate_quality(policy, files, steps_per_episode=args.steps_per_episode, demos=demos,
                                world_model_steps=args.world_model_steps, value_steps=args.value_steps,
                                seed=args.seed, policy_action_steps=args.policy_action_steps,
                                proposals=args.proposals, planner=planner, candidates=args.candidates)
        if demos and args.policy_action_steps > 0:
            for folder in folders:  # pairs within one task folder
                evaluate_scene_swap(policy, find_episode_files(folder, split=None), seed=args.seed,
                                    policy_action_steps=args.policy_action_steps, report=part)
        for name in vars(report):
            getattr(report, name).extend(getattr(part, name))
    summary = report.summary()
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
