"""ACT HDF5 episode round trips and the errors a broken file must give."""

import h5py
import numpy as np
import pytest

from cosmos_policy.data.act_episode import (
    Episode,
    EpisodeFileError,
    check_act_images,
    list_episode_files,
    read_act_episode,
    read_act_frames,
    write_act_episode,
)


def make_episode(steps=6, h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    cams = ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    # smooth images so that JPEG at quality 50 stays close to the original
    base = np.linspace(0, 255, w, dtype=np.float64)[None, :, None]
    images = {c: np.clip(base + 40 * i + rng.normal(0, 1, (steps, h, w, 3)), 0, 255).astype(np.uint8)
              for i, c in enumerate(cams)}
    return Episode(qpos=rng.normal(size=(steps, 14)).astype(np.float32),
                   qvel=rng.normal(size=(steps, 14)).astype(np.float32),
                   effort=rng.normal(size=(steps, 14)).astype(np.float32),
                   action=rng.normal(size=(steps, 14)).astype(np.float32),
                   images=images,
                   attrs={"sim": True, "success": True, "success_score": 0.75, "task_description": "pick cube"})


def test_raw_round_trip_is_exact(tmp_path):
    ep = make_episode()
    path = write_act_episode(tmp_path / "episode_0.hdf5", ep)
    back = read_act_episode(path)
    for key in ("qpos", "qvel", "effort", "action"):
        np.testing.assert_array_equal(getattr(back, key), getattr(ep, key))
    assert list(back.images) == list(ep.images)
    for cam in ep.images:
        np.testing.assert_array_equal(back.images[cam], ep.images[cam])
    assert back.attrs["success_score"] == 0.75 and back.attrs["task_description"] == "pick cube"
    assert back.attrs["sim"] is True or back.attrs["sim"] == 1
    assert not (tmp_path / "episode_0.hdf5.tmp").exists()


def test_jpeg_round_trip_keeps_camera_order_and_is_close(tmp_path):
    ep = make_episode()
    # camera order not alphabetical: compress_len rows must still match their camera
    ep.images = {k: ep.images[k] for k in ["cam_right_wrist", "cam_high", "cam_left_wrist"]}
    path = write_act_episode(tmp_path / "episode_1.hdf5", ep, compress=True)
    with h5py.File(path) as f:
        assert f["observations/images/cam_high"].ndim == 2 and f["compress_len"].shape == (3, 6)
    back = read_act_episode(path, cameras=["cam_left_wrist", "cam_high"])
    assert set(back.images) == {"cam_left_wrist", "cam_high"}
    for cam in back.images:
        err = np.abs(back.images[cam].astype(int) - ep.images[cam].astype(int)).mean()
        assert back.images[cam].shape == ep.images[cam].shape and err < 6, (cam, err)


def test_truncated_file_names_the_file(tmp_path):
    path = write_act_episode(tmp_path / "episode_2.hdf5", make_episode())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(EpisodeFileError, match="episode_2.hdf5"):
        read_act_episode(path)


def test_missing_dataset_and_camera_are_named(tmp_path):
    path = tmp_path / "episode_3.hdf5"
    with h5py.File(path, "w") as f:
        f.create_dataset("observations/qpos", data=np.zeros((3, 14)))
    with pytest.raises(EpisodeFileError, match="missing dataset"):
        read_act_episode(path)
    good = write_act_episode(tmp_path / "episode_4.hdf5", make_episode())
    with pytest.raises(EpisodeFileError, match="cam_low"):
        read_act_episode(good, cameras=["cam_low"])


def test_inconsistent_lengths_refused_before_writing(tmp_path):
    ep = make_episode()
    ep.action = ep.action[:-1]
    with pytest.raises(EpisodeFileError, match="action"):
        write_act_episode(tmp_path / "episode_5.hdf5", ep)
    assert not list(tmp_path.iterdir())


def test_listing_is_numeric_and_skips_temporaries(tmp_path):
    for i in (10, 2, 1):
        write_act_episode(tmp_path / f"episode_{i}.hdf5", make_episode(steps=2))
    (tmp_path / "episode_3.hdf5.tmp").write_bytes(b"partial")
    assert [p.name for p in list_episode_files(tmp_path)] == ["episode_1.hdf5", "episode_2.hdf5", "episode_10.hdf5"]


@pytest.mark.parametrize("compress", [False, True])
def test_frame_reader_returns_the_full_reads_rows(tmp_path, compress):
    ep = make_episode(steps=8)
    ep.images = {k: ep.images[k] for k in ["cam_right_wrist", "cam_high", "cam_left_wrist"]}
    path = write_act_episode(tmp_path / "episode_0.hdf5", ep, compress=compress)
    full = read_act_episode(path)
    steps = [5, 0, 5, 7]  # any order, repeats allowed
    got = read_act_frames(path, steps, ["cam_left_wrist", "cam_high"])
    assert list(got) == ["cam_left_wrist", "cam_high"]
    for cam, frames in got.items():
        assert frames.shape == (4, 24, 32, 3) and frames.dtype == np.uint8
        np.testing.assert_array_equal(frames, full.images[cam][steps])
    with h5py.File(path) as f:  # an open file works too
        np.testing.assert_array_equal(read_act_frames(f, [3], ["cam_high"])["cam_high"][0], full.images["cam_high"][3])


def test_frame_reader_errors_name_the_file(tmp_path):
    path = write_act_episode(tmp_path / "episode_6.hdf5", make_episode(steps=4), compress=True)
    with pytest.raises(EpisodeFileError, match="episode_6.hdf5.*cam_low"):
        read_act_frames(path, [0], ["cam_low"])
    with pytest.raises(EpisodeFileError, match=r"episode_6.hdf5.*outside 0..3"):
        read_act_frames(path, [4], ["cam_high"])
    with pytest.raises(EpisodeFileError, match="episode_7.hdf5: episode file not found"):
        read_act_frames(tmp_path / "episode_7.hdf5", [0], ["cam_high"])
    with h5py.File(path, "r+") as f:  # garbage where cam_high's JPEG bytes were
        f["observations/images/cam_high"][2] = 7
    with pytest.raises(EpisodeFileError, match="episode_6.hdf5:cam_high.*does not decode"):
        read_act_frames(path, [1, 2], ["cam_high"])
    assert read_act_frames(path, [1], ["cam_high"])["cam_high"].shape == (1, 24, 32, 3)  # other rows still read


def test_image_check_reads_metadata_only(tmp_path):
    path = write_act_episode(tmp_path / "episode_8.hdf5", make_episode(steps=4))
    with h5py.File(path) as f:
        check_act_images(f, ["cam_high", "cam_left_wrist"], 4)
        with pytest.raises(EpisodeFileError, match=r"episode_8.hdf5: images/cam_high has shape \(4, 24, 32, 3\)"):
            check_act_images(f, ["cam_high"], 5)
        with pytest.raises(EpisodeFileError, match="cam_low"):
            check_act_images(f, ["cam_low"], 4)
