"""Fixtures for cross-process ROS 2 tests: an isolated DDS domain per test, node processes, a test node."""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from ros_harness import NodeProcess, next_domain_id, package_executable  # noqa: E402


@pytest.fixture
def ros_domain(monkeypatch) -> int:
    domain = next_domain_id()
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("MUJOCO_GL", os.environ.get("MUJOCO_GL", "egl"))
    return domain


@pytest.fixture
def start_node(ros_domain) -> Iterator[Callable[..., NodeProcess]]:
    """start_node(package, executable, params={...}, ros_args=[...]) -> NodeProcess; all are stopped after the test."""
    started: list[NodeProcess] = []

    def start(package: str, executable: str, *, params: dict | None = None, args: list[str] | None = None,
              ros_args: list[str] | None = None) -> NodeProcess:
        argv = [package_executable(package, executable), *(args or []), "--ros-args", *(ros_args or [])]
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
    from rclpy.executors import SingleThreadedExecutor

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain)
    node = rclpy.create_node(f"pytest_{os.getpid()}", context=context)
    # single-threaded: measurably faster per callback than the multi-threaded executor in Python
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    yield node
    executor.shutdown(timeout_sec=2.0)
    thread.join(timeout=2.0)
    node.destroy_node()
    rclpy.shutdown(context=context)
