#!/usr/bin/env bash
# Optional extra: a SEPARATE venv, .venv-lerobot, with LeRobot 0.4.4 and the torch/torchvision it wants,
# for the ACT baseline and for exporting episodes as a LeRobot dataset (docs/lerobot.md).
# The main set-up (scripts/setup.sh, .venv) never needs it: LeRobot 0.4.4 pins torch < 2.11 and
# torchvision < 0.26, which cannot live beside the main venv's CPU torch 2.13.
#
# Idempotent like scripts/setup.sh: a stamp holds the digest of requirements-lerobot.txt and this script;
# a re-run with both unchanged takes a second. Pinned versions: requirements-lerobot.txt.
# On x86_64 Linux, PyPI's torch 2.10 is the CUDA build (8.3 GB venv with its nvidia-* wheels); it runs on
# the CPU as well (PyTorch's own CPU wheel index is not reachable from every machine, PyPI is).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LEROBOT_VENV:-$ROOT/.venv-lerobot}"
STAMPS="$VENV/.stamps"
PYTHON="${PYTHON:-python3}"
REQ="$ROOT/requirements-lerobot.txt"

say() { printf '\033[1m[setup_lerobot]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup_lerobot] error:\033[0m %s\n' "$*" >&2; exit 1; }
digest() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

[ -f "$REQ" ] || die "$REQ not found"
"$PYTHON" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 13)' 2>/dev/null \
  || die "$PYTHON must be CPython 3.10-3.13 (LeRobot 0.4.4 is the newest release for Python < 3.12); set PYTHON=..."

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
VPY="$VENV/bin/python"

key=$(digest "$REQ" "$ROOT/scripts/setup_lerobot.sh")
if [ "$(cat "$STAMPS/deps" 2>/dev/null)" != "$key" ]; then
  say "installing LeRobot and its torch into $VENV (first run: about 8 min, 8.3 GB)"
  start=$(date +%s)
  # (the filter drops pip's warnings about this machine's find-links folders that lack a package)
  "$VPY" -m pip install --quiet -r "$REQ" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  # the import that matters: ACT (torchvision's ResNet) and the dataset classes, no network
  HF_HUB_OFFLINE=1 "$VPY" - <<'PY' || die "LeRobot installed but does not import: see the traceback above"
import torch, torchvision, lerobot
from lerobot.policies.act.modeling_act import ACTPolicy  # noqa: F401
from lerobot.datasets.lerobot_dataset import LeRobotDataset  # noqa: F401
print(f"[setup_lerobot] lerobot {lerobot.__version__}, torch {torch.__version__}, torchvision {torchvision.__version__}")
PY
  echo "$key" > "$STAMPS/deps"
  say "installed in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
else
  say "LeRobot venv up to date ($VENV)"
fi
say "ready: $VPY"
