#!/usr/bin/env bash
# Export ACT/ALOHA HDF5 episodes as a LeRobot dataset (v3), with the LeRobot venv (scripts/setup_lerobot.sh).
#   ./scripts/export_lerobot.sh data/demos_96x128/transfer_cube --out data/lerobot/aloha_sim_transfer_cube
#   ./scripts/export_lerobot.sh data/demos_96x128/transfer_cube data/demos_96x128/insertion --out data/lerobot/aloha_sim_both
# Options: see `./scripts/export_lerobot.sh --help` (rollout_recorder/lerobot_export.py).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VPY="${LEROBOT_PYTHON:-$ROOT/.venv-lerobot/bin/python}"
[ -x "$VPY" ] || { echo "[export_lerobot] error: $VPY not found: run ./scripts/setup_lerobot.sh first" >&2; exit 1; }
# Only the plain episode reader of rollout_recorder is imported; nothing of the main venv or of ROS.
# HF_HUB_OFFLINE: LeRobot must never try to reach a hub here.
exec env -u PYTHONPATH -u AMENT_PREFIX_PATH PYTHONPATH="$ROOT/src/rollout_recorder" HF_HUB_OFFLINE=1 \
  "$VPY" -m rollout_recorder.lerobot_export "$@"
