"""scripts/train_default_checkpoint.sh's recipe table: which `cosmos-policy train` calls each RECIPE makes,
that a second run continues where the first stopped instead of training again, and that the export refuses a
run that has not reached its last step. `cosmos-policy` is replaced by a shell function that records its
arguments and writes the step it was asked to reach, as the real trainer's trainer_state.json would hold."""

from __future__ import annotations

import json
import os
import shlex
import subprocess

import pytest
from ros_harness import ROOT

SCRIPT = ROOT / "scripts" / "train_default_checkpoint.sh"

# writes trainer_state.json (the step reached) and the four exported files into --out; logs one line per call
STAND_IN = r"""
cosmos-policy() {
    echo "$*" >> "$CALLS"
    local out= steps= prev=
    for arg in "$@"; do
        case $prev in --out) out=$arg ;; --steps) steps=$arg ;; esac
        prev=$arg
    done
    mkdir -p "$out"
    echo "{\"step\": $steps}" > "$out/trainer_state.json"
    touch "$out"/{model.safetensors,config.json,dataset_statistics.json,text_embeddings.safetensors}
}
export -f cosmos-policy
"""


def run_script(tmp_path, recipe: str | None, stages: str) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    calls = tmp_path / "calls.txt"
    calls.unlink(missing_ok=True)
    env = {**os.environ, "STAGES": stages, "CALLS": str(calls),
           "RUN_FIRST": str(tmp_path / "first"), "RUN_WHOLE": str(tmp_path / "whole"), "OUT": str(tmp_path / "out")}
    env.pop("RECIPE", None)
    if recipe is not None:
        env["RECIPE"] = recipe
    done = subprocess.run(["bash", "-c", STAND_IN + f"exec {shlex.quote(str(SCRIPT))}"], env=env,
                          capture_output=True, text=True, timeout=120)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return done, [line.split() for line in lines]


def option(call: list[str], name: str) -> str:
    return call[call.index(name) + 1]


def cycles(calls: list[list[str]]) -> list[tuple[int, int]]:
    return [(int(option(c, "--steps")), int(option(c, "--lr-cycle-steps"))) for c in calls]


SHIPPED = ([(1500, 1500), (3000, 6000), (6000, 6000), (9000, 12000), (12000, 12000)],
           [(12000, 12000), (18000, 18000)], "8", True)


@pytest.mark.parametrize("recipe, first, whole, batch, compiled", [
    (None, *SHIPPED),  # no RECIPE: the shipped checkpoint's, the 90-minute batch-8 recipe
    ("fast_b8", *SHIPPED),
    ("full", [(1500, 1500), (3000, 6000), (6000, 6000), (9000, 12000), (12000, 12000)],
     [(12000, 12000), (18000, 18000), (24000, 24000)], "16", False),
    ("fast", [(1500, 1500), (5000, 5000)], [(8000, 8000), (11000, 11000)], "16", True),
])
def test_recipe_trains_its_cycles_then_continues_instead_of_repeating(tmp_path, recipe, first, whole, batch, compiled):
    done, calls = run_script(tmp_path, recipe, "train_first train_whole export")
    assert done.returncode == 0, done.stdout + done.stderr
    first_calls = [c for c in calls if option(c, "--out") == str(tmp_path / "first")]
    whole_calls = [c for c in calls if option(c, "--out") == str(tmp_path / "whole")]
    assert len(first_calls) + len(whole_calls) == len(calls)
    assert cycles(first_calls) == first and cycles(whole_calls) == whole
    for call in calls:
        assert call[0] == "train" and option(call, "--batch-size") == batch
        assert ("--compile" in call) == compiled
        if compiled:
            assert option(call, "--precision") == "bf16"
    # each cycle after the first of a run continues it; the whole-episode stage starts from the first stage
    assert ["--resume" in c for c in first_calls] == [False] + [True] * (len(first) - 1)
    assert ["--resume" in c for c in whole_calls] == [False] + [True] * (len(whole) - 1)
    assert all(option(c, "--init-checkpoint") == str(tmp_path / "first") for c in whole_calls)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "config.json", "dataset_statistics.json", "model.safetensors", "text_embeddings.safetensors"]

    again, calls = run_script(tmp_path, recipe, "train_first train_whole export")
    assert again.returncode == 0, again.stdout + again.stderr
    assert calls == []  # every cycle reached: nothing trains twice


def test_a_stopped_run_continues_from_its_cycle_and_is_not_exported_early(tmp_path):
    (tmp_path / "whole").mkdir()
    (tmp_path / "whole" / "trainer_state.json").write_text(json.dumps({"step": 13000}))
    done, calls = run_script(tmp_path, "fast_b8", "export")
    assert done.returncode == 1 and calls == []
    assert "is at step 13000 of 18000; run the train stages first" in done.stderr
    assert not (tmp_path / "out").exists()

    done, calls = run_script(tmp_path, "fast_b8", "train_whole")
    assert done.returncode == 0, done.stdout + done.stderr
    assert cycles(calls) == [(18000, 18000)] and "--resume" in calls[0]


def test_unknown_recipe_exits_2_naming_the_choices(tmp_path):
    done, calls = run_script(tmp_path, "fastest", "train_first")
    assert done.returncode == 2 and calls == []
    assert "RECIPE=fastest: unknown; use fast_b8 (the default), full" in done.stderr
