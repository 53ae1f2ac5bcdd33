"""The safety gate the sim node applies to every command lets the scripted demos through (normal tracking lag
and seams never trip it) and still succeeds; a single-step jump is refused."""

from __future__ import annotations

import numpy as np
import pytest

from aloha_contract.safety import SafetyGate
from aloha_sim.env import AlohaSimEnv
from aloha_sim.scripted import plan_episode


@pytest.mark.parametrize("task,seeds", [("transfer_cube", (0, 7)), ("insertion", (0, 7))])
def test_scripted_demos_pass_the_gate_and_succeed(task, seeds):
    env = AlohaSimEnv(task, render=False)
    gate = SafetyGate(env.contract)
    for seed in seeds:
        env.reset(seed)
        gate.reset(env.qpos())  # as the node does on reset
        for step, command in enumerate(plan_episode(env.task, env.object_poses(), env.contract)):
            violation = gate.check(command, env.qpos())
            assert violation is None, (task, seed, step, violation)
            env.step(command, render=False)
        assert env.stage_score().success, (task, seed, env.stage_score())
    env.close()


def test_single_step_waist_jump_is_refused():
    env = AlohaSimEnv("transfer_cube", render=False)
    env.reset(0)
    gate = SafetyGate(env.contract)
    gate.reset(env.qpos())
    jump = env.start_command()
    jump[0] += 3.0
    violation = gate.check(jump, env.qpos())
    assert violation is not None and violation.reason == "step" and "left_waist" in violation.detail
    np.testing.assert_allclose(gate.last_safe_target, env.qpos())
    env.close()
