"""The robot-computer install path: this repository cloned into `ws/src/<repo>`, built with colcon, its
dependencies from rosdep (apt) and requirements-robot.txt (pip, with the distribution's NumPy)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ros_harness import ROOT


def our_packages() -> set[str]:
    """Names of every package manifest under src/ that colcon is meant to build (not the COLCON_IGNOREd ones)."""
    import xml.etree.ElementTree as ET
    names = set()
    for manifest in (ROOT / "src").rglob("package.xml"):
        if any((parent / "COLCON_IGNORE").exists() for parent in manifest.parents if ROOT in parent.parents):
            continue
        names.add(ET.parse(manifest).getroot().findtext("name"))
    return names


@pytest.fixture
def workspace(tmp_path) -> Path:
    """ws/src/<repo>: the repository linked in as a robot computer would clone it."""
    (tmp_path / "ws" / "src").mkdir(parents=True)
    os.symlink(ROOT, tmp_path / "ws" / "src" / "cosmos_policy_aloha")
    return tmp_path / "ws"


def test_no_manifest_at_the_root_stops_the_crawl():
    # a package.xml at the repository root makes colcon and rosdep stop there and never see src/
    assert not (ROOT / "package.xml").exists()


def test_colcon_list_from_a_workspace_finds_every_package(workspace):
    colcon = shutil.which("colcon")
    assert colcon, "colcon is not installed (scripts/setup.sh installs it)"
    proc = subprocess.run([colcon, "list", "--names-only"], cwd=workspace, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    found = set(proc.stdout.split())
    expected = our_packages()
    assert len(expected) >= 6 and expected <= found, (expected - found, proc.stdout, proc.stderr)


def test_rosdep_crawl_from_a_workspace_finds_every_package(workspace):
    """rosdep install --from-paths src finds manifests with catkin_pkg's crawl, which also stops at the first one."""
    from catkin_pkg.packages import find_packages
    found = {pkg.name for pkg in find_packages(str(workspace / "src")).values()}
    assert our_packages() <= found, our_packages() - found


def test_robot_requirements_leave_numpy_and_opencv_to_apt():
    lines = [line.split("#")[0].strip() for line in (ROOT / "requirements-robot.txt").read_text().splitlines()]
    reqs = [line for line in lines if line]
    assert "numpy<2" in reqs  # never upgrade the distribution's NumPy 1.x (cv_bridge etc. are built against it)
    assert not [r for r in reqs if r.startswith(("opencv", "numpy=", "numpy>"))], reqs
    assert any(r.startswith("torch") for r in reqs)


def test_robot_requirements_resolve_for_humble_python_310(tmp_path):
    """Dry-run resolve against the package index (reachable here and in CI) for Humble's Python 3.10."""
    report = tmp_path / "report.json"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet", "--ignore-installed", "--python-version", "3.10",
         "--only-binary=:all:", "--target", str(tmp_path / "target"), "--report", str(report),
         "-r", str(ROOT / "requirements-robot.txt")],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    resolved = {i["metadata"]["name"].lower(): i["metadata"]["version"] for i in json.loads(report.read_text())["install"]}
    assert resolved["numpy"].startswith("1."), resolved["numpy"]
    for name in ("torch", "mujoco", "diffusers", "transformers", "safetensors"):
        assert name in resolved, name
