"""The planning model's fine-tune (issue 10, item 2): the release's mix over many draws, staged scores
shaping the value targets the dataset yields, input errors, and `cosmos-policy finetune-planning` end to
end on recorder-streamed and bag-converted episodes, with --resume."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from data_synthetic import synthetic_episode, write_synthetic_episodes
from safetensors.torch import load_file

from cosmos_policy.cli import build_parser, main, train_config_from_args
from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.data.act_episode import EpisodeWriter
from cosmos_policy.data.datasets import (
    EpisodeDataset,
    SampleSpec,
    compute_dataset_statistics,
    expected_success_fraction,
    load_episodes,
)
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.data.values import episode_score_fraction, episode_success
from cosmos_policy.objectives import NEXT_STATE, POLICY, VALUE, WORLD_MODEL
from cosmos_policy.planning_finetune import PLANNING_MIX, check_rollout_folders

SPEC = SampleSpec.from_configs(load_layout("aloha"), NetworkConfig.preset_config("tiny"))
TASK = "fold shirt"
HW = (48, 64)


def recorder_attrs(score: float) -> dict:
    """The closing attributes the recorder node (and the bag converter) write from a stage score."""
    return {"stage_score": float(score), "success": score >= 100.0, "success_score": score / 100.0,
            "stages_reached": ["touched"], "score_source": "sim", "task_description": TASK}


def write_rollouts(folder: Path, scores, steps: int = 40) -> list[Path]:
    return write_synthetic_episodes(folder, count=len(scores), steps=steps, image_hw=HW,
                                    attrs=[recorder_attrs(s) for s in scores])


def stream_rollout(folder: Path, score: float, u: float, steps: int) -> Path:
    """One rollout streamed row by row through EpisodeWriter, as the recorder node records it live."""
    episode = synthetic_episode(u, 0.5, steps, HW)
    writer = EpisodeWriter(folder, {cam: HW for cam in SPEC.cameras}, attrs={"task_description": TASK},
                           compress=True, max_steps=steps, reserve_bytes=0)
    for t in range(steps):
        writer.append(episode.qpos[t], episode.action[t], {cam: episode.images[cam][t] for cam in SPEC.cameras})
        writer.add_stage(t, int(score) if t == steps - 1 else 0)
    closing = recorder_attrs(score)
    closing.pop("task_description")
    return writer.finish(closing)


def planning_dataset(demo_paths, rollout_paths, **overrides) -> EpisodeDataset:
    """The dataset cmd_train builds for finetune-planning (its defaults: PLANNING_MIX)."""
    stats = statistics_from_dict(compute_dataset_statistics(demo_paths))
    demos = load_episodes(demo_paths, SPEC, is_demo=True)
    rollouts = load_episodes(rollout_paths, SPEC, is_demo=False)
    cache = build_text_cache({e.task for e in demos + rollouts}, SPEC.text_dim, max_length=SPEC.text_max_tokens)
    mix = {"demo_sampling_prob": PLANNING_MIX.demo_sampling_prob,
           "success_sampling_prob": PLANNING_MIX.success_sampling_prob,
           "world_model_prob": PLANNING_MIX.world_model_prob, **overrides}
    return EpisodeDataset(demos, SPEC, stats, cache, rollouts=rollouts, augment=False, **mix)


def within(count: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    """count / n is p up to `sigmas` binomial standard errors."""
    return abs(count / n - p) <= sigmas * np.sqrt(p * (1 - p) / n)


# --- the mix ------------------------------------------------------------------------------------------------

def test_planning_mix_holds_over_10000_draws(tmp_path):
    demos = write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=2, steps=30, image_hw=HW)
    # one success of 20 steps against three failures of 40: drawing steps uniformly would give successes
    # 20 / 140 = 14 % of the rollout draws, the release's class mix gives 50 %
    rollouts = (write_rollouts(tmp_path / "rollouts" / "ok", [100], steps=20)
                + write_rollouts(tmp_path / "rollouts" / "failed", [0, 50, 25], steps=40))
    ds = planning_dataset(demos, rollouts)
    assert [e.is_success for e in ds.rollouts] == [True, False, False, False]
    n = 10_000
    demo_draws, successes, counts = 0, 0, {True: np.zeros(3), False: np.zeros(3)}
    for index in range(n):  # indices past len(ds) are later passes: independent draws
        episode, _, objective, _ = ds.plan(index)
        if episode.is_demo:
            demo_draws += 1
            assert objective == POLICY  # demos: the policy objective only
            continue
        assert episode in ds.rollouts and objective != POLICY  # rollouts: world model or value only
        successes += episode.is_success
        counts[episode.is_success][objective] += 1
    rollout_draws = n - demo_draws
    assert within(demo_draws, n, 0.1)
    assert within(successes, rollout_draws, 0.5)
    world_model = int(counts[True][WORLD_MODEL] + counts[False][WORLD_MODEL])
    assert within(world_model, rollout_draws, 0.5)
    for outcome in (True, False):  # the objective is drawn independently of the class
        assert within(int(counts[outcome][WORLD_MODEL]), int(counts[outcome].sum()), 0.5)
    assert expected_success_fraction(ds) == 0.5

    plain = planning_dataset(demos, rollouts, success_sampling_prob=None)  # `train`'s default: by step count
    assert expected_success_fraction(plain) == pytest.approx(20 / 140)
    drawn = [e for e in (plain.plan(i)[0] for i in range(n)) if not e.is_demo]
    assert within(sum(e.is_success for e in drawn), len(drawn), 20 / 140)


def test_an_empty_class_warns_and_draws_the_other(tmp_path, caplog):
    demos = write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=1, steps=10, image_hw=HW)
    failed = write_rollouts(tmp_path / "failed", [0, 50], steps=10)
    with caplog.at_level("WARNING"):
        ds = planning_dataset(demos, failed)
    assert "all 2 failed, none succeeded" in caplog.text and "failed rollouts only" in caplog.text
    drawn = [ds.plan(i)[0] for i in range(2000)]
    assert any(not e.is_demo for e in drawn) and not any(e.is_success for e in drawn if not e.is_demo)
    assert expected_success_fraction(ds) == 0.0

    caplog.clear()
    ok = write_rollouts(tmp_path / "ok", [100], steps=10)
    with caplog.at_level("WARNING"):
        ds = planning_dataset(demos, ok)
    assert "all 1 succeeded, none failed" in caplog.text and expected_success_fraction(ds) == 1.0


def test_demos_stand_in_as_successes_when_no_rollout_succeeded(tmp_path, caplog):
    """--demos-as-successes: with only failed rollouts, half the rollout draws are demo steps that train the
    world model or the value toward R = 1; the demos' own 10% policy draws stay as they were."""
    from cosmos_policy.data.datasets import expected_objective_fractions
    from cosmos_policy.objectives import POLICY, VALUE
    from cosmos_policy.planning_finetune import mix_config

    demos = write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=2, steps=10, image_hw=HW)
    failed = write_rollouts(tmp_path / "failed", [0, 50], steps=10)
    with caplog.at_level("WARNING"):
        ds = planning_dataset(demos, failed, demos_as_successes=True)
    assert "the 2 demonstrations stand in as the successful rollouts" in caplog.text
    n = 4000
    plans = [ds.plan(i) for i in range(n)]
    demo_policy = sum(e.is_demo and o == POLICY for e, _, o, _ in plans)
    demo_value = [(e, t) for e, t, o, _ in plans if e.is_demo and o == VALUE]
    failed_draws = sum(not e.is_demo for e, _, _, _ in plans)
    assert within(demo_policy, n, 0.1) and within(failed_draws, n, 0.9 * 0.5)
    assert within(len(demo_value), n, 0.9 * 0.5 * 0.5)
    value_item = next(i for i, (e, _, o, _) in enumerate(plans) if e.is_demo and o == VALUE)
    failed_item = next(i for i, (e, _, o, _) in enumerate(plans) if not e.is_demo and o == VALUE)
    assert ds[value_item]["value"] > ds[failed_item]["value"]  # R = 1 against the failures' 0 / 0.5
    assert expected_success_fraction(ds) == 0.5 and np.allclose(expected_objective_fractions(ds), [0.1, 0.45, 0.45])
    assert mix_config(ds)["demos_as_successes"] is True
    # a demo drawn as a rollout is read (and its latents cached) under the demo's own sample key
    index = next(i for i, (e, _, o, _) in enumerate(plans) if e.is_demo and o != POLICY)
    episode, t, _, _, key = ds._plan(index)
    demo_index = next(i for i, d in enumerate(ds.demos) if d is episode)
    assert key == int(ds._demo_offsets[demo_index]) + t
    # with a successful rollout, nothing stands in
    ok = write_rollouts(tmp_path / "ok", [100], steps=10)
    assert not planning_dataset(demos, failed + ok, demos_as_successes=True).demos_as_successes


def test_success_and_score_come_from_the_recorder_attributes():
    # the recorder and the scoring page write all three; success_score is the return, `success` the class
    assert episode_score_fraction(recorder_attrs(50), is_demo=False) == 0.5
    assert not episode_success(recorder_attrs(50), is_demo=False, score=0.5)
    assert episode_success(recorder_attrs(100), is_demo=False, score=1.0)
    # a staged score alone: R = score / 100, never binarised; success only at 100
    assert episode_score_fraction({"stage_score": 75.0}, is_demo=False) == 0.75
    assert not episode_success({"stage_score": 75.0}, is_demo=False, score=0.75)
    assert episode_success({"stage_score": 100.0}, is_demo=False, score=1.0)
    with pytest.raises(ValueError, match=r"ep.hdf5: staged score 140.0.*scoring page"):
        episode_score_fraction({"stage_score": 140.0}, is_demo=False, source="ep.hdf5")
    # the release's rollouts carry only the boolean
    assert episode_score_fraction({"success": True}, is_demo=False) == 1.0


# --- staged scores shape the value --------------------------------------------------------------------------

def test_a_rollout_scored_50_teaches_another_value_curve_than_one_scored_100(tmp_path):
    demos = write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=1, steps=20, image_hw=HW)
    rollouts = write_rollouts(tmp_path / "rollouts", [100, 50, 0], steps=30)
    ds = planning_dataset(demos, rollouts)
    score_of = {e.source: round(e.score * 100) for e in ds.rollouts}
    first_index: dict[tuple[int, int], int] = {}
    for index in range(4000):
        episode, t, _, _ = ds.plan(index)
        if not episode.is_demo:
            first_index.setdefault((score_of[episode.source], t), index)
    curves: dict[int, dict[int, float]] = {100: {}, 50: {}, 0: {}}
    objectives = set()
    for (score, t), index in sorted(first_index.items()):
        item = ds[index]  # what the trainer gets: the value target of the future step t + K
        curves[score][t] = float(item["value"])
        objectives.add(int(item["objective"]))
    assert objectives == {WORLD_MODEL, VALUE}
    common = sorted(set(curves[100]) & set(curves[50]) & set(curves[0]))
    assert len(common) >= 20
    full = np.array([curves[100][t] for t in common])
    half = np.array([curves[50][t] for t in common])
    zero = np.array([curves[0][t] for t in common])
    # the same steps of equally long episodes: the 50-scored rollout's targets are lower everywhere
    assert np.all(half < full - 0.5)
    # returns in [0, 1] are (v + 1) / 2: the 50 rollout's are half the 100 rollout's, step by step (the
    # release's division by the terminal reward would make them equal)
    np.testing.assert_allclose((half + 1) / 2, 0.5 * (full + 1) / 2, atol=1e-6)
    np.testing.assert_allclose(zero, -1.0)
    late = [i for i, t in enumerate(common) if t + SPEC.action_chunk >= 29]  # future step clamped to the end
    assert late and np.allclose(full[late], 1.0) and np.allclose(half[late], 0.0)


# --- the command --------------------------------------------------------------------------------------------

def test_finetune_planning_defaults_are_the_release_planning_run():
    args = build_parser().parse_args(["finetune-planning", "--base", "b", "--demos", "d", "--rollouts", "r",
                                      "--out", "o"])
    config = train_config_from_args(args)
    assert (config.steps, config.warmup_steps, config.lr_cycle_steps, config.decay) == (18_000, 1_500, 15_000,
                                                                                        "release")
    assert config.value_conditioning == NEXT_STATE
    assert (args.demo_sampling_prob, args.success_sampling_prob, args.world_model_prob) == (0.1, 0.5, 0.5)
    assert args.demos_as_successes is False  # the release: the value sees only real successes
    assert build_parser().parse_args(["finetune-planning", "--base", "b", "--demos", "d", "--rollouts", "r", "--out",
                                      "o", "--demos-as-successes"]).demos_as_successes
    train = build_parser().parse_args(["train", "--data", "d", "--out", "o"])
    assert train.success_sampling_prob is None and train.demo_sampling_prob is None  # `train` unchanged
    assert train.demos_as_successes is False


def test_bad_inputs_end_in_one_line_naming_the_folder_and_the_fix(tmp_path, capsys):
    base = tmp_path / "base"
    base.mkdir()
    (base / "model.safetensors").write_bytes(b"")
    (base / "dataset_statistics.json").write_text("{}")
    demos = tmp_path / "demos"
    write_synthetic_episodes(demos, count=1, steps=5, image_hw=HW)
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "episode_0.hdf5.partial").write_bytes(b"half an episode")
    unscored = tmp_path / "unscored"
    write_synthetic_episodes(unscored, count=2, steps=5, image_hw=HW, attrs=[{"task_description": TASK}] * 2)

    def run(rollouts, base_dir=base) -> str:
        code = main(["finetune-planning", "--base", str(base_dir), "--demos", str(demos), "--rollouts",
                     str(rollouts), "--out", str(tmp_path / "out")])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
        return err

    err = run(interrupted)
    assert f"--rollouts {interrupted}: no finished episodes" in err
    assert f"rollout_recorder recover {interrupted}" in err
    err = run(unscored)
    assert f"--rollouts {unscored}: 2 of 2 episodes have no score" in err and f"rollout_scoring {unscored}" in err
    err = run(tmp_path / "nowhere")
    assert "folder not found" in err
    err = run(unscored, base_dir=tmp_path / "demos")
    assert "--base" in err and "model.safetensors" in err
    assert not (tmp_path / "out").exists()


def _bag_rollout(folder: Path, steps: int) -> Path:
    """A rollout converted from a rosbag2 recording (stage score 50), as `rollout_recorder bag-to-episode` does."""
    pytest.importorskip("rosbags")
    # the recorder package's own synthetic-bag writer (it builds the messages the record node stores)
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "rollout_recorder" / "tests"))
    try:
        from bags_synthetic import record_contract_bag
    finally:
        sys.path.pop(0)
    from aloha_contract import load_contract
    from rollout_recorder.bags import BagEpisodeOptions, bag_to_episodes

    contract = load_contract()
    assert list(contract.cameras) and set(contract.cameras) == set(SPEC.cameras)
    record_contract_bag(folder.parent / "bag", contract, steps, HW, stage_at=2)
    result = bag_to_episodes(folder.parent / "bag", folder, contract,
                             BagEpisodeOptions(task=TASK, reserve_bytes=0, min_steps=5))
    assert len(result.episodes) == 1
    return result.episodes[0].path


def test_bag_converted_rollouts_are_read_with_their_score(tmp_path):
    demos = write_synthetic_episodes(tmp_path / "demos" / "fold_shirt", count=1, steps=12, image_hw=HW)
    bagged = _bag_rollout(tmp_path / "from_bag" / "episodes", steps=12)
    files = check_rollout_folders([bagged.parent])
    assert files == [bagged]
    ds = planning_dataset(demos, files)
    (episode,) = ds.rollouts
    assert (episode.score, episode.is_success, episode.task) == (0.5, False, TASK)
    assert episode.values[-1] == pytest.approx(0.0)  # R = 50 / 100, rescaled to [-1, 1]
    item = ds[next(i for i in range(100) if not ds.plan(i)[0].is_demo)]
    assert item["images"].shape == (len(SPEC.cameras), 3, *SPEC.image_hw)


def test_finetune_planning_end_to_end_on_recorded_episodes_and_resume(tmp_path, capsys):
    demos = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(demos, count=2, steps=12, image_hw=HW, compress=True)
    base = tmp_path / "base"
    tiny = ["--batch-size", "2", "--threads", "1", "--no-progress", "--save-every-s", "0"]
    assert main(["train", "--data", str(demos), "--network", "tiny", "--steps", "2", "--warmup-steps", "1",
                 "--out", str(base), *tiny]) == 0

    live = tmp_path / "rollouts"
    for score, u in ((0, 0.2), (100, 0.7)):
        stream_rollout(live, score, u, steps=12)
    left = EpisodeWriter(live, {cam: HW for cam in SPEC.cameras}, max_steps=4, reserve_bytes=0)
    left.append(np.zeros(14), np.zeros(14), {})
    left.close_partial()  # a recording cut short: never read
    written = write_rollouts(tmp_path / "written", [50], steps=12)[0]  # written whole (write_act_episode)
    capsys.readouterr()

    unnamed = tmp_path / "unnamed"  # scored, but no task_description: its folder name would stand in
    write_synthetic_episodes(unnamed, count=1, steps=12, image_hw=HW, attrs=[{"stage_score": 50.0}])
    assert main(["finetune-planning", "--base", str(base), "--demos", str(demos), "--rollouts", str(unnamed),
                 "--out", str(tmp_path / "never"), *tiny]) == 2
    err = capsys.readouterr().err
    assert f"task text(s) unknown to --base {base}: 'unnamed'" in err and "--task TEXT" in err
    assert err.count("\n") == 1

    out = tmp_path / "planning"
    command = ["finetune-planning", "--base", str(base), "--demos", str(demos), "--rollouts", str(live),
               "--rollouts", str(written.parent), "--out", str(out), "--steps", "2", "--warmup-steps", "1",
               "--lr-cycle-steps", "2", *tiny]
    assert main(command) == 0
    printed = capsys.readouterr().out
    assert "rollouts: 3 episodes" in printed and "demo sampling p=0.10" in printed
    assert "success 1/3; rollouts drawn success/failure 0.50/0.50" in printed

    config = json.loads((out / "config.json").read_text())
    training = config["training"]
    assert training["value_conditioning"] == NEXT_STATE and training["job"] == "finetune-planning"
    assert training["init_checkpoint"] == str(base)
    mix = training["mix"]
    assert (mix["demo_sampling_prob"], mix["success_sampling_prob"], mix["world_model_prob"]) == (0.1, 0.5, 0.5)
    assert (mix["rollouts_success"], mix["rollouts_failure"]) == (1, 2)
    np.testing.assert_allclose(mix["objective_fractions"], [0.1, 0.45, 0.45])
    state = json.loads((out / "trainer_state.json").read_text())
    assert state["step"] == 2 and state["train_config"]["lr_cycle_steps"] == 2

    from cosmos_policy.checkpoint import load_checkpoint

    loaded = load_checkpoint(out, require_statistics=True)
    assert loaded.model.value_conditioning == NEXT_STATE
    assert json.loads((out / "dataset_statistics.json").read_text()) == \
        json.loads((base / "dataset_statistics.json").read_text())  # the base's normalisation, kept
    assert set(loaded.text_cache.texts) >= {TASK}
    before, after = load_file(str(base / "model.safetensors")), load_file(str(out / "model.safetensors"))
    assert before.keys() == after.keys()
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("dit."))  # it trained

    assert main(command) == 2  # an existing checkpoint is never replaced silently
    assert "--resume" in capsys.readouterr().err
    resumed = [*command[:command.index("--steps") + 1], "3", *command[command.index("--steps") + 2:], "--resume"]
    assert main(resumed) == 0
    assert json.loads((out / "trainer_state.json").read_text())["step"] == 3
    assert "trained steps 2..3" in capsys.readouterr().out
