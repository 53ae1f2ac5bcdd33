"""Damaged checkpoint files give one clear error naming the file and the fix, never a raw library error."""

from __future__ import annotations

import os
import shutil

import pytest
import torch
from tiny_model import tiny_model, write_checkpoint

from cosmos_policy.checkpoint import CONFIG_FILE, MODEL_FILE, CheckpointFileError, load_checkpoint
from cosmos_policy.config import SamplerConfig
from cosmos_policy.native_import import load_release_state_dict


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return write_checkpoint(tmp_path_factory.mktemp("ckpt"), tiny_model(seed=1).eval(), SamplerConfig(action_steps=5))


@pytest.fixture
def copy(good, tmp_path):
    return shutil.copytree(good, tmp_path / "ckpt")


def test_truncated_model_safetensors_is_named(copy):
    weights = copy / MODEL_FILE
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointFileError, match=r"model\.safetensors .*not a readable safetensors file.*truncated"):
        load_checkpoint(copy)


def test_empty_model_safetensors_is_named(copy):
    (copy / MODEL_FILE).write_bytes(b"")
    with pytest.raises(CheckpointFileError, match=r"model\.safetensors is empty"):
        load_checkpoint(copy)


@pytest.mark.parametrize("text", ['{"format": "cosmos_policy.checkpoint/1", "network": {', "", "[1, 2]"])
def test_broken_config_json_is_named(copy, text):
    (copy / CONFIG_FILE).write_text(text)
    with pytest.raises(CheckpointFileError, match=r"config\.json"):
        load_checkpoint(copy)


def test_broken_config_json_error_says_where(copy):
    (copy / CONFIG_FILE).write_text('{"format": "cosmos_policy.checkpoint/1",\n "network": {,}}')
    with pytest.raises(CheckpointFileError, match=r"not valid JSON .* line 2 column"):
        load_checkpoint(copy)


def test_empty_pt_is_named(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"model\.pt: release checkpoint is empty"):
        load_release_state_dict(path)


def test_truncated_pt_is_named(tmp_path):
    path = tmp_path / "model.pt"
    torch.save({"net.x": torch.zeros(64)}, path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=r"model\.pt: not a readable PyTorch checkpoint.*truncated") as info:
        load_release_state_dict(path)
    assert "weights_only" not in str(info.value)


def test_truncated_release_safetensors_is_named(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / "model.safetensors"
    save_file({"net.x": torch.zeros(64)}, str(path))
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(ValueError, match=r"release checkpoint: .*model\.safetensors .*truncated"):
        load_release_state_dict(path)


class _RunsCode:
    def __reduce__(self):
        return (os.getcwd, ())


def test_pickle_refusal_does_not_pass_on_the_weights_only_false_hint(tmp_path):
    path = tmp_path / "release.pt"
    torch.save({"net.x": torch.zeros(2), "code": _RunsCode()}, path)
    with pytest.raises(ValueError, match="refused") as info:
        load_release_state_dict(path)
    text = str(info.value)
    assert "weights_only=False" not in text and "weights_only` set to `False`" not in text, text
    assert "trusted source" not in text and ("posix" in text or "getcwd" in text), text
