"""Planning as the release deploys it: V(s') masking (training and inference), the release's majority mean,
5 world-model / value steps, per-member seeds, base policy proposes / planning model scores, chunked
batches, depth search. Tiny network on the CPU."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from tiny_model import TASK, observation, random_batch, random_latents, statistics, text_cache, tiny_model

from cosmos_policy.config import SamplerConfig
from cosmos_policy.deploy import default_deploy
from cosmos_policy.injection import extract
from cosmos_policy.objectives import NEXT_STATE, POLICY, STATE_ACTION_NEXT_STATE, VALUE, WORLD_MODEL, clean_mask_for
from cosmos_policy.policy import CosmosPolicy, PlanningOptions, aggregate_values, release_majority_mean
from cosmos_policy.sampler import generate

FAST = dict(action_steps=1, world_model_steps=1, value_steps=1)


def make_policy(seed: int, memo_encode: bool = False) -> CosmosPolicy:
    model = tiny_model(seed=seed)
    deploy = dataclasses.replace(default_deploy(model.layout), action_steps=1)
    policy = CosmosPolicy(model, SamplerConfig(), statistics(model.layout), text_cache(model), deploy=deploy)
    if memo_encode:
        # The VAE is frozen: encode each observation once per module (the tiny VAE is the slow part on 2 cores).
        memo: dict[bytes, torch.Tensor] = {}
        original = policy.encode_observation

        def encode(images, proprio):
            key = images.numpy().tobytes() + proprio.numpy().tobytes()
            if key not in memo:
                memo[key] = original(images, proprio)
            return memo[key]

        policy.encode_observation = encode
    return policy


@pytest.fixture(scope="module")
def policy():
    return make_policy(5, memo_encode=True)


@pytest.fixture(scope="module")
def obs(policy):
    return observation(policy.layout)


class DenoiseSpy:
    """Records (rows, stage, clean mask, x_clean, output) of every denoiser call of a model."""

    def __init__(self, policy: CosmosPolicy):
        self.policy, self.calls = policy, []
        layout = policy.layout
        self.masks = {name: clean_mask_for(layout, obj, cond) for name, obj, cond in (
            ("policy", POLICY, STATE_ACTION_NEXT_STATE), ("world_model", WORLD_MODEL, STATE_ACTION_NEXT_STATE),
            ("value_s_a_s'", VALUE, STATE_ACTION_NEXT_STATE), ("value_s'", VALUE, NEXT_STATE))}

    def stage(self, clean_row: torch.Tensor) -> str:
        for name, mask in self.masks.items():
            if torch.equal(clean_row.cpu(), mask):
                return name
        return "other"

    def __enter__(self):
        original = self.policy.model.denoise

        def spy(xt, sigma, x_clean, clean_mask, text):
            out = original(xt, sigma, x_clean, clean_mask, text)
            self.calls.append((xt.shape[0], self.stage(clean_mask[0]), clean_mask.clone(), x_clean.clone(), out))
            return out

        self.policy.model.denoise = spy
        return self

    def __exit__(self, *exc):
        del self.policy.model.denoise

    def count(self, stage: str) -> int:
        return sum(1 for c in self.calls if c[1] == stage)

    def rows(self, stage: str) -> int:
        return sum(c[0] for c in self.calls if c[1] == stage)


# ---- 1. V(s'): masking of the current state and the action --------------------------------------------


def test_value_of_next_state_ignores_current_state_and_action(policy):
    layout = policy.layout
    latents = random_latents(policy.model, 2, seed=3)

    def values(x, conditioning=NEXT_STATE):
        return policy.predict_values(x, TASK, samples=2, num_steps=2, seed=0, value_conditioning=conditioning)

    base = values(latents)
    assert base.shape == (2, 2) and bool(((base >= 0) & (base <= 1)).all())
    masked = [layout.index("proprio"), layout.index("action")] + [layout.index("image", c) for c in layout.cameras]
    changed = latents.clone()
    changed[:, :, masked] = torch.randn_like(changed[:, :, masked]) * 3.0
    assert torch.equal(values(changed), base)
    # s' conditions the value: another predicted future image or future proprio changes it.
    for frame in (layout.index("future_image", layout.cameras[0]), layout.index("future_proprio")):
        other = latents.clone()
        other[:, :, frame] = torch.randn_like(other[:, :, frame]) * 3.0
        assert not torch.allclose(values(other), base)
    # V(s, a, s') (the earlier behaviour) does see the action frame.
    only_action = latents.clone()
    only_action[:, :, layout.index("action")] *= -1.0
    assert not torch.allclose(values(only_action, STATE_ACTION_NEXT_STATE), values(latents, STATE_ACTION_NEXT_STATE))


def _dit_inputs(model, batch, x0, conditioning):
    seen = {}

    def hook(module, args, kwargs):
        seen["condition"] = kwargs["condition_mask"][:, 0, :, 0, 0].clone()
        seen["timestep"] = kwargs["timestep"][:, 0, :, 0, 0].clone()

    handle = model.dit.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        loss, metrics = model.training_loss(batch, torch.Generator().manual_seed(4), latents=x0,
                                            value_conditioning=conditioning)
    finally:
        handle.remove()
    return loss, metrics, seen


def test_training_next_state_value_masks_inputs_not_loss():
    model = tiny_model()
    layout = model.layout
    batch = random_batch(model, [VALUE, VALUE, POLICY])
    x0 = random_latents(model, 3)
    masked = [layout.index("proprio"), layout.index("action")] + [layout.index("image", c) for c in layout.cameras]
    future = [layout.index("future_proprio")] + [layout.index("future_image", c) for c in layout.cameras]
    _, _, full = _dit_inputs(model, batch, x0, STATE_ACTION_NEXT_STATE)
    _, _, vs = _dit_inputs(model, batch, x0, NEXT_STATE)
    # V(s, a, s'): the value samples see s and a as clean condition frames (timestep 0).
    assert bool((full["condition"][:2, masked] == 1).all()) and bool((full["timestep"][:2, masked] == 0).all())
    # V(s'): s and a enter as noise (condition 0, the sample's noise level); s' stays the clean condition.
    assert bool((vs["condition"][:2, masked] == 0).all()) and bool((vs["timestep"][:2, masked] > 0).all())
    assert bool((vs["condition"][:2, future] == 1).all()) and bool((vs["timestep"][:2, future] == 0).all())
    # the policy sample is unchanged by the value conditioning
    assert torch.equal(vs["condition"][2], full["condition"][2])
    # the loss of a value sample still covers the value frame only: perturbing the network's output on the
    # masked frames leaves it unchanged, on the value frame it does not.
    value_batch = random_batch(model, [VALUE, VALUE])

    def loss_with(frame=None):
        handle = None
        if frame is not None:
            def hook(module, args, kwargs, output):
                out = output[0].clone()
                out[:, :, frame] += 5.0
                return (out,)
            handle = model.dit.register_forward_hook(hook, with_kwargs=True)
        try:
            return model.training_loss(value_batch, torch.Generator().manual_seed(7), latents=x0[:2],
                                       value_conditioning=NEXT_STATE)[0]
        finally:
            if handle is not None:
                handle.remove()

    base = loss_with()
    for frame in masked:
        assert torch.equal(loss_with(frame), base)
    assert not torch.allclose(loss_with(layout.index("value")), base)
    # metrics: the masked action frame of a value sample is not reported as an action prediction
    only_values, metrics = model.training_loss(value_batch, torch.Generator().manual_seed(7), latents=x0[:2],
                                               value_conditioning=NEXT_STATE)
    assert "l1/value" in metrics and "l1/action" not in metrics
    # the model attribute selects the same objective (what a planning fine-tune sets once)
    model.value_conditioning = NEXT_STATE
    try:
        assert torch.equal(model.training_loss(value_batch, torch.Generator().manual_seed(7), latents=x0[:2])[0],
                           only_values)
    finally:
        model.value_conditioning = STATE_ACTION_NEXT_STATE
    with pytest.raises(ValueError, match="value_conditioning"):
        model.training_loss(value_batch, latents=x0[:2], value_conditioning="q_value")


def test_plan_masks_state_and_action_in_the_value_pass_and_uses_five_steps(policy, obs):
    with DenoiseSpy(policy) as spy:
        out = policy.plan(obs, num_candidates=1, world_model_samples=1, value_samples=1, seed=0, action_steps=1)
    assert out.actions.shape == (policy.layout.action_chunk, policy.layout.action_dim)
    # 3. the release deploys 5 world-model and 5 value denoising steps; 1. the value pass is V(s')
    assert spy.count("policy") == 1
    assert spy.count("world_model") == 5
    assert spy.count("value_s'") == 5 and spy.count("value_s_a_s'") == 0
    assert {c[1] for c in spy.calls} == {"policy", "world_model", "value_s'"}


# ---- 2. majority mean ------------------------------------------------------------------------------------


def test_release_majority_mean_on_hand_made_samples():
    values = torch.tensor([
        [0.90, 0.80, 0.01, 0.02],  # half exceed 0.05: the mean of those
        [0.01, 0.02, 0.03, 0.90],  # most predict failure: 0, although one sample is confident
        [0.06, 0.04, 0.50, 0.70],  # 3 of 4 exceed: their mean
        [0.05, 0.05, 0.05, 0.05],  # 0.05 does not exceed the threshold
        [1.00, 1.00, 1.00, 1.00],
    ])
    got = release_majority_mean(values)
    want = torch.tensor([0.85, 0.0, (0.06 + 0.5 + 0.7) / 3, 0.0, 1.0])
    assert torch.allclose(got, want)
    assert torch.equal(aggregate_values(values), got)
    assert torch.allclose(aggregate_values(torch.tensor([[1.3, 1.1]])), torch.tensor([1.0]))  # clipped
    # the plain mean (ablation) does not give 0 for row 1
    assert aggregate_values(values, "mean")[1] > 0.2
    with pytest.raises(ValueError, match="aggregation"):
        aggregate_values(values, "median")


def test_majority_mean_changes_which_candidate_wins(policy, obs):
    # candidate 0: one confident success among failures; candidate 1: consistently modest
    samples = torch.tensor([[1.0, 0.01, 0.01, 0.01, 0.01], [0.15] * 5])
    original = policy._values

    def fixed(latents, text, steps, generators, conditioning, max_batch, interrupt=None):
        return samples.reshape(-1)[: latents.shape[0]].clone()

    policy._values = fixed
    try:
        release = policy.plan(obs, num_candidates=2, world_model_samples=1, value_samples=5, seed=1, **FAST)
        ablation = policy.plan(obs, num_candidates=2, world_model_samples=1, value_samples=5, seed=1,
                               aggregation="mean", **FAST)
    finally:
        policy._values = original
    assert np.allclose(release.candidate_values, [0.0, 0.15])
    assert np.allclose(ablation.candidate_values, [1.04 / 5, 0.15])
    assert release.value == pytest.approx(0.15) and ablation.value == pytest.approx(1.04 / 5)
    assert not np.array_equal(release.actions, ablation.actions)


# ---- 4. seed switching, 5. chunking --------------------------------------------------------------------


def test_world_model_members_have_their_own_seeds(policy, obs):
    with DenoiseSpy(policy) as spy:
        a = policy.plan(obs, num_candidates=2, world_model_samples=3, value_samples=1, seed=7, **FAST)
    (wm,) = [c for c in spy.calls if c[1] == "world_model"]
    future = [policy.layout.index("future_proprio")] + [policy.layout.index("future_image", c)
                                                        for c in policy.layout.cameras]
    predicted = wm[4][:3, :, future]  # candidate 0's three world-model samples
    assert not torch.allclose(predicted[0], predicted[1]) and not torch.allclose(predicted[1], predicted[2])
    # a member's draw depends on its own seed only: the first two candidates do not change when a third is
    # planned alongside, and the same seed repeats the plan
    b = policy.plan(obs, num_candidates=3, world_model_samples=3, value_samples=1, seed=7, **FAST)
    assert np.allclose(a.candidate_values, b.candidate_values[:2], atol=1e-6)
    c = policy.plan(obs, num_candidates=2, world_model_samples=3, value_samples=1, seed=7, **FAST)
    assert np.array_equal(a.candidate_values, c.candidate_values) and np.array_equal(a.actions, c.actions)


def test_value_samples_have_their_own_seeds(policy, obs):
    """The V(s') ensemble: one state, three value samples, three different noise draws (and so outputs)."""
    with DenoiseSpy(policy) as spy:
        policy.plan(obs, num_candidates=1, world_model_samples=1, value_samples=3, seed=7, **FAST)
    first_value_call = next(c for c in spy.calls if c[1] == "value_s'")
    assert first_value_call[0] == 3
    value = first_value_call[4][:, :, policy.layout.index("value")]
    assert not torch.allclose(value[0], value[1]) and not torch.allclose(value[1], value[2])


def test_chunked_batches_give_the_same_plan(policy, obs):
    kwargs = dict(num_candidates=3, world_model_samples=2, value_samples=2, seed=3, **FAST)
    with DenoiseSpy(policy) as spy:
        chunked = policy.plan(obs, max_batch=2, **kwargs)
    assert max(c[0] for c in spy.calls) == 2
    whole = policy.plan(obs, max_batch=None, **kwargs)
    assert np.allclose(chunked.candidate_values, whole.candidate_values, atol=1e-5)
    assert np.allclose(chunked.actions, whole.actions, atol=1e-5)


def test_generate_with_per_sample_generators_is_chunk_invariant():
    class Toy:
        def denoise(self, xt, sigma, x_clean, clean_mask, text):
            return torch.tanh(xt * 0.01 + text.mean(dim=(1, 2))[:, None, None, None, None])

    x = torch.randn(5, 2, 3, 2, 2)
    mask = torch.tensor([True, False, False]).expand(5, -1)
    text = torch.randn(5, 4, 3)
    config = SamplerConfig(variance_scale=True)

    def gens(seed):
        return [torch.Generator().manual_seed(seed + i) for i in range(5)]

    whole = generate(Toy(), x, mask, text, 3, config, gens(0))
    assert torch.equal(generate(Toy(), x, mask, text, 3, config, gens(0), max_batch=2), whole)
    assert torch.equal(generate(Toy(), x[2:], mask[2:], text[2:], 3, config, gens(0)[2:]), whole[2:])
    assert not torch.equal(generate(Toy(), x, mask, text, 3, config, gens(1)), whole)


# ---- 5. the base policy proposes, the planning model scores ---------------------------------------------


def test_base_policy_proposes_and_planning_model_scores(obs):
    base, planner = make_policy(6), make_policy(5)
    encodes = {"base": 0, "planner": 0}
    for name, pol in (("base", base), ("planner", planner)):
        original = pol.model.vae.encode

        def spy(x, *args, _name=name, _original=original, **kwargs):
            encodes[_name] += 1
            return _original(x, *args, **kwargs)

        pol.model.vae.encode = spy
    proposals = []
    original_propose = base._propose

    def propose(*args, **kwargs):
        out = original_propose(*args, **kwargs)
        proposals.append(out)
        return out

    base._propose = propose
    with DenoiseSpy(base) as base_spy, DenoiseSpy(planner) as planner_spy:
        out = planner.plan(obs, proposer=base, num_candidates=3, world_model_samples=2, value_samples=2, seed=0,
                           **FAST)
    # one prefix encode per checkpoint, shared by every candidate and ensemble member
    assert encodes == {"base": 1, "planner": 1}
    assert {c[1] for c in base_spy.calls} == {"policy"} and base_spy.rows("policy") == 3
    assert {c[1] for c in planner_spy.calls} == {"world_model", "value_s'"}
    assert planner_spy.rows("world_model") == 3 * 2 and planner_spy.rows("value_s'") == 3 * 2 * 2
    # the winner is one of the base policy's proposals, in robot units
    (chunks,) = proposals
    robot = base._normalizer("actions").unnormalize(chunks).numpy()
    assert any(np.allclose(out.actions, r, atol=1e-6) for r in robot)
    assert out.candidate_values.shape == (3,)
    # one model alone both proposes and scores (back-compatible), encoding once
    encodes.update(base=0, planner=0)
    with DenoiseSpy(planner) as alone:
        planner.plan(obs, num_candidates=2, world_model_samples=1, value_samples=1, seed=0, **FAST)
    assert encodes["planner"] == 1 and {c[1] for c in alone.calls} == {"policy", "world_model", "value_s'"}


# ---- depth search ---------------------------------------------------------------------------------------


def test_depth_two_replans_from_the_predicted_state(policy, obs):
    layout = policy.layout
    n, w = 2, 2
    with DenoiseSpy(policy) as spy:
        out = policy.plan(obs, num_candidates=n, world_model_samples=w, value_samples=1, seed=0, depth=2,
                          max_batch=None, **FAST)
    assert out.candidate_values.shape == (n,)
    stages = [c[1] for c in spy.calls]
    assert stages == ["policy", "world_model", "policy", "world_model", "value_s'"]
    # the world model runs twice per branch (candidate x world-model sample), the proposer once more per branch
    assert spy.rows("world_model") == 2 * n * w and spy.rows("policy") == n + n * w
    first_wm, replan, second_wm = spy.calls[1], spy.calls[2], spy.calls[3]
    # depth 2 starts from the predicted future state: future images become the current images, the
    # predicted future proprio the current proprio
    for cam in layout.cameras:
        assert torch.equal(replan[3][:, :, layout.index("image", cam)],
                           first_wm[4][:, :, layout.index("future_image", cam)])
        assert torch.equal(second_wm[3][:, :, layout.index("image", cam)], replan[3][:, :, layout.index("image", cam)])
    # the depth-2 world model is conditioned on the re-planned actions, not on the first ones
    def chunk(latents):
        return extract(latents, layout.index("action"), layout.vector_length("action"))

    assert torch.allclose(chunk(second_wm[3]), chunk(replan[4]).clamp(-1, 1), atol=1e-6)
    assert not torch.allclose(chunk(second_wm[3]), chunk(first_wm[3]))


def test_planning_options_are_checked():
    assert PlanningOptions().world_model_steps == 5 and PlanningOptions().value_conditioning == NEXT_STATE
    for bad in (dict(depth=0), dict(max_batch=0), dict(aggregation="median"), dict(value_conditioning="q")):
        with pytest.raises(ValueError):
            PlanningOptions(**bad)


# ---- a deadline: planning that cannot finish in time falls back to a direct chunk ------------------------


def test_generate_calls_interrupt_before_every_network_evaluation_and_stops_when_it_raises():
    class Toy:
        calls = 0

        def denoise(self, xt, sigma, x_clean, clean_mask, text):
            Toy.calls += 1
            return torch.zeros_like(xt)

    x, mask, text = torch.randn(4, 2, 3, 2, 2), torch.tensor([True, False, False]).expand(4, -1), torch.randn(4, 4, 3)
    checks = []
    generate(Toy(), x, mask, text, 3, SamplerConfig(), max_batch=2, interrupt=lambda: checks.append(Toy.calls))
    assert checks == list(range(Toy.calls)) and Toy.calls == 2 * 3  # two chunks x three steps, checked before each

    class Stop(Exception):
        pass

    def stop_at_fourth():
        if len(checks) == 3:
            raise Stop
        checks.append(None)

    checks.clear()
    Toy.calls = 0
    with pytest.raises(Stop):
        generate(Toy(), x, mask, text, 3, SamplerConfig(), max_batch=2, interrupt=stop_at_fourth)
    assert Toy.calls == 3


def test_planning_past_its_deadline_returns_the_first_proposal_unscored(obs):
    import time

    base, planner = make_policy(6), make_policy(5)
    kwargs = dict(proposer=base, world_model_samples=2, value_samples=2, seed=4, **FAST)
    first_proposal = planner.plan(obs, num_candidates=1, **kwargs)  # row 0's seed does not depend on N
    with DenoiseSpy(base) as base_spy, DenoiseSpy(planner) as planner_spy:
        late = planner.plan(obs, num_candidates=3, deadline=time.monotonic() - 1.0, **kwargs)
    assert base_spy.rows("policy") == 3  # the proposals always complete ...
    assert planner_spy.calls == []  # ... the scoring never starts
    assert late.planning_fallback and np.isnan(late.value) and late.candidate_values is None
    assert np.allclose(late.actions, first_proposal.actions, atol=1e-6)
    # a deadline that is not reached changes nothing
    on_time = planner.plan(obs, num_candidates=3, deadline=time.monotonic() + 3600.0, **kwargs)
    unlimited = planner.plan(obs, num_candidates=3, **kwargs)
    assert not on_time.planning_fallback and not unlimited.planning_fallback
    assert np.allclose(on_time.candidate_values, unlimited.candidate_values, atol=1e-6)
    assert np.allclose(on_time.actions, unlimited.actions, atol=1e-6)


def test_planning_is_abandoned_when_its_stop_event_is_set(obs):
    """A node shutting down sets the event: scoring stops at the next network evaluation, the first proposal
    comes back unscored (as past a deadline), and an unset event changes nothing."""
    import threading

    base, planner = make_policy(6), make_policy(5)
    kwargs = dict(proposer=base, world_model_samples=2, value_samples=2, seed=4, **FAST)
    first_proposal = planner.plan(obs, num_candidates=1, **kwargs)
    stop = threading.Event()
    unset = planner.plan(obs, num_candidates=3, stop=stop, **kwargs)
    assert not unset.planning_fallback and unset.candidate_values is not None
    stop.set()
    with DenoiseSpy(planner) as spy:
        stopped = planner.plan(obs, num_candidates=3, stop=stop, **kwargs)
    assert spy.calls == [] and stopped.planning_fallback and np.isnan(stopped.value)
    assert np.allclose(stopped.actions, first_proposal.actions, atol=1e-6)


def test_planning_decodes_the_winners_predicted_images_when_asked(obs):
    base, planner = make_policy(6), make_policy(5)
    kwargs = dict(proposer=base, num_candidates=3, world_model_samples=2, value_samples=2, seed=4, **FAST)
    plain = planner.plan(obs, **kwargs)
    with_images = planner.plan(obs, return_future_images=True, **kwargs)
    assert plain.future_images is None
    assert set(with_images.future_images) == set(planner.layout.cameras)
    size = planner.model.network_config.image_size_px  # the network's resolution, as in direct mode
    for rgb in with_images.future_images.values():
        assert rgb.dtype == np.uint8 and rgb.shape == (size, size, 3) and rgb.std() > 0
    # decoding changes nothing about the choice
    assert np.allclose(plain.actions, with_images.actions) and np.allclose(plain.candidate_values,
                                                                         with_images.candidate_values)
    import threading
    stop = threading.Event()
    stop.set()
    unscored = planner.plan(obs, return_future_images=True, stop=stop, **kwargs)
    assert unscored.planning_fallback and unscored.future_images is None  # nothing was predicted


def test_planning_is_abandoned_mid_scoring_when_its_deadline_passes(obs, monkeypatch):
    import cosmos_policy.policy as policy_module

    base, planner = make_policy(6), make_policy(5)
    clock = iter(range(10_000))  # each look at the clock is one tick later
    monkeypatch.setattr(policy_module.time, "monotonic", lambda: next(clock))
    with DenoiseSpy(planner) as spy:
        out = planner.plan(obs, proposer=base, num_candidates=3, world_model_samples=2, value_samples=2, seed=0,
                           max_batch=2, deadline=2.5, **FAST)
    # the clock reads 0, 1, 2 before the first three world-model batches, 3 > 2.5 before the fourth
    assert [c[1] for c in spy.calls] == ["world_model"] * 3
    assert out.planning_fallback and np.isnan(out.value)
