"""Helpers for cross-process ROS 2 tests: node processes with captured output, waiting on conditions."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_domain_counter = iter(range(10_000))


def next_domain_id() -> int:
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


def blind_start_up_check_script(module: str) -> str:
    """`python -c` text that runs the node ``module`` (e.g. "aloha_sim.sim_node") with its start-up check for another
    robot blinded: the check waits its time and sees nothing, as when discovery is slower than the check."""
    package, name = module.rsplit(".", 1)
    return (f"import sys, time\nfrom {package} import {name} as node_module\n"
            "def slow_discovery(node, wait_s, since_s=None, **kwargs):\n"
            "    time.sleep(max(0.0, (since_s or time.monotonic()) + wait_s - time.monotonic()))\n"
            "    return []\n"
            "node_module.wait_for_other_robots = slow_discovery\n"
            "sys.exit(node_module.main())\n")


def wait_until(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return predicate()

