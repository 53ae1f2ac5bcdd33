"""aloha_sim_demos writes ACT-layout episodes that read back through act_episode."""

import numpy as np

from aloha_sim.demos_cli import main
from aloha_sim.scripted import plan_episode
from aloha_sim.tasks import load_task
from cosmos_policy.data.act_episode import read_act_episode


def test_demo_cli_round_trip(tmp_path, capsys):
    out = tmp_path / "demos"
    rc = main(["--task", "transfer_cube", "--episodes", "1", "--out", str(out), "--seed-start", "5",
               "--image-size", "32x40", "--max-steps", "12", "--compress"])
    assert rc == 0
    episode = read_act_episode(out / "episode_0.hdf5")
    assert episode.qpos.shape == episode.action.shape == (12, 14)
    assert episode.qvel.shape == episode.effort.shape == (12, 14)
    assert sorted(episode.images) == ["cam_high", "cam_left_wrist", "cam_right_wrist"]
    assert episode.images["cam_high"].shape == (12, 32, 40, 3)
    attrs = episode.attrs
    assert attrs["sim"] is True or attrs["sim"] == 1
    assert attrs["compress"] in (True, 1)
    assert attrs["task"] == "transfer_cube" and attrs["seed"] == 5
    assert "cube" in attrs["task_description"]
    assert attrs["success"] in (False, 0) and 0.0 <= attrs["success_score"] < 1.0
    assert np.allclose(episode.qpos[0, [6, 13]], episode.qpos[0, 6])  # both grippers start alike
    task = load_task("transfer_cube")
    plan = plan_episode(task, task.sample_object_poses(5))
    assert np.allclose(episode.action, plan[:12], atol=1e-6)  # float32 in the file
    assert "success" in capsys.readouterr().out
    assert main(["--task", "transfer_cube", "--episodes", "1", "--out", str(out)]) == 2  # refuses to overwrite
