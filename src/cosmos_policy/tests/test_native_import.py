"""Native Predict2 names <-> diffusers names, the release .pt loader, and the pickle-free T5 cache import."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest
import torch

from cosmos_policy.config import NetworkConfig
from cosmos_policy.native_import import (
    convert_native_state_dict,
    diffusers_to_native_key,
    diffusers_to_native_state_dict,
    load_native_into,
    load_release_state_dict,
    load_t5_pickle,
    native_to_diffusers_key,
    t5_pickle_to_cache,
)
from cosmos_policy.networks import build_transformer, run_dit


def test_known_native_names_map_onto_diffusers_names():
    pairs = {
        "net.x_embedder.proj.1.weight": "patch_embed.proj.weight",
        "net.t_embedder.1.linear_1.weight": "time_embed.t_embedder.linear_1.weight",
        "net.t_embedding_norm.weight": "time_embed.norm.weight",
        "net.blocks.3.self_attn.q_proj.weight": "transformer_blocks.3.attn1.to_q.weight",
        "net.blocks.3.self_attn.output_proj.weight": "transformer_blocks.3.attn1.to_out.0.weight",
        "net.blocks.12.cross_attn.k_norm.weight": "transformer_blocks.12.attn2.norm_k.weight",
        "net.blocks.0.mlp.layer1.weight": "transformer_blocks.0.ff.net.0.proj.weight",
        "net.blocks.0.mlp.layer2.weight": "transformer_blocks.0.ff.net.2.weight",
        "net.blocks.7.adaln_modulation_cross_attn.2.weight": "transformer_blocks.7.norm2.linear_2.weight",
        "net.blocks.7.adaln_modulation_mlp.1.weight": "transformer_blocks.7.norm3.linear_1.weight",
        "net.final_layer.adaln_modulation.1.weight": "norm_out.linear_1.weight",
        "net.final_layer.linear.weight": "proj_out.weight",
    }
    for native, ours in pairs.items():
        assert native_to_diffusers_key(native) == ours
        assert diffusers_to_native_key(ours) == native


def test_2b_names_all_map_and_count_574_with_buffers():
    with torch.device("meta"):
        dit = build_transformer(NetworkConfig.preset_config("2b"))
    native = diffusers_to_native_state_dict(dit.state_dict())
    buffers = ["net.pos_embedder.seq", "net.pos_embedder.dim_spatial_range", "net.pos_embedder.dim_temporal_range",
               "net.accum_video_sample_counter", "net.accum_image_sample_counter", "net.accum_iteration",
               "net.accum_train_in_hours"]
    assert len(native) + len(buffers) == 574
    assert tuple(native["net.x_embedder.proj.1.weight"].shape) == (2048, 72)


def _native_tiny(seed=0):
    torch.manual_seed(seed)
    source = build_transformer(NetworkConfig.preset_config("tiny")).eval()
    native = diffusers_to_native_state_dict({k: v.clone() for k, v in source.state_dict().items()})
    native["net.pos_embedder.seq"] = torch.arange(10.0)
    native["net.accum_iteration"] = torch.tensor(5)
    native["net.blocks.0.self_attn.q_proj._extra_state"] = b"transformer-engine state"
    return source, native


def _outputs(model):
    g = torch.Generator().manual_seed(0)
    c = NetworkConfig.preset_config("tiny")
    with torch.no_grad():
        return run_dit(model, torch.randn(2, 16, 3, 8, 8, generator=g), torch.rand(2, 3, generator=g),
                       torch.tensor([[1.0, 0, 0], [1, 1, 0]]), torch.randn(2, 4, c.text_embed_dim, generator=g))


def test_native_round_trip_gives_identical_outputs():
    source, native = _native_tiny()
    target = build_transformer(NetworkConfig.preset_config("tiny")).eval()
    skipped = load_native_into(target, native)
    assert sorted(skipped) == sorted(["net.pos_embedder.seq", "net.accum_iteration",
                                      "net.blocks.0.self_attn.q_proj._extra_state"])
    assert torch.equal(_outputs(target), _outputs(source))


def test_unknown_and_missing_native_keys_are_named():
    _, native = _native_tiny()
    native["net.blocks.0.self_attn.q_lora.weight"] = torch.zeros(3)
    with pytest.raises(ValueError, match="net.blocks.0.self_attn.q_lora.weight"):
        convert_native_state_dict(native)
    _, native = _native_tiny()
    del native["net.blocks.1.mlp.layer2.weight"]
    with pytest.raises(ValueError, match="transformer_blocks.1.ff.net.2.weight"):
        load_native_into(build_transformer(NetworkConfig.preset_config("tiny")), native)


def test_release_pt_loads_with_weights_only_and_refuses_objects(tmp_path):
    _, native = _native_tiny()
    del native["net.blocks.0.self_attn.q_proj._extra_state"]
    path = tmp_path / "model.pt"
    torch.save(native, path)
    loaded = load_release_state_dict(path)
    assert set(loaded) == set(native)
    native["net.blocks.0.self_attn.q_proj._extra_state"] = io.BytesIO(b"transformer-engine state")
    torch.save(native, tmp_path / "te.pt")
    state, skipped = convert_native_state_dict(load_release_state_dict(tmp_path / "te.pt"))
    assert "net.blocks.0.self_attn.q_proj._extra_state" in skipped
    assert "patch_embed.proj.weight" in state
    bad = tmp_path / "bad.pt"
    torch.save({"net.x": torch.zeros(1), "net.y._extra_state": _Opaque()}, bad)
    with pytest.raises(ValueError, match="refused"):
        load_release_state_dict(bad)


class _Opaque:
    pass


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_t5_pickle_imports_tensors_and_arrays_only(tmp_path):
    good = tmp_path / "t5.pkl"
    embedding = torch.randn(1, 6, 32)
    with good.open("wb") as f:
        pickle.dump({"pick up the cube": embedding[0, 1:], "open the drawer": np.ones((4, 32), np.float32)}, f)
    data = load_t5_pickle(good)
    assert torch.equal(data["pick up the cube"], embedding[0, 1:])
    assert torch.equal(data["open the drawer"], torch.ones(4, 32))
    cache = t5_pickle_to_cache(good, max_length=8)
    emb, mask = cache.get("open the drawer")
    assert emb.shape == (8, 32) and mask.tolist() == [True] * 4 + [False] * 4


def test_malicious_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    with evil.open("wb") as f:
        pickle.dump({"task": _Exploit(str(marker))}, f)
    with pytest.raises(ValueError, match="not allowed"):
        load_t5_pickle(evil)
    assert not marker.exists()
    not_a_dict = tmp_path / "list.pkl"
    with not_a_dict.open("wb") as f:
        pickle.dump([1, 2], f)
    with pytest.raises(ValueError, match="expected a dict"):
        load_t5_pickle(not_a_dict)


def test_import_release_checkpoint_writes_a_loadable_directory(tmp_path):
    import json

    from cosmos_policy.checkpoint import load_checkpoint
    from cosmos_policy.native_import import import_release_checkpoint

    source, native = _native_tiny(seed=2)
    del native["net.blocks.0.self_attn.q_proj._extra_state"]
    torch.save(native, tmp_path / "model.pt")
    with (tmp_path / "t5.pkl").open("wb") as f:
        pickle.dump({"fold the shirt": torch.randn(3, 32)}, f)
    stats = {"actions_min": [-1.0] * 14, "actions_max": [1.0] * 14, "proprio_min": [-1.0] * 14, "proprio_max": [1.0] * 14}
    (tmp_path / "stats.json").write_text(json.dumps(stats))
    out = import_release_checkpoint(tmp_path / "model.pt", tmp_path / "ckpt", layout="aloha",
                                    t5_pickle=tmp_path / "t5.pkl", statistics_path=tmp_path / "stats.json",
                                    network_preset="tiny")
    loaded = load_checkpoint(out, require_statistics=True, require_text=True)
    assert torch.equal(_outputs(loaded.model.dit.eval()), _outputs(source))
    assert "fold the shirt" in loaded.text_cache
    # the release's deploy values: 25 Hz, 10 action steps, the whole 50-step chunk, pause above 0.15 rad
    assert (loaded.deploy.control_hz, loaded.deploy.action_steps, loaded.deploy.execute_steps,
            loaded.deploy.max_joint_jump_rad) == (25.0, 10, 50, 0.15)
