"""The latency helpers build a random-weight policy and time its calls (figures are printed, never asserted)."""

from __future__ import annotations

import torch

from cosmos_policy.latency import benchmark_policy, format_table, random_policy, synthetic_observation


def test_random_policy_is_timed_call_by_call():
    policy = random_policy("tiny", "libero", "cpu")
    assert not any(p.is_meta for p in policy.model.parameters())
    norms = {b.attn1.norm_q.weight.unique().item() for b in policy.model.dit.transformer_blocks}
    assert norms == {1.0}
    rows = benchmark_policy(policy, synthetic_observation(policy), runs=1, action_steps=(1,), candidates=2,
                            world_model_samples=1, value_samples=1, future_images=False)
    assert [r.what for r in rows] == ["VAE encode, prefix only (B=1)", "chunk, 1 action steps",
                                      "2 candidates, 5 steps, one batch", "best-of-2 + 1x1 world model x value"]
    assert all(r.median_s > 0 and r.min_s <= r.median_s for r in rows)
    assert format_table(rows).count("\n") == len(rows)
    assert torch.isfinite(policy.model.dit.proj_out.weight).all()
