"""CosmosPolicy.act: shapes, units, seeding, candidates, future images on request, input errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_model import TASK, observation, statistics, text_cache, tiny_model, write_checkpoint

from cosmos_policy.checkpoint import save_checkpoint
from cosmos_policy.config import SamplerConfig
from cosmos_policy.policy import ActionCandidates, ActionChunk, CosmosPolicy


@pytest.fixture(scope="module")
def policy(tmp_path_factory):
    model = tiny_model(seed=5)
    directory = write_checkpoint(tmp_path_factory.mktemp("policy"), model, SamplerConfig(action_steps=3))
    return CosmosPolicy.from_checkpoint(directory, layout="aloha")


def test_act_returns_a_chunk_in_robot_units(policy):
    obs = observation(policy.layout)
    out = policy.act(obs, seed=0)
    assert isinstance(out, ActionChunk)
    assert out.actions.shape == (50, 14) and out.actions.dtype == np.float32
    lo = np.array(statistics(policy.layout)["actions_min"], np.float32)
    hi = np.array(statistics(policy.layout)["actions_max"], np.float32)
    assert np.all(out.actions >= lo - 1e-5) and np.all(out.actions <= hi + 1e-5)
    assert 0.0 <= out.value <= 1.0
    assert out.future_images is None and out.latency_s > 0


def test_act_is_seeded_and_deterministic(policy):
    obs = observation(policy.layout)
    a = policy.act(obs, seed=11, num_steps=2)
    b = policy.act(obs, seed=11, num_steps=2)
    c = policy.act(obs, seed=12, num_steps=2)
    assert np.array_equal(a.actions, b.actions) and a.value == b.value
    assert not np.array_equal(a.actions, c.actions)


def test_only_the_prefix_is_encoded(policy):
    frames = []
    original = policy.model.vae.encode

    def spy(x, *args, **kwargs):
        frames.append(x.shape[2])
        return original(x, *args, **kwargs)

    policy.model.vae.encode = spy
    try:
        policy.act(observation(policy.layout), seed=0, num_steps=1)
    finally:
        del policy.model.vae.encode
    assert frames == [17]


def test_candidates_are_batched_and_differ(policy):
    out = policy.act(observation(policy.layout), seed=3, num_steps=1, num_candidates=4)
    assert isinstance(out, ActionCandidates)
    assert out.actions.shape == (4, 50, 14) and out.values.shape == (4,)
    assert not np.array_equal(out.actions[0], out.actions[1])
    best = out.best()
    assert best.value == out.values.max()


def test_future_images_only_when_asked(policy):
    out = policy.act(observation(policy.layout), seed=0, num_steps=1, return_future_images=True)
    assert set(out.future_images) == set(policy.layout.cameras)
    for image in out.future_images.values():
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8


def test_autoregressive_mode_and_planning(policy):
    original = policy.sampler
    policy.sampler = SamplerConfig(mode="autoregressive", action_steps=2)
    try:
        out = policy.act(observation(policy.layout), seed=1)
        assert out.actions.shape == (50, 14) and 0 <= out.value <= 1
        values = policy.score_actions(observation(policy.layout), np.stack([out.actions, out.actions * 0.5]),
                                      world_model_samples=2, value_samples=2, seed=0)
        assert values.shape == (2,) and np.all((values >= 0) & (values <= 1))
        planned = policy.plan(observation(policy.layout), num_candidates=3, world_model_samples=1, value_samples=2, seed=0)
        assert planned.actions.shape == (50, 14) and 0 <= planned.value <= 1
        by_proposer = policy.plan(observation(policy.layout), proposer=policy, num_candidates=1,
                                  world_model_samples=1, value_samples=1, seed=0)
        assert by_proposer.actions.shape == (50, 14)
    finally:
        policy.sampler = original


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda o: o["images"].pop("cam_high"), r"missing cameras \['cam_high'\]"),
        (lambda o: o["images"].update(cam_left_wrist=np.zeros((240, 320, 3), np.uint8)),
         "cam_left_wrist: got 240x320 rgb8, expected 480x640 rgb8"),
        (lambda o: o["images"].update(cam_right_wrist=np.zeros((480, 640, 3), np.float32)), "cam_right_wrist: got"),
        (lambda o: o.update(proprio=np.zeros(7)), r"proprio: got shape \(7,\), expected \(14,\)"),
        (lambda o: o["proprio"].__setitem__(3, np.nan), r"proprio: non-finite values at indices \[3\]"),
        (lambda o: o.update(task="juggle three balls"), "task 'juggle three balls': no cached text embedding"),
        (lambda o: o.pop("task"), r"obs: missing \['task'\]"),
    ],
)
def test_bad_inputs_name_the_problem(policy, change, message):
    obs = observation(policy.layout)
    change(obs)
    with pytest.raises(ValueError, match=message):
        policy.act(obs, seed=0, num_steps=1)


def test_missing_statistics_and_text_encoder(tmp_path):
    model = tiny_model(seed=6)
    save_checkpoint(tmp_path, model, text_cache=text_cache(model))
    policy = CosmosPolicy.from_checkpoint(tmp_path)
    with pytest.raises(ValueError, match="dataset statistics: missing"):
        policy.act(observation(policy.layout), seed=0, num_steps=1)
    policy.statistics = {k: np.asarray(v, np.float32) for k, v in statistics(model.layout).items()}
    calls = []

    def encoder(task):
        calls.append(task)
        return torch.ones(8, model.network_config.text_embed_dim), torch.ones(8, dtype=torch.bool)

    policy.text_encoder = encoder
    out = policy.act(observation(policy.layout, task="a new task"), seed=0, num_steps=1)
    assert calls == ["a new task"] and out.actions.shape == (50, 14)
    policy.statistics = {**policy.statistics, "proprio_min": np.zeros(9, np.float32), "proprio_max": np.ones(9, np.float32)}
    with pytest.raises(ValueError, match="proprio has 9 dimensions, layout aloha expects 14"):
        policy.act(observation(policy.layout, task=TASK), seed=0, num_steps=1)


def test_camera_size_check_can_be_relaxed_for_a_simulator(tmp_path):
    model = tiny_model(seed=7)
    write_checkpoint(tmp_path, model)
    strict = CosmosPolicy.from_checkpoint(tmp_path)
    obs = observation(strict.layout)
    obs["images"] = {cam: np.zeros((96, 128, 3), np.uint8) for cam in strict.layout.cameras}
    with pytest.raises(ValueError, match="got 96x128 rgb8, expected 480x640 rgb8"):
        strict.act(obs, seed=0, num_steps=1)
    relaxed = CosmosPolicy.from_checkpoint(tmp_path, camera_hw=None)
    assert relaxed.act(obs, seed=0, num_steps=1).actions.shape == (50, 14)
