"""Monte Carlo value targets from an episode's terminal score.

With a sparse terminal reward R (the episode's score fraction in [0, 1]) the return of step t is
gamma^(T-1-t) * R; the model sees it rescaled to [-1, 1] as 2 * v - 1. Unlike the release, which
divides by the terminal reward so every non-zero score gives the same curve, partial scores shape
the value here: a 50-score episode ends at 0.5 (0.0 after rescaling), a 0-score one is -1 throughout.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

GAMMA_ALOHA = 0.998
GAMMA_LIBERO = 0.99
GAMMA_ROBOCASA = 0.99


def score_fraction_from_staged(score_0_100: float) -> float:
    """Staged operator score 0-100 -> terminal reward in [0, 1]."""
    if not 0.0 <= float(score_0_100) <= 100.0:
        raise ValueError(f"staged score {score_0_100}: expected a value in 0..100")
    return float(score_0_100) / 100.0


SCORE_ATTRS = ("success_score", "stage_score", "success")  # the rollout attributes a score is read from


def has_score(attrs: Mapping[str, Any]) -> bool:
    """True when a rollout's attributes carry a score (what the recorder or the scoring page writes)."""
    return any(name in attrs for name in SCORE_ATTRS)


def episode_score_fraction(attrs: Mapping[str, Any], is_demo: bool, source: str = "episode") -> float:
    """Terminal reward R in [0, 1] of an episode: demos count as full success; rollouts use their score.

    In order: `success_score` (the fraction, staged score / 100, as the recorder and the scoring page
    write it), else `stage_score` / 100 (a staged 0-100 score alone), else the boolean `success` (1 or 0:
    the release's rollouts carry only that). A staged score is never binarised here.
    """
    if is_demo:
        return 1.0
    if "success_score" in attrs:
        score = float(attrs["success_score"])
        if not 0.0 <= score <= 1.0:
            raise ValueError(
                f"{source}: success_score={score}, expected a fraction in [0, 1] "
                f"(divide staged 0-100 scores by 100 when recording)"
            )
        return score
    if "stage_score" in attrs:
        try:
            return score_fraction_from_staged(float(attrs["stage_score"]))
        except ValueError as exc:
            raise ValueError(f"{source}: {exc} (rescore it on the scoring page)") from None
    if "success" in attrs:
        return 1.0 if bool(attrs["success"]) else 0.0
    raise ValueError(
        f"{source}: rollout has no score (neither success_score, stage_score nor success); score it on the scoring page "
        f"(docs/scoring.md) or record it with the simulator's stage scores, or pass it as a demo folder"
    )


def episode_success(attrs: Mapping[str, Any], is_demo: bool, score: float) -> bool:
    """Whether an episode counts as a success (the planning fine-tune draws successes and failures 50/50).

    The recorder's `success` attribute decides when present (the simulator / operator said so); without
    it the score does: success means the full score (R = 1, staged score 100). Demos are successes.
    """
    if is_demo:
        return True
    if "success" in attrs:
        return bool(attrs["success"])
    return score >= 1.0


def monte_carlo_returns(num_steps: int, terminal_reward: float, gamma: float) -> np.ndarray:
    """gamma^(T-1-t) * R for t = 0..T-1, float64 (T,), in [0, R]."""
    if num_steps <= 0:
        raise ValueError(f"num_steps={num_steps}: an episode needs at least one step")
    if not 0.0 < gamma <= 1.0:
        raise ValueError(f"gamma={gamma}: expected 0 < gamma <= 1 (0.998 ALOHA, 0.99 LIBERO/RoboCasa)")
    if not 0.0 <= terminal_reward <= 1.0:
        raise ValueError(f"terminal_reward={terminal_reward}: expected a score fraction in [0, 1]")
    steps_to_go = np.arange(num_steps - 1, -1, -1, dtype=np.float64)
    return terminal_reward * np.power(gamma, steps_to_go)


def value_targets(num_steps: int, terminal_reward: float, gamma: float) -> np.ndarray:
    """Monte Carlo returns rescaled to [-1, 1] (2 * v - 1), float32 (T,)."""
    return (2.0 * monte_carlo_returns(num_steps, terminal_reward, gamma) - 1.0).astype(np.float32)
