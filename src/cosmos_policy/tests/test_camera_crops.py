"""Camera regions of interest (`--camera-crop`): the same part of the frame in VAE pretraining, training and
inference, carried by the checkpoint, and refused where it would not match."""

import json

import numpy as np
import pytest
import torch
from data_synthetic import write_synthetic_episodes
from tiny_model import observation, tiny_model, write_checkpoint

from cosmos_policy.checkpoint import load_checkpoint
from cosmos_policy.cli import main
from cosmos_policy.config import LayoutConfig, NetworkConfig, load_layout, parse_camera_crops
from cosmos_policy.data.augment import crop_region, prepare_observation_image
from cosmos_policy.data.datasets import EpisodeDataset, SampleSpec, compute_dataset_statistics, load_episodes
from cosmos_policy.data.statistics import statistics_from_dict
from cosmos_policy.data.text import build_text_cache
from cosmos_policy.policy import CosmosPolicy
from cosmos_policy.vae_pretrain import load_frame_pool

BOX = (0.25, 0.5, 0.5, 0.25)  # rows 24-72 and columns 64-96 of a 96 x 128 frame


def _marked_frame() -> np.ndarray:
    """A grey 96 x 128 frame, a red block inside BOX and a blue one outside it."""
    frame = np.full((96, 128, 3), 100, np.uint8)
    frame[40:50, 70:80] = (255, 0, 0)
    frame[5:15, 5:15] = (0, 0, 255)
    return frame


def test_the_region_is_the_named_fraction_of_the_frame_and_keeps_what_lies_in_it():
    frame = _marked_frame()
    region = crop_region(frame, BOX)
    assert region.shape == (48, 32, 3)
    np.testing.assert_array_equal(region, frame[24:72, 64:96])
    assert (region == (255, 0, 0)).all(axis=-1).sum() == 100 and not (region == (0, 0, 255)).all(axis=-1).any()
    assert crop_region(frame, None) is frame
    batch = np.stack([frame, frame])[None]  # any leading dims
    assert crop_region(batch, BOX).shape == (1, 2, 48, 32, 3)
    assert crop_region(frame, (0.0, 0.0, 0.001, 0.001)).shape == (1, 1, 3)  # never empty


def test_the_cropped_view_enlarges_a_small_object_in_the_model_input():
    frame = _marked_frame()
    whole = prepare_observation_image(frame, (32, 32))
    cropped = prepare_observation_image(frame, (32, 32), region=BOX)

    def red(image: torch.Tensor) -> int:  # pixels of the red block, in the model's [-1, 1] range
        return int(((image[0] > 0.5) & (image[2] < -0.5)).sum())

    def blue(image: torch.Tensor) -> int:
        return int(((image[2] > 0.5) & (image[0] < -0.5)).sum())

    assert red(cropped) > 3 * red(whole) > 0
    assert blue(whole) > 0 and blue(cropped) == 0


@pytest.mark.parametrize("text, message", [
    ("cam_high", "expected CAMERA=TOP,LEFT,HEIGHT,WIDTH"),
    ("cam_high=0.1,0.2,0.3", "expected CAMERA=TOP,LEFT,HEIGHT,WIDTH"),
    ("cam_high=a,b,c,d", "expected CAMERA=TOP,LEFT,HEIGHT,WIDTH"),
    ("cam_high=0.6,0.0,0.5,0.5", "not a region inside the frame"),
    ("cam_high=0.0,0.0,0.0,0.5", "not a region inside the frame"),
])
def test_a_malformed_crop_is_refused_with_the_expected_form(text, message):
    with pytest.raises(ValueError, match=message) as caught:
        parse_camera_crops([text])
    assert text.split("=")[0] in str(caught.value)


def test_the_layout_carries_its_crops_through_its_dict_and_refuses_an_unknown_camera():
    layout = load_layout("aloha")
    assert layout.camera_crops == () and layout.crop_box("cam_high") is None
    cropped = LayoutConfig.from_dict({**layout.to_dict(), "camera_crops": {"cam_high": list(BOX)}})
    assert cropped.crop_box("cam_high") == BOX and cropped.crop_box("cam_left_wrist") is None
    assert LayoutConfig.from_dict(json.loads(json.dumps(cropped.to_dict()))) == cropped
    legacy = {k: v for k, v in layout.to_dict().items() if k != "camera_crops"}  # checkpoints from before crops
    assert LayoutConfig.from_dict(legacy).camera_crops == ()
    with pytest.raises(ValueError, match="'cam_low', not one of"):
        LayoutConfig.from_dict({**layout.to_dict(), "camera_crops": {"cam_low": list(BOX)}})
    with pytest.raises(ValueError, match="twice"):
        parse_camera_crops(["cam_high=0,0,1,1", "cam_high=0,0,0.5,0.5"])


def test_training_items_see_the_region_of_interest(tmp_path):
    files = write_synthetic_episodes(tmp_path / "demos", count=2, steps=12, image_hw=(96, 128))
    layout = load_layout("aloha")
    network = NetworkConfig.preset_config("tiny")
    items = {}
    for name, crops in (("whole", ()), ("cropped", (("cam_high", BOX),))):
        spec = SampleSpec.from_configs(LayoutConfig.from_dict({**layout.to_dict(),
                                                               "camera_crops": dict(crops)}), network)
        demos = load_episodes(files, spec, is_demo=True)
        cache = build_text_cache({e.task for e in demos}, spec.text_dim, max_length=spec.text_max_tokens)
        dataset = EpisodeDataset(demos, spec, statistics_from_dict(compute_dataset_statistics(files)), cache,
                                 augment=False, seed=3)
        items[name] = dataset[0]["images"]
    cam_high = layout.cameras.index("cam_high")
    others = [i for i in range(len(layout.cameras)) if i != cam_high]
    torch.testing.assert_close(items["whole"][others], items["cropped"][others])  # only cam_high is cropped
    assert float((items["whole"][cam_high] - items["cropped"][cam_high]).abs().mean()) > 0.01


def test_the_vae_pretrains_on_the_region_of_interest(tmp_path):
    files = write_synthetic_episodes(tmp_path / "demos", count=2, steps=6, image_hw=(96, 128))
    cams = ["cam_high", "cam_left_wrist"]
    whole = load_frame_pool(files, cams, 32, 3, np.random.default_rng(0))
    cropped = load_frame_pool(files, cams, 32, 3, np.random.default_rng(0), {"cam_high": BOX})
    assert cropped.cameras == whole.cameras and cropped.frames.shape == whole.frames.shape
    high = np.array([c == "cam_high" for c in whole.cameras])
    np.testing.assert_array_equal(cropped.frames[~high], whole.frames[~high])
    assert np.abs(cropped.frames[high].astype(int) - whole.frames[high]).mean() > 5


def test_inference_crops_as_the_checkpoint_says(tmp_path):
    model = tiny_model(seed=3)
    model.layout = LayoutConfig.from_dict({**model.layout.to_dict(), "camera_crops": {"cam_high": list(BOX)},
                                           "camera_hw": [96, 128]})
    write_checkpoint(tmp_path / "cropped", model)
    policy = CosmosPolicy.from_checkpoint(tmp_path / "cropped")
    assert policy.layout.crop_box("cam_high") == BOX
    obs = observation(policy.layout)
    obs["images"] = {cam: _marked_frame() for cam in policy.layout.cameras}
    prepared = policy.prepare(obs)
    size = model.network_config.image_size_px
    expected = prepare_observation_image(_marked_frame(), (size, size), region=BOX)
    whole = prepare_observation_image(_marked_frame(), (size, size))
    flat = prepared.images.reshape(-1, *expected.shape)
    cam_high = list(policy.layout.cameras).index("cam_high")
    torch.testing.assert_close(flat[cam_high], expected)
    torch.testing.assert_close(flat[0], whole)


@pytest.mark.slow
def test_the_crop_goes_from_pretrain_vae_into_the_checkpoint_and_a_mismatch_is_refused(tmp_path, capsys):
    data = tmp_path / "demos" / "fold_shirt"
    write_synthetic_episodes(data, count=3, steps=8, image_hw=(96, 128))
    crop = ["--camera-crop", "cam_high=0.25,0.5,0.5,0.25"]
    vae_out = tmp_path / "vae"
    assert main(["pretrain-vae", "--data", str(data), "--network", "tiny", "--out", str(vae_out), "--steps", "2",
                 "--batch-size", "2", "--frames-per-episode", "2", "--no-progress", *crop]) == 0
    assert json.loads((vae_out / "vae_pretrain.json").read_text())["camera_crops"] == {"cam_high": list(BOX)}
    train = ["train", "--data", str(tmp_path / "demos"), "--network", "tiny", "--vae-dir", str(vae_out),
             "--steps", "1", "--batch-size", "2", "--warmup-steps", "1", "--no-progress"]
    capsys.readouterr()
    # the frozen VAE knows only the view it was pretrained on: whole frames are refused, with the fix
    assert main(train + ["--out", str(tmp_path / "whole")]) == 2
    assert "pass the same --camera-crop" in capsys.readouterr().err and not (tmp_path / "whole").exists()
    assert main(train + ["--out", str(tmp_path / "ckpt"), *crop]) == 0
    loaded = load_checkpoint(tmp_path / "ckpt")
    assert loaded.layout.crop_box("cam_high") == BOX
    # a fine-tune keeps the checkpoint's crop; another one is refused
    capsys.readouterr()
    assert main(["train", "--init-checkpoint", str(tmp_path / "ckpt"), "--data", str(tmp_path / "demos"),
                 "--steps", "1", "--out", str(tmp_path / "ft"), "--camera-crop", "cam_high=0,0,1,1"]) == 2
    assert "drop --camera-crop" in capsys.readouterr().err
