"""The scoring page end to end in headless Chromium (Debian's chromium + chromedriver, driven by Selenium).

Open an episode, scrub it, score it with a click and with a key, follow a new episode, and check the file.
Chromium comes from scripts/setup_browser.sh (called by scripts/setup.sh); without it this test fails,
on purpose: a browser test that skips itself would hide a broken set-up in CI.
"""

import os
import shutil
import socket
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from rollout_recorder.episode_file import Episode, attr_value, write_act_episode
from rollout_recorder.scoring_app import LOOPBACK_NAMES, create_app, load_task_stages

TASKS_YAML = Path(__file__).resolve().parents[3] / "config" / "tasks.yaml"
CHROMIUM = os.environ.get("CHROMIUM_BINARY", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
SETUP_HINT = "run scripts/setup_browser.sh (apt chromium + chromium-driver, pip selenium)"
STEPS = 8
WAIT_S = 20


def make_episode(seed, **attrs):
    rng = np.random.default_rng(seed)
    qpos = np.cumsum(rng.normal(scale=0.05, size=(STEPS, 14)), axis=0).astype(np.float32)
    frames = np.stack([np.full((24, 32, 3), 20 * t + seed, np.uint8) for t in range(STEPS)])
    return Episode(qpos=qpos, qvel=np.zeros_like(qpos), effort=np.zeros_like(qpos), action=qpos.copy(),
                   images={"cam_high": frames, "cam_left_wrist": frames[:, ::-1].copy()}, attrs=attrs)


def file_attrs(path):
    with h5py.File(path, "r") as f:
        return {k: attr_value(v) for k, v in f.attrs.items()}


def wait_for(condition, what, timeout_s=WAIT_S):
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            value = condition()
        except (StaleElementReferenceException, NoSuchElementException):  # the page redrew meanwhile
            value = None
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def click(driver, by, selector):
    """Click the element, finding it again if the page redrew it between the lookup and the click (the list
    refreshes on a timer: measured in CI as a StaleElementReferenceException on a loaded machine)."""
    def attempt():
        driver.find_element(by, selector).click()
        return True
    wait_for(attempt, f"a clickable {selector}")


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "rollouts"
    t0 = time.time() - 3600
    for i, (name, attrs, compress) in enumerate([
        ("real/episode_0.hdf5", {"task": "transfer_cube"}, False),
        ("sim/episode_0.hdf5", {"task": "insertion", "sim": True, "stage_score": 50.0, "success": False,
                                "success_score": 0.5, "score_source": "sim"}, True),
    ]):
        path = write_act_episode(root / name, make_episode(i, **attrs), compress=compress)
        os.utime(path, (t0 + 60 * i, t0 + 60 * i))
    broken = root / "real" / "episode_9.hdf5"  # listed as unreadable, must not break the page
    broken.write_bytes(b"cut short")
    os.utime(broken, (t0 - 60, t0 - 60))
    return root


@pytest.fixture
def server(folder):
    app = create_app(folder, tasks=load_task_stages(TASKS_YAML), scorer="", poll_s=0.3,
                     allowed_hosts=list(LOOPBACK_NAMES))
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, "the scoring server to start")
    yield f"http://127.0.0.1:{port}/"
    srv.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail(f"selenium is not installed: {SETUP_HINT}")
    for binary in (CHROMIUM, CHROMEDRIVER):
        if not (Path(binary).is_file() or shutil.which(binary)):
            pytest.fail(f"{binary} not found: {SETUP_HINT}")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # the system chromedriver, so Selenium Manager never tries to download one
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT_S)
    yield driver
    driver.quit()


def test_score_an_episode_by_click_and_by_key(server, folder, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    d = browser
    d.get(server)
    wait_for(lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    items = d.find_elements(By.CSS_SELECTOR, "#episodes li")
    assert [li.get_attribute("data-id") for li in items] == ["sim/episode_0.hdf5", "real/episode_0.hdf5",
                                                             "real/episode_9.hdf5"]
    assert "unreadable" in items[2].text
    # newest first, opened at once; the sim score is shown and marked
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "sim/episode_0.hdf5", "the newest episode to open")
    assert "from the simulator" in d.find_element(By.ID, "score-info").text

    click(d, By.CSS_SELECTOR, "#episodes li[data-id='real/episode_0.hdf5']")
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "real/episode_0.hdf5", "the clicked episode to open")
    buttons = d.find_elements(By.CSS_SELECTOR, "#stages button")
    assert [b.get_attribute("data-score") for b in buttons] == ["0", "25", "50", "75", "100"]  # from tasks.yaml
    assert "right_gripper_grasped" in buttons[1].text

    # every camera shows its frame, and scrubbing (arrow key) loads the next one
    def frames_at(step):
        return d.execute_script(
            "return [...document.querySelectorAll('#cams img')].every(i => i.complete && i.naturalWidth > 0 "
            "&& i.dataset.loadedStep === arguments[0])", str(step))

    wait_for(lambda: frames_at(0), "both cameras' first frame")
    assert len(d.find_elements(By.CSS_SELECTOR, "#cams img")) == 2
    d.find_element(By.TAG_NAME, "body").send_keys(Keys.ARROW_RIGHT)
    wait_for(lambda: frames_at(1), "the frames of step 1")
    assert d.find_element(By.ID, "step").get_attribute("value") == "1"
    assert len(d.find_elements(By.CSS_SELECTOR, "#plot polyline")) == 14  # one trajectory per joint

    scorer = d.find_element(By.ID, "scorer")
    scorer.clear()
    scorer.send_keys("robin")
    d.find_element(By.ID, "notes").send_keys("slipped at the handover")
    path = folder / "real" / "episode_0.hdf5"

    click(d, By.CSS_SELECTOR, "#stages button[data-score='50']")
    wait_for(lambda: file_attrs(path).get("stage_score") == 50.0, "the clicked score in the file")
    a = file_attrs(path)
    assert a["scored_by"] == "robin" and a["score_source"] == "operator" and a["success"] is False
    assert a["score_notes"] == "slipped at the handover" and a["stages_reached"] == ["right_gripper_grasped", "lifted"]
    wait_for(lambda: "score 50 by robin" in d.find_element(By.ID, "score-info").text, "the page to show the score")

    d.find_element(By.TAG_NAME, "body").send_keys("4")  # key 4 = the last stage, 100
    wait_for(lambda: file_attrs(path).get("stage_score") == 100.0, "the keyed score in the file")
    assert file_attrs(path)["success"] is True
    wait_for(lambda: d.find_element(By.CSS_SELECTOR, "#stages button.active").get_attribute("data-score") == "100",
             "the 100 button to show as the score")

    # p / n walk the list; overriding the sim episode by key keeps its sim score
    d.find_element(By.TAG_NAME, "body").send_keys("p")
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "sim/episode_0.hdf5", "p to open the previous episode")
    d.find_element(By.TAG_NAME, "body").send_keys("3")
    sim_path = folder / "sim" / "episode_0.hdf5"
    wait_for(lambda: file_attrs(sim_path).get("stage_score") == 75.0, "the override in the sim episode")
    assert file_attrs(sim_path)["sim_stage_score"] == 50.0 and file_attrs(sim_path)["scored_by"] == "robin"
    d.find_element(By.TAG_NAME, "body").send_keys("n")
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "real/episode_0.hdf5", "n to open the next episode")

    click(d, By.CSS_SELECTOR, "#episodes li[data-id='real/episode_9.hdf5']")
    wait_for(lambda: "cannot open real/episode_9.hdf5: 409" in d.find_element(By.ID, "status").text,
             "the unreadable episode's error")

    # follow: a newly recorded episode comes up for scoring by itself
    click(d, By.ID, "follow")
    write_act_episode(folder / "sim" / "episode_1.hdf5", make_episode(5, task="transfer_cube", sim=True))
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "sim/episode_1.hdf5", "follow to open the new episode")

    # no script error on the way (the 409 above is a network entry, expected)
    errors = [e for e in d.get_log("browser") if e["level"] == "SEVERE" and e.get("source") != "network"]
    assert errors == [], errors


def test_a_refused_score_is_shown_not_written(server, folder, browser):
    from selenium.webdriver.common.by import By

    d = browser
    d.get(server)
    wait_for(lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    wait_for(lambda: d.find_element(By.ID, "ep-title").text == "sim/episode_0.hdf5", "the newest episode to open")
    d.execute_script("localStorage.clear(); document.getElementById('scorer').value = '';")
    before = file_attrs(folder / "sim" / "episode_0.hdf5")
    click(d, By.CSS_SELECTOR, "#stages button[data-score='25']")
    wait_for(lambda: "enter your name" in d.find_element(By.ID, "status").text, "the missing-name message")
    # a request the page would never send: the server's own refusal reaches the operator as text
    d.execute_script("post('/api/score', {id: 'sim/episode_0.hdf5', score: 30, scorer: 'x'})"
                     ".catch(e => say(e.message, 'error'))")
    wait_for(lambda: "not a stage score" in d.find_element(By.ID, "status").text, "the server's 422 message")
    assert file_attrs(folder / "sim" / "episode_0.hdf5") == before
