"""`cosmos-policy pretrain-vae` and `train --vae-dir`: a CPU preset gets a VAE that tells camera frames apart,
and the checkpoint carries it (weights and latent statistics) through save, load and resume."""

import json

import numpy as np
import pytest
import torch
from data_synthetic import write_synthetic_episodes

from cosmos_policy.checkpoint import load_checkpoint
from cosmos_policy.cli import main
from cosmos_policy.config import NetworkConfig
from cosmos_policy.data.act_episode import read_act_episode
from cosmos_policy.networks import build_vae, encode_normalised, load_vae_from_diffusers, vae_fingerprint
from cosmos_policy.vae_pretrain import VaePretrainConfig, detail_weights, pretrain_vae, read_vae_statistics

CAMERAS = ["cam_high", "cam_left_wrist", "cam_right_wrist"]


def test_build_vae_takes_latent_statistics_and_refuses_a_wrong_channel_count():
    network = NetworkConfig.preset_config("tiny")
    mean, std = [0.5] * network.vae_z_dim, [2.0] * network.vae_z_dim
    vae = build_vae(network, mean, std)
    assert list(vae.config.latents_mean) == mean and list(vae.config.latents_std) == std
    assert list(build_vae(network).config.latents_mean) != mean  # Wan2.1's defaults otherwise
    with pytest.raises(ValueError, match="latents_std: 3 values for a VAE with 16 latent channels"):
        build_vae(network, mean, [1.0, 1.0, 1.0])


def test_a_small_red_cube_on_a_grey_table_weighs_more_than_the_table():
    frame = torch.full((1, 3, 1, 16, 16), 0.4)  # a grey table in [0, 1]
    frame[:, 0, :, 7:9, 7:9] = 0.8  # a 2 x 2 px red cube
    frame[:, 1:, :, 7:9, 7:9] = 0.1
    pixels = frame * 2 - 1
    plain = detail_weights(pixels, 0.0, 0.0)
    assert torch.all(plain == 1.0)  # no weighting: the plain MSE
    detail = detail_weights(pixels, 50.0, 0.0)[0, 0, 0]
    colour = detail_weights(pixels, 0.0, 100.0)[0, 0, 0]
    for w in (detail, colour):
        assert float(w[8, 8]) > 10 * float(w[0, 0]) and float(w[0, 0]) == pytest.approx(1.0, abs=1e-4)
    assert float(colour[8, 8]) == pytest.approx(1.0 + 100.0 * 0.7, rel=1e-4)  # saturation: max - min over RGB


@pytest.mark.slow
def test_pretraining_makes_the_latents_reconstruct_held_out_frames(tmp_path):
    files = write_synthetic_episodes(tmp_path / "demos", count=5, steps=24)
    network = NetworkConfig.preset_config("tiny")
    config = VaePretrainConfig(steps=150, batch_size=8, learning_rate=3e-3, frames_per_episode=8,
                               heldout_fraction=0.2, calibration_frames=64, log_every=50)
    report = pretrain_vae(network, CAMERAS, files, tmp_path / "vae_run", config, progress=False)
    # a random VAE reconstructs nothing; the trained one reconstructs frames of an episode it never saw
    assert report["heldout_psnr_db"] > report["heldout_psnr_db_start"] + 6.0, report
    mean, std = read_vae_statistics(tmp_path / "vae_run")
    assert len(mean) == len(std) == network.vae_z_dim and min(std) > 0
    assert json.loads((tmp_path / "vae_run" / "vae_pretrain.json").read_text())["latents_std"] == list(std)
    # the statistics are the ones measured: normalised latents of training frames are about zero-mean, unit-std
    vae = load_vae_from_diffusers(tmp_path / "vae_run", network)
    episodes = [read_act_episode(f) for f in files]
    frames = torch.stack([torch.from_numpy(np.ascontiguousarray(e.images[cam][5])).permute(2, 0, 1)
                          for e in episodes for cam in CAMERAS]).float()
    pixels = torch.nn.functional.interpolate(frames, size=(64, 64), mode="bilinear") / 127.5 - 1.0
    with torch.no_grad():
        z = encode_normalised(vae, pixels[:, :, None])
    assert abs(float(z.mean())) < 0.5 and 0.5 < float(z.std()) < 2.0


@pytest.mark.slow
def test_train_with_a_pretrained_vae_keeps_it_through_save_load_and_resume(tmp_path, capsys):
    data = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(data, count=3, steps=8)
    vae_out = tmp_path / "vae"
    pretrain = ["pretrain-vae", "--data", str(data), "--network", "tiny", "--out", str(vae_out), "--steps", "3",
                "--batch-size", "2", "--frames-per-episode", "2", "--no-progress"]
    assert main(pretrain) == 0
    assert "next: cosmos-policy train --network tiny --vae-dir" in capsys.readouterr().out
    assert main(pretrain) == 2  # never replaces a VAE without --overwrite
    assert "--overwrite" in capsys.readouterr().err
    # a second run continues from the first VAE (the default recipe's two runs); a wrong --init is named
    more = [a if a != str(vae_out) else str(tmp_path / "vae_more") for a in pretrain]
    assert main(more + ["--init", str(tmp_path / "nowhere")]) == 2
    assert "--init" in capsys.readouterr().err and not (tmp_path / "vae_more").exists()
    assert main(more + ["--init", str(vae_out), "--colour-weight", "0"]) == 0
    report = json.loads((tmp_path / "vae_more" / "vae_pretrain.json").read_text())
    assert report["init_dir"] == str(vae_out) and report["config"]["colour_weight"] == 0.0

    network = NetworkConfig.preset_config("tiny")
    pretrained = load_vae_from_diffusers(vae_out, network)
    out = tmp_path / "ckpt"
    train = ["train", "--data", str(tmp_path / "demos"), "--network", "tiny", "--vae-dir", str(vae_out),
             "--steps", "2", "--batch-size", "2", "--warmup-steps", "1", "--cache-latents", "--out", str(out)]
    assert main(train) == 0
    loaded = load_checkpoint(out)
    assert list(loaded.model.vae.config.latents_mean) == list(pretrained.config.latents_mean)
    assert list(loaded.model.vae.config.latents_std) == list(pretrained.config.latents_std)
    assert vae_fingerprint(loaded.model.vae) == vae_fingerprint(pretrained)
    assert loaded.config["vae_base_dir"] is None  # embedded: the checkpoint works without the pretrain folder

    # a resume without --vae-dir still trains on the run's VAE, and its cached latents stay valid
    resume = [a for a in train if a not in ("--vae-dir", str(vae_out))]
    resume[resume.index("--steps") + 1] = "3"
    capsys.readouterr()
    assert main(resume + ["--resume"]) == 0
    assert vae_fingerprint(load_checkpoint(out).model.vae) == vae_fingerprint(pretrained)

    # a fine-tune keeps its base's VAE: a second one is refused with the fix
    assert main(["train", "--init-checkpoint", str(out), "--data", str(data), "--vae-dir", str(vae_out),
                 "--steps", "1", "--out", str(tmp_path / "ft")]) == 2
    assert "drop --vae-dir" in capsys.readouterr().err


def test_the_vae_fingerprint_that_keys_the_latent_cache_follows_weights_and_statistics():
    network = NetworkConfig.preset_config("tiny")
    torch.manual_seed(0)
    a = build_vae(network)
    b = build_vae(network, [0.0] * network.vae_z_dim, [1.0] * network.vae_z_dim)
    b.load_state_dict(a.state_dict())
    assert vae_fingerprint(a) != vae_fingerprint(b)  # same weights, other statistics: other latents
    c = build_vae(network)
    c.load_state_dict(a.state_dict())
    assert vae_fingerprint(a) == vae_fingerprint(c)
