"""The full 2B policy on CUDA in bf16 (random weights): runs, seeded, batched. Needs a GPU (-m gpu)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cosmos_policy.latency import random_policy, synthetic_observation


@pytest.mark.gpu
def test_2b_policy_acts_in_bf16_on_cuda():
    assert torch.cuda.is_available(), "needs a CUDA GPU: run `pytest -m gpu` on a GPU machine"
    policy = random_policy("2b", "aloha", "cuda", torch.bfloat16)
    obs = synthetic_observation(policy)
    a = policy.act(obs, num_steps=5, seed=0)
    b = policy.act(obs, num_steps=5, seed=0)
    assert a.actions.shape == (50, 14) and np.isfinite(a.actions).all()
    assert np.array_equal(a.actions, b.actions) and 0.0 <= a.value <= 1.0
    candidates = policy.act(obs, num_steps=1, seed=1, num_candidates=8)
    assert candidates.actions.shape == (8, 50, 14) and candidates.values.shape == (8,)
    planned = policy.plan(obs, num_candidates=8, world_model_samples=3, value_samples=5, seed=0)
    assert planned.actions.shape == (50, 14)
    assert torch.cuda.max_memory_allocated() < 40 * 2**30
