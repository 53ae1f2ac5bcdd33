"""What a robot node needs from the library: prepare/infer split, warm-up, deploy metadata, VAE override,
future images decoded with the placeholder latents back in the injected slots."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from tiny_model import TASK, observation, statistics, text_cache, tiny_model, write_checkpoint

from cosmos_policy import latent_sequence
from cosmos_policy import policy as policy_module
from cosmos_policy.checkpoint import CONFIG_FILE, load_checkpoint, save_checkpoint
from cosmos_policy.deploy import DeployConfig
from cosmos_policy.policy import CosmosPolicy


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("deploy"), tiny_model(seed=3))


@pytest.fixture(scope="module")
def policy(checkpoint):
    return CosmosPolicy.from_checkpoint(checkpoint, camera_hw=None)


def test_prepare_then_infer_is_act(policy):
    obs = observation(policy.layout, seed=1)
    prepared = policy.prepare(obs)
    assert prepared.images.device.type == "cpu" and prepared.images.shape[:2] == (1, 3)
    split = policy.infer(prepared, num_steps=2, seed=7)
    whole = policy.act(obs, num_steps=2, seed=7)
    np.testing.assert_array_equal(split.actions, whole.actions)
    assert split.value == whole.value


def test_prepare_refuses_bad_input_before_the_device_is_touched(policy, monkeypatch):
    monkeypatch.setattr(policy, "encode_observation", lambda *a: pytest.fail("reached the device"))
    obs = observation(policy.layout)
    obs["proprio"] = obs["proprio"][:5]
    with pytest.raises(ValueError, match="proprio"):
        policy.prepare(obs)


def test_warmup_runs_inference_and_reports_latency(policy, monkeypatch):
    calls = []
    real_act = policy.act
    monkeypatch.setattr(policy, "act", lambda obs, **kw: calls.append(obs["task"]) or real_act(obs, **kw))
    latency = policy.warmup(runs=2, num_steps=1)
    assert latency > 0 and calls == [TASK, TASK]  # the checkpoint's cached task text


def test_deploy_defaults_per_layout_and_round_trip(tmp_path, checkpoint):
    defaults = load_checkpoint(checkpoint).deploy
    assert (defaults.control_hz, defaults.execute_steps, defaults.action_steps) == (50.0, 50, 10)
    model = tiny_model(seed=3)
    custom = DeployConfig(control_hz=25.0, execute_steps=20, action_steps=4, max_joint_jump_rad=0.15)
    out = save_checkpoint(tmp_path / "c", model, statistics=statistics(model.layout), text_cache=text_cache(model),
                          deploy=custom)
    loaded = CosmosPolicy.from_checkpoint(out, camera_hw=None)
    assert loaded.deploy == custom
    # act() takes the checkpoint's action steps by default
    seen = []
    original = policy_module.generate
    def counting_generate(model, x, mask, text, steps, *a):
        seen.append(steps)
        return original(model, x, mask, text, steps, *a)
    policy_module.generate = counting_generate
    try:
        loaded.act(observation(loaded.layout))
    finally:
        policy_module.generate = original
    assert seen == [4]


def test_old_checkpoints_without_deploy_get_the_layout_defaults(tmp_path):
    model = tiny_model()
    out = write_checkpoint(tmp_path / "old", model)
    config = json.loads((out / CONFIG_FILE).read_text())
    del config["deploy"]
    (out / CONFIG_FILE).write_text(json.dumps(config))
    assert load_checkpoint(out).deploy.execute_steps == 50


def test_execute_steps_beyond_the_chunk_is_refused(tmp_path):
    model = tiny_model()
    out = write_checkpoint(tmp_path / "bad", model)
    config = json.loads((out / CONFIG_FILE).read_text())
    config["deploy"]["execute_steps"] = 51
    (out / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(ValueError, match="execute_steps=51 exceeds the aloha chunk of 50"):
        load_checkpoint(out)


def test_vae_base_dir_override_for_a_moved_checkpoint(tmp_path):
    model = tiny_model(seed=4)
    base = tmp_path / "base"
    model.vae.save_pretrained(base / "vae", safe_serialization=True)
    out = save_checkpoint(tmp_path / "ckpt", model, statistics=statistics(model.layout),
                          text_cache=text_cache(model), vae_base_dir=tmp_path / "elsewhere")
    with pytest.raises(FileNotFoundError, match="vae_base_dir"):
        load_checkpoint(out)
    loaded = load_checkpoint(out, vae_base_dir=base)
    for name, tensor in model.vae.state_dict().items():
        torch.testing.assert_close(loaded.model.vae.state_dict()[name], tensor)


def test_future_images_decode_with_placeholders_in_the_injected_slots(policy, monkeypatch):
    captured = {}
    original = latent_sequence.decode_normalised

    def spy(vae, latents):
        captured["latents"] = latents.clone()
        return original(vae, latents)

    monkeypatch.setattr(latent_sequence, "decode_normalised", spy)
    obs = observation(policy.layout, seed=2)
    chunk = policy.act(obs, num_steps=1, seed=0, return_future_images=True)
    assert set(chunk.future_images) == set(policy.layout.cameras)
    images, _, _ = policy._validate(obs)
    placeholders = policy.placeholder_latents(images)
    decoded = captured["latents"]
    layout = policy.layout
    for kind in ("blank", "proprio", "action", "future_proprio", "value"):
        i = layout.index(kind)
        torch.testing.assert_close(decoded[:, :, i], placeholders[:, :, i])
    # the generated future-image latents are what gets decoded in their own slots
    i = layout.index("future_image", layout.cameras[0])
    assert not torch.allclose(decoded[:, :, i], placeholders[:, :, i])
