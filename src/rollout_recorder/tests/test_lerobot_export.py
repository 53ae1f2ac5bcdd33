"""Export to LeRobot (rollout_recorder.lerobot_export) on tiny synthetic episodes.

The export runs in the optional LeRobot environment (.venv-lerobot, scripts/setup_lerobot.sh); these tests are
skipped where it is not built. The episodes are written here with the product's own episode writer.
"""

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from rollout_recorder.episode_file import Episode, write_act_episode

ROOT = Path(__file__).resolve().parents[3]
LEROBOT_PYTHON = Path(os.environ.get("LEROBOT_PYTHON", ROOT / ".venv-lerobot" / "bin" / "python"))
pytestmark = pytest.mark.skipif(not LEROBOT_PYTHON.exists(),
                                reason=f"{LEROBOT_PYTHON} not found (optional: ./scripts/setup_lerobot.sh)")

CAMS = ("cam_high", "cam_left_wrist", "cam_right_wrist")
H, W = 12, 16


def synthetic_episode(steps: int, offset: float, task: str, description: str) -> Episode:
    t = np.arange(steps, dtype=np.float32)[:, None]
    qpos = offset + 0.01 * t + np.arange(14, dtype=np.float32)[None] * 0.1
    images = {cam: np.stack([np.full((H, W, 3), (10 * k + 3 * i + int(offset)) % 256, np.uint8) for k in range(steps)])
              for i, cam in enumerate(CAMS)}
    return Episode(qpos=qpos, qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos), action=qpos + 0.5, images=images,
                   attrs={"task": task, "task_description": description, "seed": int(offset), "sim": True})


def run_lerobot(code: str, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run([str(LEROBOT_PYTHON), "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def export(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(ROOT / "scripts" / "export_lerobot.sh"), *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "LEROBOT_PYTHON": str(LEROBOT_PYTHON)})


READ_BACK = r"""
import json, sys
import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset
ds = LeRobotDataset(sys.argv[1], root=sys.argv[2])
rows = []
for i in range(len(ds)):
    item = ds[i]
    rows.append({"episode": int(item["episode_index"]), "frame": int(item["frame_index"]), "task": item["task"],
                 "state": item["observation.state"].tolist(), "action": item["action"].tolist(),
                 "pixel": {k.split(".")[-1]: round(float(item[k][0, 0, 0]) * 255) for k in ds.meta.camera_keys},
                 "image_shape": list(item["observation.images.cam_high"].shape)})
print(json.dumps({"fps": ds.fps, "num_episodes": ds.num_episodes, "features": sorted(ds.features),
                  "tasks": list(ds.meta.tasks.index), "rows": rows}))
"""


def test_export_round_trip(tmp_path):
    src = tmp_path / "episodes"
    write_act_episode(src / "episode_0.hdf5", synthetic_episode(6, 0.0, "transfer_cube", "Pick up the cube."))
    write_act_episode(src / "episode_1.hdf5", synthetic_episode(4, 2.0, "transfer_cube", "Pick up the cube."),
                      compress=True)
    other = tmp_path / "other"
    write_act_episode(other / "episode_0.hdf5", synthetic_episode(3, 4.0, "insertion", "Insert the peg."))
    out = tmp_path / "lerobot" / "tiny"
    proc = export(str(src), str(other), "--out", str(out))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 3 episodes, 13 frames" in proc.stdout

    data = json.loads(run_lerobot(READ_BACK, "local/tiny", str(out)).strip().splitlines()[-1])
    assert data["fps"] == 50 and data["num_episodes"] == 3
    assert {"observation.state", "action", *(f"observation.images.{c}" for c in CAMS)} <= set(data["features"])
    assert sorted(data["tasks"]) == ["Insert the peg.", "Pick up the cube."]
    rows = data["rows"]
    assert [r["episode"] for r in rows] == [0] * 6 + [1] * 4 + [2] * 3
    first = synthetic_episode(6, 0.0, "", "")
    np.testing.assert_allclose(rows[5]["state"], first.qpos[5], atol=1e-6)
    np.testing.assert_allclose(rows[5]["action"], first.action[5], atol=1e-6)
    assert rows[5]["image_shape"] == [3, H, W]  # channel first, float in [0, 1]
    assert rows[5]["pixel"]["cam_right_wrist"] == (10 * 5 + 3 * 2) % 256  # lossless (PNG) frames
    assert rows[6]["task"] == "Pick up the cube." and rows[-1]["task"] == "Insert the peg."
    assert abs(rows[7]["pixel"]["cam_high"] - (10 * 1 + 2)) <= 3  # JPEG episode decoded (lossy)
    meta = json.loads((out / "meta" / "aloha_export.json").read_text())
    assert meta["task_names"] == {"Pick up the cube.": "transfer_cube", "Insert the peg.": "insertion"}
    assert [e["seed"] for e in meta["episodes_detail"]] == [0, 2, 4]


def test_export_refuses_existing_output_and_mismatched_cameras(tmp_path):
    src = tmp_path / "episodes"
    write_act_episode(src / "episode_0.hdf5", synthetic_episode(3, 0.0, "transfer_cube", "Pick up the cube."))
    bad = synthetic_episode(3, 1.0, "transfer_cube", "Pick up the cube.")
    del bad.images["cam_left_wrist"]
    write_act_episode(src / "episode_1.hdf5", bad)
    out = tmp_path / "out"
    out.mkdir()
    proc = export(str(src), "--out", str(out))
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = export(str(src), "--out", str(out), "--overwrite")
    assert proc.returncode == 2 and "cam_left_wrist" in proc.stderr and "episode_1.hdf5" in proc.stderr
