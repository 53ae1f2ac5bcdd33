"""The scoring page's HTTP API (FastAPI TestClient): listing, filters, frames, scoring, refusals, token."""

import os
from datetime import datetime, timezone
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
from fastapi.testclient import TestClient

from rollout_recorder import scoring_app
from rollout_recorder.episode_file import Episode, EpisodeWriter, read_act_episode, write_act_episode
from rollout_recorder.scoring_app import create_app, load_task_stages, main

TASKS_YAML = Path(__file__).resolve().parents[3] / "config" / "tasks.yaml"
LOCAL = "http://127.0.0.1:8765"
STEPS = 6


def make_episode(seed, **attrs):
    rng = np.random.default_rng(seed)
    return Episode(qpos=rng.normal(size=(STEPS, 14)).astype(np.float32), qvel=np.zeros((STEPS, 14), np.float32),
                   effort=np.zeros((STEPS, 14), np.float32), action=rng.normal(size=(STEPS, 14)).astype(np.float32),
                   images={"cam_high": rng.integers(0, 255, (STEPS, 8, 12, 3), dtype=np.uint8),
                           "cam_left_wrist": np.full((STEPS, 8, 12, 3), 40 * seed % 255, np.uint8)},
                   attrs=attrs)


def write(path, seed, mtime, *, compress=False, **attrs):
    write_act_episode(path, make_episode(seed, **attrs), compress=compress)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def folder(tmp_path):
    """Five episodes in two sub-folders: unscored real, sim-scored (JPEG), sim success, unknown task, broken."""
    root = tmp_path / "rollouts"
    t0 = 1_700_000_000
    write(root / "real" / "episode_0.hdf5", 1, t0, task="transfer_cube", task_description="pick it")
    write(root / "sim" / "episode_0.hdf5", 2, t0 + 10, compress=True, sim=True, task="transfer_cube",
          stage_score=50.0, success=False, success_score=0.5, stages_reached=["right_gripper_grasped", "lifted"],
          score_source="sim")
    write(root / "sim" / "episode_1.hdf5", 3, t0 + 20, sim=True, task="insertion", stage_score=100.0, success=True,
          success_score=1.0, score_source="sim")
    write(root / "real" / "episode_1.hdf5", 4, t0 + 30, task_description="fold the towel")
    (root / "real" / "episode_2.hdf5").write_bytes(b"not hdf5")
    os.utime(root / "real" / "episode_2.hdf5", (t0 + 5, t0 + 5))
    (root / "real" / "episode_3.hdf5.partial").write_bytes(b"recording")
    return root


@pytest.fixture
def client(folder):
    app = create_app(folder, tasks=load_task_stages(TASKS_YAML), scorer="tester",
                     allowed_hosts=list(scoring_app.LOOPBACK_NAMES))
    return TestClient(app, base_url=LOCAL)


def ids(response):
    assert response.status_code == 200, response.text
    return [e["id"] for e in response.json()["episodes"]]


def attrs_of(path):
    with h5py.File(path, "r") as f:
        return {k: scoring_app.attr_value(v) for k, v in f.attrs.items()}


def test_tasks_come_from_tasks_yaml():
    tasks = load_task_stages(TASKS_YAML)
    assert tasks["transfer_cube"].allowed_scores == [0, 25, 50, 75, 100]
    assert tasks["insertion"].stages_reached(50) == ["both_grasped", "both_lifted"]


def test_lists_every_episode_recursively_newest_first(client):
    response = client.get("/api/episodes")
    assert ids(response) == ["real/episode_1.hdf5", "sim/episode_1.hdf5", "sim/episode_0.hdf5",
                             "real/episode_2.hdf5", "real/episode_0.hdf5"]  # .partial never listed
    body = response.json()
    assert body["total"] == 5 and body["latest_id"] == "real/episode_1.hdf5"
    by_id = {e["id"]: e for e in body["episodes"]}
    assert by_id["sim/episode_0.hdf5"]["stage_score"] == 50 and by_id["sim/episode_0.hdf5"]["score_source"] == "sim"
    assert by_id["real/episode_0.hdf5"]["scored"] is False and by_id["real/episode_0.hdf5"]["steps"] == STEPS
    assert "not a readable HDF5 file" in by_id["real/episode_2.hdf5"]["error"]
    assert by_id["real/episode_1.hdf5"]["task"] is None  # its text matches no task of tasks.yaml


@pytest.mark.parametrize("query, expected", [
    ("task=transfer_cube", ["sim/episode_0.hdf5", "real/episode_0.hdf5"]),
    ("task=insertion", ["sim/episode_1.hdf5"]),
    ("task=unknown", ["real/episode_1.hdf5", "real/episode_2.hdf5"]),
    ("scored=scored", ["sim/episode_1.hdf5", "sim/episode_0.hdf5"]),
    ("scored=unscored", ["real/episode_1.hdf5", "real/episode_2.hdf5", "real/episode_0.hdf5"]),
    ("scored=operator", []),
    ("success=true", ["sim/episode_1.hdf5"]),
    ("success=false", ["sim/episode_0.hdf5"]),
    ("task=transfer_cube&scored=unscored", ["real/episode_0.hdf5"]),
])
def test_filters(client, query, expected):
    assert ids(client.get(f"/api/episodes?{query}")) == expected


@pytest.mark.parametrize("query", ["task=laundry", "scored=maybe", "success=yes", "limit=0"])
def test_bad_filters_are_422_with_a_message(client, query):
    response = client.get(f"/api/episodes?{query}")
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], str) and response.json()["detail"]


def test_follow_sees_a_new_episode_at_once(client, folder):
    assert client.get("/api/episodes").json()["latest_id"] == "real/episode_1.hdf5"
    with EpisodeWriter(folder / "live", {"cam_high": (8, 12)}, attrs={"task": "transfer_cube"},
                       reserve_bytes=0) as writer:
        writer.append(np.zeros(14), np.zeros(14), {"cam_high": np.zeros((8, 12, 3), np.uint8)})
        assert client.get("/api/episodes").json()["latest_id"] == "real/episode_1.hdf5"  # still recording
    body = client.get("/api/episodes").json()
    assert body["latest_id"] == "live/episode_0.hdf5" and body["episodes"][0]["id"] == "live/episode_0.hdf5"


def test_a_symlink_out_of_the_folder_is_not_served(client, folder, tmp_path):
    outside = write(tmp_path / "elsewhere" / "episode_7.hdf5", 7, 1_700_000_100, task="transfer_cube")
    (folder / "real" / "episode_7.hdf5").symlink_to(outside)
    assert "real/episode_7.hdf5" not in ids(client.get("/api/episodes"))
    assert client.get("/api/episode", params={"id": "real/episode_7.hdf5"}).status_code == 404
    assert client.post("/api/score", json={"id": "real/episode_7.hdf5", "score": 25,
                                           "scorer": "a"}).status_code == 404


def test_episode_detail_for_the_plot(client, folder):
    response = client.get("/api/episode", params={"id": "sim/episode_0.hdf5"})
    assert response.status_code == 200
    ep = response.json()
    source = read_act_episode(folder / "sim" / "episode_0.hdf5", load_images=False)
    np.testing.assert_allclose(np.array(ep["qpos"]), source.qpos, atol=1e-4)
    assert ep["joint_labels"][0] == "left_waist" and ep["joint_labels"][13] == "right_gripper"
    assert ep["cameras"] == ["cam_high", "cam_left_wrist"] and ep["attrs"]["score_source"] == "sim"


@pytest.mark.parametrize("episode", ["real/episode_0.hdf5", "sim/episode_0.hdf5"])  # raw, then JPEG-compressed
def test_frames_per_camera_and_step(client, folder, episode):
    source = read_act_episode(folder / episode)
    for cam in ("cam_high", "cam_left_wrist"):
        response = client.get("/api/frame", params={"id": episode, "cam": cam, "step": 3, "fmt": "png"})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        bgr = cv2.imdecode(np.frombuffer(response.content, np.uint8), cv2.IMREAD_COLOR)
        np.testing.assert_array_equal(bgr[..., ::-1], source.images[cam][3])  # png: exactly the reader's frame
    jpeg = client.get("/api/frame", params={"id": episode, "cam": "cam_left_wrist", "step": 0})
    assert jpeg.status_code == 200 and jpeg.headers["content-type"] == "image/jpeg"
    assert jpeg.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("params, status, words", [
    ({"id": "sim/episode_0.hdf5", "cam": "cam_high", "step": STEPS}, 422, "outside 0..5"),
    ({"id": "sim/episode_0.hdf5", "cam": "cam_high", "step": -1}, 422, "step"),
    ({"id": "sim/episode_0.hdf5", "cam": "cam_top", "step": 0}, 404, "camera 'cam_top' not in"),
    ({"id": "../rollouts/sim/episode_0.hdf5", "cam": "cam_high", "step": 0}, 404, "not found"),
    ({"id": "/etc/passwd", "cam": "cam_high", "step": 0}, 404, "not found"),
    ({"id": "real/episode_3.hdf5.partial", "cam": "cam_high", "step": 0}, 404, "not found"),
    ({"id": "sim/episode_0.hdf5", "cam": "cam_high", "step": 0, "fmt": "gif"}, 422, "fmt"),
])
def test_bad_frame_requests(client, params, status, words):
    response = client.get("/api/frame", params=params)
    assert response.status_code == status and words in response.json()["detail"]


def test_operator_score_is_written_into_the_file(client, folder):
    path = folder / "real" / "episode_0.hdf5"
    before = read_act_episode(path)
    t0 = datetime.now(timezone.utc).replace(microsecond=0)
    response = client.post("/api/score", json={"id": "real/episode_0.hdf5", "score": 50, "scorer": "alice",
                                               "notes": "dropped it at the handover"})
    assert response.status_code == 200, response.text
    assert response.json()["stage_score"] == 50 and response.json()["score_source"] == "operator"
    a = attrs_of(path)
    assert a["stage_score"] == 50.0 and a["success"] is False and a["success_score"] == 0.5
    assert a["stages_reached"] == ["right_gripper_grasped", "lifted"]
    assert a["score_source"] == "operator" and a["scored_by"] == "alice"
    assert a["score_notes"] == "dropped it at the handover"
    assert t0 <= datetime.fromisoformat(a["scored_at"]) <= datetime.now(timezone.utc)
    assert "sim_stage_score" not in a  # there was no automatic score to keep
    after = read_act_episode(path)  # everything else is byte for byte what it was
    np.testing.assert_array_equal(after.qpos, before.qpos)
    np.testing.assert_array_equal(after.images["cam_high"], before.images["cam_high"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["episode_0.hdf5", "episode_1.hdf5", "episode_2.hdf5",
                                                             "episode_3.hdf5.partial"]  # no temporary left
    full = client.post("/api/score", json={"id": "real/episode_0.hdf5", "score": 100, "scorer": "bob"})
    assert full.status_code == 200 and attrs_of(path)["success"] is True and attrs_of(path)["scored_by"] == "bob"
    listed = {e["id"]: e for e in client.get("/api/episodes?scored=operator").json()["episodes"]}
    assert listed["real/episode_0.hdf5"]["stage_score"] == 100
    # newest-first order is the recording order, not the scoring time
    assert ids(client.get("/api/episodes"))[-1] == "real/episode_0.hdf5"


def test_overriding_a_sim_score_keeps_the_original(client, folder):
    path = folder / "sim" / "episode_0.hdf5"
    for score in (75, 25):
        assert client.post("/api/score", json={"id": "sim/episode_0.hdf5", "score": score,
                                               "scorer": "carol"}).status_code == 200
    a = attrs_of(path)
    assert a["stage_score"] == 25.0 and a["score_source"] == "operator"
    assert a["sim_stage_score"] == 50.0 and a["sim_success"] is False and a["sim_success_score"] == 0.5
    assert a["sim_stages_reached"] == ["right_gripper_grasped", "lifted"] and a["sim_score_source"] == "sim"
    frames = read_act_episode(path).images["cam_high"]  # JPEG frames still decode
    assert frames.shape == (STEPS, 8, 12, 3)


def test_notes_alone(client, folder):
    response = client.post("/api/notes", json={"id": "sim/episode_1.hdf5", "notes": "camera bumped", "scorer": "dan"})
    assert response.status_code == 200
    a = attrs_of(folder / "sim" / "episode_1.hdf5")
    assert a["score_notes"] == "camera bumped" and a["notes_by"] == "dan" and a["stage_score"] == 100.0


def test_an_episode_of_unknown_task_needs_the_task_chosen(client, folder):
    request = {"id": "real/episode_1.hdf5", "score": 25, "scorer": "erin"}
    refused = client.post("/api/score", json=request)
    assert refused.status_code == 422 and "task is unknown" in refused.json()["detail"]
    assert client.post("/api/score", json={**request, "task": "laundry"}).status_code == 422
    assert client.post("/api/score", json={**request, "task": "insertion"}).status_code == 200
    a = attrs_of(folder / "real" / "episode_1.hdf5")
    assert a["task"] == "insertion" and a["stages_reached"] == ["both_grasped"]
    wrong = client.post("/api/score", json={"id": "sim/episode_1.hdf5", "score": 25, "scorer": "x",
                                            "task": "transfer_cube"})
    assert wrong.status_code == 422 and "'insertion' episode" in wrong.json()["detail"]


@pytest.mark.parametrize("body, status, words", [
    ({"id": "sim/episode_0.hdf5", "score": 30, "scorer": "a"}, 422, "allowed: 0, 25, 50, 75, 100"),
    ({"id": "sim/episode_0.hdf5", "score": 150, "scorer": "a"}, 422, "score"),
    ({"id": "sim/episode_0.hdf5", "score": "high", "scorer": "a"}, 422, "score"),
    ({"id": "sim/episode_0.hdf5", "score": 50}, 422, "scorer: Field required"),
    ({"id": "sim/episode_0.hdf5", "score": 50, "scorer": "   "}, 422, "scorer"),
    ({"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a\nb"}, 422, "control characters"),
    ({"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a", "admin": True}, 422, "admin"),
    ({"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a", "notes": "x" * 4001}, 422, "notes"),
    ({"id": "sim/missing.hdf5", "score": 50, "scorer": "a"}, 404, "not found"),
    ({"id": "real/episode_2.hdf5", "score": 50, "scorer": "a"}, 409, "not a readable HDF5 file"),
])
def test_malformed_scores_are_refused_and_leave_the_file_alone(client, folder, body, status, words):
    path = folder / "sim" / "episode_0.hdf5"
    before = path.stat()
    response = client.post("/api/score", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("content, headers, status, words", [
    (b"{not json", {"content-type": "application/json"}, 422, "not valid JSON"),
    (b'["a list"]', {"content-type": "application/json"}, 422, "valid dictionary"),
    (b'{"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a"}', {"content-type": "text/plain"}, 415,
     "application/json"),
    (b'{"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a"}', {}, 415, "application/json"),
    (b"{" + b" " * 20_000 + b"}", {"content-type": "application/json"}, 413, "too large"),
])
def test_bad_bodies(client, content, headers, status, words):
    response = client.post("/api/score", content=content, headers=headers)
    assert response.status_code == status and words in response.json()["detail"]


def test_oversized_streamed_body_without_length_is_413(client, folder):
    def chunks():
        for _ in range(40):
            yield b" " * 1024

    response = client.post("/api/score", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413 and "16384 bytes" in response.json()["detail"]


def test_cross_site_requests_refused(client):
    evil = client.post("/api/score", json={"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a"},
                       headers={"origin": "http://evil.example"})
    assert evil.status_code == 403
    rebound = client.get("/api/episodes", headers={"host": "evil.example:8765"})  # DNS rebinding
    assert rebound.status_code == 400 and "not served" in rebound.json()["detail"]
    assert client.get("/api/episodes", headers={"host": "localhost:8765"}).status_code == 200


def test_token_required_when_given(folder):
    token = "s3cret-token-123"
    app = create_app(folder, tasks=load_task_stages(TASKS_YAML), token=token)
    remote = TestClient(app, base_url="http://192.168.1.20:8765")
    refused = remote.get("/api/episodes")
    assert refused.status_code == 401 and "token required" in refused.json()["detail"]
    assert remote.get("/").status_code == 401 and remote.get("/static/scoring.js").status_code == 401
    assert remote.get("/api/episodes", headers={"x-scoring-token": "wrong-token-000"}).status_code == 401
    assert remote.post("/api/score", json={"id": "sim/episode_0.hdf5", "score": 50,
                                           "scorer": "a"}).status_code == 401
    assert remote.get("/api/episodes", headers={"x-scoring-token": token}).status_code == 200
    login = remote.get(f"/?token={token}", follow_redirects=False)  # the address printed at start-up
    assert login.status_code == 303 and login.headers["location"] == "/"
    assert remote.get("/").status_code == 200  # the cookie from the redirect now carries the token
    assert remote.post("/api/score", json={"id": "sim/episode_0.hdf5", "score": 50, "scorer": "a"}).status_code == 200


@pytest.mark.parametrize("argv, words", [
    (["--host", "0.0.0.0"], "also give --token"),
    (["--host", "192.168.1.20"], "also give --token"),
    (["--host", "0.0.0.0", "--token", "short"], "at least 12 characters"),
    (["--tasks", "/nonexistent/tasks.yaml"], "tasks file not found"),
])
def test_main_refuses_to_start(folder, monkeypatch, capsys, argv, words):
    import uvicorn

    monkeypatch.delenv("ROLLOUT_SCORING_TOKEN", raising=False)
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("server started"))
    assert main([str(folder), *argv]) == 2
    assert words in capsys.readouterr().err


def test_main_serves_public_host_only_with_token(folder, monkeypatch, capsys):
    import uvicorn

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **kw: served.update(app=app, host=host, port=port))
    assert main([str(folder), "--host", "0.0.0.0", "--port", "9001", "--token", "abcdefghijkl",
                 "--tasks", str(TASKS_YAML)]) == 0
    assert served["host"] == "0.0.0.0" and served["port"] == 9001
    assert "?token=abcdefghijkl" in capsys.readouterr().out
    assert TestClient(served["app"], base_url="http://10.0.0.5:9001").get("/api/config").status_code == 401
    assert main([str(folder), "--tasks", str(TASKS_YAML)]) == 0 and served["host"] == "127.0.0.1"


def test_listing_reopens_only_changed_files(client, folder, monkeypatch):
    client.get("/api/episodes")
    opened = []
    real = scoring_app.open_episode_file
    monkeypatch.setattr(scoring_app, "open_episode_file",
                        lambda p: opened.append(Path(p).relative_to(folder).as_posix()) or real(p))
    client.get("/api/episodes")
    assert opened == []
    assert client.post("/api/score", json={"id": "sim/episode_1.hdf5", "score": 75, "scorer": "a"}).status_code == 200
    client.get("/api/episodes")
    assert set(opened) == {"sim/episode_1.hdf5"}  # only the rescored file was read again
