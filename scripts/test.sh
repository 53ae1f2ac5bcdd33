#!/usr/bin/env bash
# Run the test suite: unit tests of every package and cross-process ROS 2 integration tests.
# Suites that need a GPU, real weights or the robot are deselected here (run them with -m gpu, ...).
# Extra arguments go to pytest, e.g. scripts/test.sh -k stage -x
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
[ -f env.sh ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source env.sh
# Tests pick their own ROS_DOMAIN_ID; keep discovery on this machine.
export ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST
export MUJOCO_GL="${MUJOCO_GL:-egl}"
# the linter first: fast, and its findings are as much a failure as a test's (config: ruff.toml)
ruff check --quiet . || { echo "ruff found the problems above: fix them (many with: ruff check --fix .)" >&2; exit 1; }
python -m pytest -m "not gpu and not weights and not robot" --timeout=600 "$@"
