"""freeze_startup_objects: what exists when a node is built leaves the collector's reach; the switch-off works."""

import gc
import os
import subprocess
import sys

import pytest

SCRIPT = """
import gc, sys
from aloha_contract.node_main import freeze_startup_objects
before = gc.get_freeze_count()
payload = [[i] for i in range(50000)]  # start-up objects: a model's modules, a loaded checkpoint ...
freeze_startup_objects()
print(before, gc.get_freeze_count())
"""


@pytest.mark.parametrize("setting,frozen", [(None, True), ("1", True), ("0", False)])
def test_startup_objects_are_frozen_unless_switched_off(setting, frozen):
    env = {k: v for k, v in os.environ.items() if k != "ALOHA_GC_FREEZE"}
    if setting is not None:
        env["ALOHA_GC_FREEZE"] = setting
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, check=True)
    before, after = map(int, out.stdout.split())
    assert before == 0
    assert (after >= 50000) if frozen else (after == 0), (setting, after)
    assert gc.isenabled()  # this process untouched
