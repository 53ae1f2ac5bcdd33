"""The planning model's fine-tune (`cosmos-policy finetune-planning`): the release's V(s') run, as defaults.

The planning checkpoint scores the base policy's proposals (issue 10). It is the base checkpoint trained
further by the same trainer as `cosmos-policy train`, on demonstrations plus scored rollouts, with the mix
of the release's ALOHA planning run:

- demonstrations drawn with probability 0.1; they train the policy objective only and are not rollouts
  (the base run's demos stand in as successful rollouts; here real rollouts do);
- a rollout draw picks the successful or the failed rollouts 50/50 whatever their counts (a class with no
  episode: a warning and the other class), then a step within them; success is the recorder's `success`
  attribute, else a full score (data.values.episode_success);
- rollout samples train the world model or the value 50/50;
- the value objective is V(s'): current state and action frames masked (objectives.NEXT_STATE);
- learning rate: warm-up 1.5k steps, factor 1.0 -> 0.3 over a 15k-step cycle, then 0.06; the release
  deploys its 18k-step checkpoint, the default length here.

The value target's return is the rollout's score fraction (success_score = stage score / 100): a rollout
scored 50 teaches a lower value curve than one scored 100 (the release divides by the terminal reward,
which makes every non-zero score alike; data.values). Weights, statistics and text embeddings come from
the base, so the planning model normalises exactly as the base policy whose proposals it scores.

Only the checks of the inputs and the defaults live here; the training is cli.cmd_train's.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .objectives import NEXT_STATE


@dataclass(frozen=True)
class PlanningMix:
    """The sampling mix of the release's planning fine-tune."""

    demo_sampling_prob: float = 0.1
    success_sampling_prob: float = 0.5
    world_model_prob: float = 0.5
    value_conditioning: str = NEXT_STATE


PLANNING_MIX = PlanningMix()
# TrainConfig fields whose planning defaults differ from the base run's: the release's 15k-step cycle with a
# 1.5k warm-up, and the deployed 18k-step checkpoint
PLANNING_TRAIN_DEFAULTS = {"steps": 18_000, "warmup_steps": 1_500, "lr_cycle_steps": 15_000, "decay": "release",
                           "value_conditioning": PLANNING_MIX.value_conditioning}


class PlanningInputError(ValueError):
    """An input of the planning fine-tune that cannot be used as given; the message names it and the fix."""


def check_base(base: Path) -> Path:
    """The base checkpoint directory: model weights and the statistics the planning model must share."""
    from .checkpoint import MODEL_FILE, STATISTICS_FILE

    base = Path(base)
    if not base.is_dir():
        raise PlanningInputError(f"--base {base}: not a checkpoint directory (e.g. checkpoints/aloha_sim_default)")
    missing = [name for name in (MODEL_FILE, STATISTICS_FILE) if not (base / name).is_file()]
    if missing:
        raise PlanningInputError(f"--base {base}: no {', '.join(missing)}; point it at the base policy's checkpoint "
                                 f"directory (the one the policy node proposes with)")
    return base


def _score_attrs(path: Path) -> dict | None:
    """The root attributes of an episode file, or None when it cannot be opened (the loader reports it)."""
    from .data.act_episode import EpisodeFileError, attr_value, open_episode_file

    try:
        with open_episode_file(path) as f:
            return {k: attr_value(v) for k, v in f.attrs.items()}
    except (EpisodeFileError, OSError):
        return None


def check_rollout_folders(folders: list[Path]) -> list[Path]:
    """The finished, scored episode files of each --rollouts folder; a folder that has none is an error.

    Reads only the files' attributes (seconds for hundreds of episodes), so a wrong folder fails before
    the base checkpoint and the data are loaded. Interrupted recordings (`*.hdf5.partial`) are never
    listed (data.datasets.find_episode_files), and an unscored episode is refused rather than given a
    score it never had: it would teach the value a failure or a success that nobody observed.
    """
    from .data.datasets import find_episode_files
    from .data.values import has_score

    if not folders:
        raise PlanningInputError("--rollouts: none given; pass the recorder's output folder, e.g. --rollouts "
                                 "data/rollouts")
    files: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.exists():
            raise PlanningInputError(f"--rollouts {folder}: folder not found; pass the recorder's out_dir "
                                     f"(e.g. data/rollouts)")
        found = find_episode_files(folder)
        if not found:
            partial = sorted(folder.rglob("*.partial")) if folder.is_dir() else []
            hint = (f"; {len(partial)} interrupted recording(s) there: run `rollout_recorder recover {folder}`"
                    if partial else "; record rollouts with the recorder or convert bags with "
                                    "`rollout_recorder bag-to-episode`")
            raise PlanningInputError(f"--rollouts {folder}: no finished episodes (episode_<i>.hdf5){hint}")
        unscored = [path for path in found if (attrs := _score_attrs(path)) is not None and not has_score(attrs)]
        if unscored:
            names = ", ".join(p.name for p in unscored[:3]) + (", ..." if len(unscored) > 3 else "")
            raise PlanningInputError(
                f"--rollouts {folder}: {len(unscored)} of {len(found)} episodes have no score ({names}); score "
                f"them with `rollout_scoring {folder}` (docs/scoring.md) or move them out of the folder")
        files.extend(found)
    return files


def mix_config(dataset) -> dict:
    """What the checkpoint's config records of a run's sampling mix (an EpisodeDataset's settings)."""
    from .data.datasets import expected_objective_fractions, expected_success_fraction

    successes, failures = dataset.rollout_class_counts
    success_fraction = expected_success_fraction(dataset)
    return {
        "release_mix": dataset.release_mix,
        "demo_sampling_prob": dataset.demo_sampling_prob,
        "world_model_prob": dataset.world_model_prob,
        "success_sampling_prob": dataset.success_sampling_prob,
        "rollout_success_fraction": None if success_fraction != success_fraction else success_fraction,
        "objective_fractions": [float(p) for p in expected_objective_fractions(dataset)],
        "demos_as_successes": dataset.demos_as_successes,
        "start_prob": dataset.start_prob,
        "start_steps": dataset.start_steps,
        "rollouts_success": successes,
        "rollouts_failure": failures,
    }
