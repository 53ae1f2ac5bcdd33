"""How camera frames reach the frozen VAE (NetworkConfig.vae_frames): the release's one causal video pass, or
one frame at a time for a VAE that `pretrain-vae` trained on single frames only."""

import dataclasses
import json

import pytest
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy.checkpoint import load_checkpoint
from cosmos_policy.cli import main
from cosmos_policy.config import NetworkConfig, load_layout
from cosmos_policy.latent_sequence import decode_slots, encode_sequence, prefix_slots
from cosmos_policy.networks import build_vae, decode_normalised, encode_normalised

NETWORK = NetworkConfig.preset_config("tiny")
LAYOUT = load_layout("aloha")


def _images(seed: int) -> torch.Tensor:
    return torch.rand(2, len(LAYOUT.cameras), 3, 64, 64, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def test_per_frame_latents_are_each_cameras_own_one_frame_encoding():
    torch.manual_seed(0)
    vae = build_vae(NETWORK).eval()
    images = _images(0)
    with torch.no_grad():
        latents = encode_sequence(vae, LAYOUT, images, vae_frames="per_frame")
        assert latents.shape == (2, 16, LAYOUT.num_latent_frames, 8, 8)
        for cam in LAYOUT.cameras:
            alone = encode_normalised(vae, images[:, LAYOUT.cameras.index(cam)][:, :, None])[:, :, 0]
            torch.testing.assert_close(latents[:, :, LAYOUT.index("image", cam)], alone, rtol=1e-4, atol=1e-5)
        # so a camera's latent does not depend on the frames before it, which it does through the causal video
        other = images.clone()
        other[:, 0] = -images[:, 0]  # another first camera
        high = LAYOUT.index("image", "cam_high")
        for mode, same in (("per_frame", True), ("video", False)):
            a = encode_sequence(vae, LAYOUT, images, vae_frames=mode)[:, :, high]
            b = encode_sequence(vae, LAYOUT, other, vae_frames=mode)[:, :, high]
            assert torch.allclose(a, b, atol=1e-6) == same, mode


def test_decoding_gives_one_frame_per_slot_in_either_mode():
    torch.manual_seed(0)
    vae = build_vae(NETWORK).eval()
    with torch.no_grad():
        for mode in ("video", "per_frame"):
            latents = encode_sequence(vae, LAYOUT, _images(1), vae_frames=mode)
            pixels = decode_slots(vae, latents, mode)
            assert pixels.shape == (2, 3, LAYOUT.num_latent_frames, 64, 64)
        k = LAYOUT.index("image", "cam_high")
        frame = decode_slots(vae, latents, "per_frame")[:, :, k]
        torch.testing.assert_close(frame, decode_normalised(vae, latents[:, :, k:k + 1])[:, :, 0])
        video = decode_normalised(vae, encode_sequence(vae, LAYOUT, _images(1), vae_frames="video"))
        torch.testing.assert_close(decode_slots(vae, encode_sequence(vae, LAYOUT, _images(1)), "video")[:, :, k],
                                   video[:, :, 4 * k])
        with pytest.raises(ValueError, match="vae_frames='clip'"):
            encode_sequence(vae, LAYOUT, _images(1), num_slots=prefix_slots(LAYOUT), vae_frames="clip")


def test_the_network_config_knows_the_mode_and_old_configs_read_as_video():
    assert NetworkConfig.preset_config("2b").vae_frames == "video"  # the release
    old = NETWORK.to_dict()
    del old["vae_frames"]
    assert NetworkConfig.from_dict(old).vae_frames == "video"
    with pytest.raises(ValueError, match="vae_frames='clip'"):
        dataclasses.replace(NETWORK, vae_frames="clip")


def test_a_policy_trained_on_a_pretrain_vae_folder_feeds_it_single_frames(tmp_path):
    data = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(data, count=2, steps=8)
    vae_out = tmp_path / "vae"
    assert main(["pretrain-vae", "--data", str(data), "--network", "tiny", "--out", str(vae_out), "--steps", "2",
                 "--batch-size", "2", "--frames-per-episode", "2", "--no-progress"]) == 0
    assert json.loads((vae_out / "vae_pretrain.json").read_text())["vae_frames"] == "per_frame"
    train = ["train", "--data", str(tmp_path / "demos"), "--network", "tiny", "--steps", "1", "--batch-size", "2",
             "--warmup-steps", "1", "--no-progress"]
    assert main(train + ["--vae-dir", str(vae_out), "--out", str(tmp_path / "ckpt")]) == 0
    assert load_checkpoint(tmp_path / "ckpt").network.vae_frames == "per_frame"
    # a report from before the key existed was a single-frame pretraining too; no report: a video VAE
    report = json.loads((vae_out / "vae_pretrain.json").read_text())
    del report["vae_frames"]
    (vae_out / "vae_pretrain.json").write_text(json.dumps(report))
    assert main(train + ["--vae-dir", str(vae_out), "--out", str(tmp_path / "old")]) == 0
    assert load_checkpoint(tmp_path / "old").network.vae_frames == "per_frame"
    (vae_out / "vae_pretrain.json").unlink()
    assert main(train + ["--vae-dir", str(vae_out), "--out", str(tmp_path / "elsewhere")]) == 0
    assert load_checkpoint(tmp_path / "elsewhere").network.vae_frames == "video"


def test_inference_encodes_as_the_checkpoint_says(tmp_path):
    from tiny_model import observation, write_checkpoint

    from cosmos_policy.diffusion import CosmosPolicyModel
    from cosmos_policy.policy import CosmosPolicy

    torch.manual_seed(0)
    model = CosmosPolicyModel(dataclasses.replace(NETWORK, vae_frames="per_frame"), LAYOUT)
    policy = CosmosPolicy.from_checkpoint(write_checkpoint(tmp_path / "ckpt", model))
    assert policy.model.network_config.vae_frames == "per_frame"
    obs = observation(LAYOUT)
    prepared = policy.prepare(obs)
    with torch.no_grad():
        prefix = policy.encode_observation(prepared.images, prepared.proprio)
        high = LAYOUT.index("image", "cam_high")
        alone = encode_normalised(policy.model.vae, prepared.images[:, LAYOUT.cameras.index("cam_high")][:, :, None])
    torch.testing.assert_close(prefix[:, :, high], alone[:, :, 0], rtol=1e-4, atol=1e-5)
    chunk = policy.act(obs, num_steps=2, seed=0)
    assert chunk.actions.shape == (LAYOUT.action_chunk, LAYOUT.action_dim)


def test_a_run_saved_with_the_video_pass_is_not_resumed_frame_by_frame(tmp_path, capsys):
    data = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(data, count=2, steps=8)
    vae_out = tmp_path / "vae"
    assert main(["pretrain-vae", "--data", str(data), "--network", "tiny", "--out", str(vae_out), "--steps", "2",
                 "--batch-size", "2", "--frames-per-episode", "2", "--no-progress"]) == 0
    train = ["train", "--data", str(tmp_path / "demos"), "--network", "tiny", "--batch-size", "2",
             "--warmup-steps", "1", "--no-progress", "--vae-dir", str(vae_out), "--out", str(tmp_path / "run")]
    assert main(train + ["--steps", "1"]) == 0
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    config["network"]["vae_frames"] = "video"  # as a run saved before per-frame encoding existed
    (tmp_path / "run" / "config.json").write_text(json.dumps(config))
    capsys.readouterr()
    assert main(train + ["--steps", "2", "--resume"]) == 2
    assert "start a new --out" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "trainer_state.json").read_text())["step"] == 1  # nothing lost
