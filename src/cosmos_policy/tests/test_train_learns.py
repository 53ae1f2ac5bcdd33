"""The whole loop learns: ACT episodes -> dataset -> trainer -> checkpointed model -> sampler -> actions.

Synthetic ALOHA-layout transitions (tiny ACT HDF5 episodes, 64 px images) whose action chunk follows
from what the observation shows; a tiny model trained on CPU must predict chunks (through the policy's
sampler, in robot units) far closer to the truth than the dataset-mean chunk does.
"""

import dataclasses
import time

import numpy as np
import pytest
import torch
from data_synthetic import posture_from_param, write_synthetic_episodes

from cosmos_policy.config import NetworkConfig, SamplerConfig, load_layout
from cosmos_policy.data.act_episode import read_act_episode
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.diffusion import CosmosPolicyModel
from cosmos_policy.policy import CosmosPolicy
from cosmos_policy.train import TrainConfig, Trainer

NETWORK = NetworkConfig.preset_config("tiny")
LAYOUT = dataclasses.replace(load_layout("aloha"), camera_hw=(48, 64))


@pytest.mark.slow
def test_tiny_model_beats_the_dataset_mean_chunk(tmp_path):
    start = time.perf_counter()
    paths = write_synthetic_episodes(tmp_path / "demos" / "reach", count=4, steps=8)
    raw = compute_dataset_statistics(paths)
    stats = statistics_from_dict(raw)
    spec = SampleSpec.from_configs(LAYOUT, NETWORK)
    demos = load_episodes(paths, spec, is_demo=True)
    cache = build_text_cache({e.task for e in demos}, NETWORK.text_embed_dim, max_length=NETWORK.text_max_tokens)
    dataset = EpisodeDataset(demos, spec, stats, cache, augment=False)
    torch.manual_seed(0)
    model = CosmosPolicyModel(NETWORK, LAYOUT)
    # a from-scratch tiny model wants a larger step than the paper's 1e-4 fine-tuning rate
    config = TrainConfig(steps=500, batch_size=8, lr=3e-3, warmup_steps=50, cache_latents=True, save_every=0,
                         progress=False)
    summary = Trainer(model, dataset, config, tmp_path / "ckpt", raw, cache).train()
    train_s = time.perf_counter() - start

    policy = CosmosPolicy(model, SamplerConfig(), stats, cache)
    chunks = {}
    for path in paths:
        episode = read_act_episode(path)
        last = episode.num_steps - 1
        for t in range(episode.num_steps):
            truth = episode.action[np.minimum(np.arange(t, t + LAYOUT.action_chunk), last)]
            obs = {"images": {cam: episode.images[cam][t] for cam in LAYOUT.cameras},
                   "proprio": episode.qpos[t], "task": "reach"}
            chunks[(path.name, t)] = (truth, obs)
    mean_chunk = np.mean([truth for truth, _ in chunks.values()], axis=0)
    model_l1, baseline_l1 = [], []
    for truth, obs in chunks.values():
        predicted = policy.act(obs, seed=0).actions
        model_l1.append(np.abs(predicted - truth).mean())
        baseline_l1.append(np.abs(mean_chunk - truth).mean())
    model_l1, baseline_l1 = float(np.mean(model_l1)), float(np.mean(baseline_l1))
    print(f"\n{len(chunks)} transitions, {summary.steps_done} steps: action L1 model {model_l1:.4f} vs dataset-mean "
          f"chunk {baseline_l1:.4f} (ratio {model_l1 / baseline_l1:.2f}); train {train_s:.0f} s, "
          f"total {time.perf_counter() - start:.0f} s")
    assert summary.losses["l1/action"] < 0.5
    assert model_l1 < 0.5 * baseline_l1


def _looking_episode(u: float, steps: int = 8, image_hw: tuple[int, int] = (48, 64)):
    """An episode where only cam_high tells the action: the same joint state and wrist views in every
    episode, a white square at column u on cam_high, and a constant action chunk set by u."""
    from cosmos_policy.data.act_episode import Episode

    height, width = image_hw
    rows, cols = np.meshgrid(np.linspace(0, 1, height), np.linspace(0, 1, width), indexing="ij")
    scene = np.stack([120 * cols, 120 * rows, 60 * (rows + cols)], axis=-1).astype(np.uint8)
    frames = np.broadcast_to(scene, (steps, height, width, 3)).copy()
    high = frames.copy()
    side = height // 3
    left = int(round(u * (width - side)))
    high[:, height // 3:height // 3 + side, left:left + side] = 255
    qpos = np.zeros((steps, 14), np.float32)
    action = np.broadcast_to(posture_from_param(u), (steps, 14)).astype(np.float32)
    return Episode(qpos=qpos, qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos), action=action,
                   images={"cam_high": high, "cam_left_wrist": frames, "cam_right_wrist": frames.copy()}, attrs={})


@pytest.mark.slow
def test_the_chunk_follows_what_the_camera_shows(tmp_path):
    """Two scenes that differ only in where cam_high's square is, and whose demonstrations differ only in
    their action. On a VAE pretrained on the frames (`pretrain-vae`, fed frame by frame as `train --vae-dir`
    does) a trained policy tells them apart; on the random frozen VAE the two frames are nearly one latent
    and the same training cannot (docs/results.md, "The VAE was fed videos it had never learned")."""
    from cosmos_policy.data.act_episode import write_act_episode
    from cosmos_policy.networks import load_vae_from_diffusers
    from cosmos_policy.vae_pretrain import VaePretrainConfig, pretrain_vae

    paths = [write_act_episode(tmp_path / "demos" / "look" / f"episode_{i}.hdf5", _looking_episode(u))
             for i, u in enumerate((0.1, 0.9))]
    episodes = [read_act_episode(path) for path in paths]
    truths = [episode.action[0] for episode in episodes]
    gap = float(np.abs(truths[0] - truths[1]).mean())
    pretrain_vae(NETWORK, LAYOUT.cameras, paths, tmp_path / "vae",
                 VaePretrainConfig(steps=150, batch_size=8, learning_rate=3e-3, frames_per_episode=4,
                                   heldout_fraction=0.0, calibration_frames=16, log_every=50), progress=False)

    def trained_policy(vae, vae_frames: str) -> CosmosPolicy:
        network = dataclasses.replace(NETWORK, vae_frames=vae_frames)
        raw = compute_dataset_statistics(paths)
        stats = statistics_from_dict(raw)
        spec = SampleSpec.from_configs(LAYOUT, network)
        demos = load_episodes(paths, spec, is_demo=True)
        cache = build_text_cache({e.task for e in demos}, network.text_embed_dim, max_length=network.text_max_tokens)
        torch.manual_seed(0)
        model = CosmosPolicyModel(network, LAYOUT, vae=vae)
        config = TrainConfig(steps=300, batch_size=8, lr=3e-3, warmup_steps=50, cache_latents=True, save_every=0,
                             progress=False)
        Trainer(model, EpisodeDataset(demos, spec, stats, cache, augment=False), config,
                tmp_path / f"ckpt_{vae_frames}_{vae is None}", raw, cache).train()
        return CosmosPolicy(model, SamplerConfig(), stats, cache)

    def chunk(policy: CosmosPolicy, scene: int) -> np.ndarray:
        """The chunk's time-mean: the demonstrations hold one target."""
        observation = {"images": {cam: episodes[scene].images[cam][0] for cam in LAYOUT.cameras},
                       "proprio": episodes[scene].qpos[0], "task": "look"}
        return policy.act(observation, seed=0).actions.mean(axis=0)

    def l1(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.abs(a - b).mean())

    seeing = trained_policy(load_vae_from_diffusers(tmp_path / "vae", NETWORK), "per_frame")
    blind = trained_policy(None, "video")
    seen, unseen = [chunk(seeing, scene) for scene in (0, 1)], [chunk(blind, scene) for scene in (0, 1)]
    print(f"\nthe two scenes' actions differ by {gap:.3f}; the chunks for the two scenes differ by "
          f"{l1(*seen):.3f} on the pretrained VAE, {l1(*unseen):.3f} on the random one")
    for scene in (0, 1):
        to_own, to_other = l1(seen[scene], truths[scene]), l1(seen[scene], truths[1 - scene])
        print(f"scene {scene}: L1 to its own action {to_own:.3f}, to the other's {to_other:.3f}")
        assert to_own < 0.25 * gap < to_other
    assert l1(*unseen) < 0.25 * gap  # the control: the same training, blind, gives one chunk for both
