"""The model package never imports rclpy (and imports light): scanned and checked with rclpy blocked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import cosmos_policy

PACKAGE = Path(cosmos_policy.__file__).parent


def test_no_source_file_imports_rclpy():
    pattern = re.compile(r"^\s*(import|from)\s+rclpy\b", re.MULTILINE)
    offenders = [str(p) for p in PACKAGE.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_model_modules_import_with_rclpy_and_torchvision_blocked():
    modules = ["config", "networks", "latent_sequence", "injection", "objectives", "diffusion", "sampler",
               "checkpoint", "native_import", "policy", "latency"]
    code = (
        "import sys; sys.modules['rclpy'] = None; sys.modules['torchvision'] = None\n"
        "import cosmos_policy\n"
        "assert 'torch' not in sys.modules, 'import cosmos_policy must stay light'\n"
        + "".join(f"import cosmos_policy.{m}\n" for m in modules)
        + "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(PACKAGE.parent) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "ok"
