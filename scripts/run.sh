#!/usr/bin/env bash
# `ros2 run PACKAGE EXECUTABLE [args]` where ROS 2 is installed from apt; the same executable from the
# workspace's install/ where only the ROS 2 wheels exist.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
[ -f "$ROOT/env.sh" ] || { echo "run scripts/setup.sh first" >&2; exit 1; }
# shellcheck disable=SC1091
source "$ROOT/env.sh"
[ $# -ge 2 ] || { echo "usage: scripts/run.sh PACKAGE EXECUTABLE [args...]" >&2; exit 2; }
if command -v ros2 >/dev/null 2>&1; then
  exec ros2 run "$@"
fi
package="$1" executable="$2"; shift 2
prefix=$(python -c "from ament_index_python.packages import get_package_prefix as p; print(p('$package'))" 2>/dev/null) \
  || { echo "package '$package' not found: run scripts/setup.sh" >&2; exit 1; }
exe="$prefix/lib/$package/$executable"
[ -x "$exe" ] || { echo "$package has no executable '$executable' (have: $(ls "$prefix/lib/$package" 2>/dev/null | tr '\n' ' '))" >&2; exit 1; }
exec "$exe" "$@"
