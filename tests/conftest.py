"""Fixtures for cross-process ROS 2 tests: an isolated DDS domain per test, node processes, a test node."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_domain_counter = iter(range(10_000))


def _next_domain_id() -> int:
    # 1..100 are valid domain ids with the default port mapping; spread by pid so parallel runs differ
    return 1 + (os.getpid() * 7 + next(_domain_counter)) % 100


def package_executable(package: str, executable: str) -> str:
    from ament_index_python.packages import PackageNotFoundError, get_package_prefix
    try:
        path = Path(get_package_prefix(package)) / "lib" / package / executable
    except PackageNotFoundError:
        pytest.fail(f"package {package} is not built: run scripts/setup.sh and source env.sh")
    if not path.exists():
        pytest.fail(f"{path} missing: run scripts/setup.sh")
    return str(path)


class NodeProcess:
    """A node started in its own process group, with its output captured for assertions."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.argv = argv
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for_output(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output:
                return True
            if self.proc.poll() is not None:
                time.sleep(0.2)
                return text in self.output
            time.sleep(0.05)
        return False

    def stop(self, timeout_s: float = 10.0) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._reader.join(timeout=2.0)
        return self.proc.returncode


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    domain = _next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    return domain


@pytest.fixture
def start_node(ros_domain) -> Iterator[Callable[..., NodeProcess]]:
    """start_node(package, executable, **params) -> NodeProcess; all are stopped after the test."""
    started: list[NodeProcess] = []

    def start(package: str, executable: str, *, params: dict | None = None, args: list[str] | None = None) -> NodeProcess:
        argv = [package_executable(package, executable), *(args or []), "--ros-args"]
        for key, value in (params or {}).items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            argv += ["-p", f"{key}:={text}"]
        node = NodeProcess(argv, {**os.environ, "PYTHONUNBUFFERED": "1"})
        started.append(node)
        return node

    yield start
    for node in started:
        node.stop()


@pytest.fixture
def test_node(ros_domain):
    """An rclpy node in the test process, spun by a background executor thread."""
    import rclpy
    from rclpy.executors import MultiThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node(f"pytest_{os.getpid()}", context=context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown(timeout_sec=2.0)
    node.destroy_node()
    rclpy.shutdown(context=context)
    thread.join(timeout=2.0)


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()


sys.path.insert(0, str(Path(__file__).parent))
