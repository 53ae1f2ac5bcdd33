"""The scoring page's record buttons in headless Chromium: start with the chosen task, the live state, discard after
a confirmation, stop; and no buttons where the page has no way to a recorder (no ROS)."""

import socket
import threading

import pytest
from test_scoring_browser import TASKS_YAML, browser, click, wait_for  # noqa: F401 - the browser fixture
from test_scoring_record import FakeRecorder

from rollout_recorder.scoring_app import LOOPBACK_NAMES, create_app, load_task_stages


def serve(folder, recorder):
    import uvicorn

    app = create_app(folder, tasks=load_task_stages(TASKS_YAML), scorer="", poll_s=0.3, recorder=recorder,
                     allowed_hosts=list(LOOPBACK_NAMES))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_for(lambda: srv.started, "the scoring server to start")
    return srv, thread, f"http://127.0.0.1:{port}/"


@pytest.fixture
def page(tmp_path):
    servers = []

    def start(recorder):
        srv, thread, url = serve(tmp_path, recorder)
        servers.append((srv, thread))
        return url

    yield start
    for srv, thread in servers:
        srv.should_exit = True
        thread.join(timeout=10)


def test_start_discard_and_stop_from_the_page(page, browser):  # noqa: F811 - the imported fixture
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    recorder = FakeRecorder()
    d = browser
    d.get(page(recorder))
    wait_for(lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    assert d.find_element(By.ID, "rec").is_displayed()
    wait_for(lambda: d.find_element(By.ID, "rec-state").text == "not recording", "the recorder's state")
    assert not d.find_element(By.ID, "rec-stop").is_enabled()
    Select(d.find_element(By.ID, "rec-task")).select_by_value("insertion")
    click(d, By.ID, "rec-start")
    wait_for(lambda: "● REC episode_4.hdf5.partial" in d.find_element(By.ID, "rec-state").text, "the live state")
    assert ("start", "insertion") in [(c, f.get("task")) for c, f in recorder.calls]
    assert "57 steps" in d.find_element(By.ID, "rec-state").text
    assert not d.find_element(By.ID, "rec-start").is_enabled()

    d.execute_script("window.confirm = () => false;")  # the operator answers no: nothing is discarded
    click(d, By.ID, "rec-discard")
    assert "discard" not in [c for c, _ in recorder.calls]
    d.execute_script("window.confirm = () => true;")
    click(d, By.ID, "rec-discard")
    wait_for(lambda: d.find_element(By.ID, "rec-state").text == "not recording", "the discard")
    assert [c for c, _ in recorder.calls].count("discard") == 1

    click(d, By.ID, "rec-start")
    wait_for(lambda: d.find_element(By.ID, "rec-stop").is_enabled(), "recording again")
    recorder.refuse = "disk full"
    click(d, By.ID, "rec-stop")
    wait_for(lambda: "disk full" in d.find_element(By.ID, "status").text, "the refusal shown")
    recorder.refuse = ""
    click(d, By.ID, "rec-stop")
    wait_for(lambda: "stop episode_4" in d.find_element(By.ID, "status").text, "the stop confirmed")


def test_no_record_buttons_without_a_recorder(page, browser):  # noqa: F811 - the imported fixture
    from selenium.webdriver.common.by import By

    d = browser
    d.get(page(None))
    wait_for(lambda: d.execute_script("return document.body.dataset.ready === '1'"), "the page to load")
    assert not d.find_element(By.ID, "rec").is_displayed()
    assert d.find_element(By.ID, "counts").is_displayed()  # the rest of the page is there
