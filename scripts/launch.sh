#!/usr/bin/env bash
# `ros2 launch` where ROS 2 is installed from apt; the workspace's wheel launcher (same launch files,
# same node graph) where only the ROS 2 wheels exist.   Usage: scripts/launch.sh PACKAGE FILE [name:=value ...]
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$ROOT/env.sh" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$ROOT/env.sh"
if command -v ros2 >/dev/null 2>&1 && python -c 'import launch_ros' 2>/dev/null; then
  exec ros2 launch "$@"
fi
exec python -m aloha_bringup.wheel_launch "$@"
