"""The release's LIBERO evaluation protocol as plain data, and the reset-request naming of a trial.

Protocol (Cosmos Policy's LIBERO evaluation, docs/libero.md): the 4 suites x 10 tasks; per task N trials
(default 50) from the suite's init states 0..N-1; each trial resets the scene, steps 10 no-op commands so that
objects settle, then runs the policy for at most the suite's step budget (longest training demonstration plus
margin), ending early on success; frames flipped upright and JPEG-compressed (quality 95); chunks of 16 executed
open loop; 5 action / 1 future-state / 1 value denoising steps; the whole evaluation repeated with sampling seeds
195, 196 and 197 and the success rates averaged. Plain Python, no ROS, no LIBERO: the evaluator, the sim node and
the tests share it.
"""

from __future__ import annotations

from dataclasses import dataclass

SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
# Step budget per suite after the settle steps (the release's: its longest training demo + margin).
MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400,
             "robocasa": 500}  # robocasa: a placeholder budget, not the release's (unverified)
TASKS_PER_SUITE = 10
TRIALS_PER_TASK = 50
SEEDS = (195, 196, 197)
SETTLE_STEPS = 10
CHUNK_EXECUTE_STEPS = 16
DENOISING_STEPS = {"action": 5, "future_state": 1, "value": 1}
JPEG_QUALITY = 95
IMAGE_HW = (256, 256)
# RoboCasa (UNTESTED here: not installable): the release evaluates its 24 atomic kitchen tasks, 50 trials each,
# chunks of 32 with 16 executed. Its scenes are sampled from a seed (the trial's init index), not init-state files.
ROBOCASA_TASKS = (
    "PnPCounterToCab", "PnPCabToCounter", "PnPCounterToSink", "PnPSinkToCounter", "PnPCounterToMicrowave",
    "PnPMicrowaveToCounter", "PnPCounterToStove", "PnPStoveToCounter", "OpenSingleDoor", "CloseSingleDoor",
    "OpenDoubleDoor", "CloseDoubleDoor", "OpenDrawer", "CloseDrawer", "TurnOnSinkFaucet", "TurnOffSinkFaucet",
    "TurnSinkSpout", "TurnOnStove", "TurnOffStove", "CoffeeSetupMug", "CoffeeServeMug", "CoffeePressButton",
    "TurnOnMicrowave", "TurnOffMicrowave")
TASK_COUNT = {"robocasa": len(ROBOCASA_TASKS)}  # every LIBERO suite of the release has 10 tasks
# The paper's success rates (%), to compare with on a GPU with the released checkpoint.
PAPER_SUCCESS = {"libero_spatial": 98.1, "libero_object": 100.0, "libero_goal": 98.2, "libero_10": 97.6}
PAPER_AVERAGE = 98.5


class TrialSpecError(ValueError):
    """A reset request naming no valid suite/task/init state."""


@dataclass(frozen=True)
class Trial:
    """One evaluation episode: which scene, which init state, which sampling seed."""

    suite: str
    task_id: int
    init_index: int
    seed: int

    @property
    def reset_task(self) -> str:
        """The ResetEpisode ``task`` field naming this trial's scene."""
        return format_reset_task(self.suite, self.task_id)


def format_reset_task(suite: str, task_id: int) -> str:
    return f"{suite}/{int(task_id)}"


def parse_reset_task(text: str, init_index: int) -> tuple[str, int, int]:
    """ResetEpisode (task "<suite>/<task id>", seed = init-state index) -> (suite, task id, init index).

    ``"<suite>/<task id>/<init index>"`` is accepted too (the seed is then ignored)."""
    parts = text.strip().split("/")
    if len(parts) not in (2, 3) or not parts[0]:
        raise TrialSpecError(f"reset task '{text}': expected '<suite>/<task id>' (e.g. libero_spatial/0) with the "
                             f"init-state index in the seed field, or '<suite>/<task id>/<init index>'")
    try:
        task_id = int(parts[1])
        index = int(parts[2]) if len(parts) == 3 else int(init_index)
    except ValueError:
        raise TrialSpecError(f"reset task '{text}': task id and init index must be integers") from None
    if task_id < 0 or index < 0:
        raise TrialSpecError(f"reset task '{text}' (init index {index}): task id and init index must be >= 0")
    return parts[0], task_id, index


def max_steps(suite: str) -> int:
    """The suite's step budget; unknown suites (other LIBERO sets) get the longest, libero_10's."""
    return MAX_STEPS.get(suite, MAX_STEPS["libero_10"])


def plan_trials(suites: list[str], task_ids: list[int] | None, trials_per_task: int, seeds: list[int],
                init_states: dict[tuple[str, int], int] | None = None) -> list[Trial]:
    """Every trial of the protocol, seed-major (one full pass per seed, as the release's three runs).

    `init_states` (suite, task) -> number available: a task with fewer than `trials_per_task` refuses."""
    if trials_per_task < 1:
        raise TrialSpecError(f"trials per task {trials_per_task}: expected >= 1")
    trials = []
    for seed in seeds:
        for suite in suites:
            tasks = list(range(TASK_COUNT.get(suite, TASKS_PER_SUITE))) if task_ids is None else list(task_ids)
            for task_id in tasks:
                available = (init_states or {}).get((suite, task_id))
                if available is not None and trials_per_task > available:
                    raise TrialSpecError(f"{suite}/{task_id}: {trials_per_task} trials asked, the suite has "
                                         f"{available} init states")
                trials.extend(Trial(suite, task_id, k, seed) for k in range(trials_per_task))
    return trials
