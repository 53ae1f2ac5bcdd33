"""The optional learnable absolute position embedding (Predict1's, not the release): it is zero until trained,
so adding it to a trained DiT changes nothing at first; it is saved, loaded and resumed with the checkpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy.checkpoint import load_checkpoint
from cosmos_policy.cli import main
from cosmos_policy.config import NetworkConfig
from cosmos_policy.networks import add_learnable_position_embedding, build_transformer


def run(dit, x, t, text):
    return dit(hidden_states=x, timestep=t, encoder_hidden_states=text, return_dict=False)[0]


def test_config_names_the_choices_and_reads_configs_older_than_the_option():
    tiny = NetworkConfig.preset_config("tiny")
    assert tiny.extra_pos_embed is None
    old = tiny.to_dict()
    del old["extra_pos_embed"]
    assert NetworkConfig.from_dict(old) == tiny
    with pytest.raises(ValueError, match="extra_pos_embed='absolute': expected one of None, learnable"):
        dataclasses.replace(tiny, extra_pos_embed="absolute")


def test_added_embedding_keeps_the_trained_function_until_it_learns_positions():
    torch.manual_seed(0)
    tiny = NetworkConfig.preset_config("tiny")
    dit = build_transformer(tiny)
    grown = add_learnable_position_embedding(dit, tiny)
    x, t, text = torch.randn(2, 18, 11, 8, 8), torch.rand(2, 1, 11, 1, 1), torch.randn(2, 8, tiny.text_embed_dim)
    with torch.no_grad():
        assert torch.equal(run(grown, x, t, text), run(dit, x, t, text))
    # one optimiser step gives every token its unit-rms embedding (diffusers normalises it)
    opt = torch.optim.Adam(grown.learnable_pos_embed.parameters(), lr=1e-2)
    run(grown, x, t, text).square().mean().backward()
    opt.step()
    with torch.no_grad():
        emb = grown.learnable_pos_embed(torch.zeros(1, 18, 11, 8, 8))
        assert float(emb.square().mean().sqrt()) == pytest.approx(1.0, rel=1e-3)  # Predict1: rms 1 per token
        assert not torch.allclose(run(grown, x, t, text), run(dit, x, t, text))
    with pytest.raises(ValueError, match="already has one"):
        add_learnable_position_embedding(grown, dataclasses.replace(tiny, extra_pos_embed="learnable"))


@pytest.mark.slow
def test_train_adds_the_embedding_to_a_fine_tune_and_resume_insists_on_it(tmp_path, capsys):
    data = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(data, count=2, steps=6)
    base, tuned = tmp_path / "base", tmp_path / "tuned"
    common = ["--steps", "1", "--batch-size", "2", "--warmup-steps", "1"]
    assert main(["train", "--data", str(data), "--network", "tiny", "--out", str(base), *common]) == 0
    fine = ["train", "--init-checkpoint", str(base), "--data", str(data), "--out", str(tuned)]
    assert main([*fine, "--extra-pos-embed", "learnable", *common]) == 0
    saved = json.loads((tuned / "config.json").read_text())["network"]
    assert saved["extra_pos_embed"] == "learnable"
    loaded = load_checkpoint(tuned)
    assert loaded.network.extra_pos_embed == "learnable" and loaded.model.dit.learnable_pos_embed is not None
    capsys.readouterr()
    resume = [*fine, "--resume", "--steps", "2", "--batch-size", "2", "--warmup-steps", "1"]
    assert main(resume) == 2  # the flag forgotten: the run's weights would not fit the network
    assert "pass --extra-pos-embed learnable" in capsys.readouterr().err
    assert main([*resume, "--extra-pos-embed", "learnable"]) == 0
    assert json.loads((tuned / "trainer_state.json").read_text())["step"] == 2
