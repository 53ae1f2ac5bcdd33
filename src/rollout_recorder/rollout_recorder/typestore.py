"""The rosbags typestore of the ALOHA stack: a ROS distribution's standard messages plus aloha_interfaces.

Plain Python (rosbags, no rclpy): bags are written and read without a ROS installation. Our own
interfaces are registered from their .msg / .srv / .action text, found through the ament index (the
built package's ``share/aloha_interfaces``) or, without a build, in this repository's
``src/aloha_interfaces``. The definitions registered here hash (RIHS01) to the same value as rosidl's,
which is what ``ros2 bag`` and Foxglove check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

INTERFACES_PACKAGE = "aloha_interfaces"
# the distributions whose message definitions rosbags ships; ROS_DISTRO picks one, else the newest
DISTRO_STORES = {"humble": Stores.ROS2_HUMBLE, "iron": Stores.ROS2_IRON, "jazzy": Stores.ROS2_JAZZY,
                 "kilted": Stores.ROS2_KILTED}
DEFAULT_DISTRO = "kilted"  # the PyPI wheels this workspace runs on
_SEPARATOR = re.compile(r"^---[ \t]*$", re.MULTILINE)


class TypestoreError(ValueError):
    """Interface definitions that cannot be found or parsed."""


def interfaces_dir() -> Path:
    """``share/aloha_interfaces`` of the built package, else ``src/aloha_interfaces`` of this repository."""
    try:
        from ament_index_python.packages import PackageNotFoundError, get_package_share_directory
        try:
            return Path(get_package_share_directory(INTERFACES_PACKAGE))
        except PackageNotFoundError:
            pass
    except ImportError:  # no ROS on this machine: the source tree still has the definitions
        pass
    source = Path(__file__).resolve().parents[2] / INTERFACES_PACKAGE
    if (source / "msg").is_dir():
        return source
    raise TypestoreError(f"{INTERFACES_PACKAGE}: no installed package (ament index) and no source tree at {source}; "
                         f"build the workspace (scripts/setup.sh) or pass the folder holding msg/, srv/, action/")


def _parts(path: Path, expected: int) -> list[str]:
    parts = _SEPARATOR.split(path.read_text())
    if len(parts) != expected:
        raise TypestoreError(f"{path}: {len(parts)} sections separated by '---', expected {expected}")
    return parts


def interface_types(folder: str | os.PathLike[str] | None = None, package: str = INTERFACES_PACKAGE) -> dict:
    """rosbags type definitions of every .msg, .srv (Request/Response) and .action (Goal/Result/Feedback and the
    FeedbackMessage published on ``<action>/_action/feedback``) of ``package`` under ``folder``."""
    root = Path(folder) if folder is not None else interfaces_dir()
    texts: dict[str, str] = {}
    for path in sorted((root / "msg").glob("*.msg")):
        texts[f"{package}/msg/{path.stem}"] = path.read_text()
    for path in sorted((root / "srv").glob("*.srv")):
        request, response = _parts(path, 2)
        texts[f"{package}/srv/{path.stem}_Request"] = request
        texts[f"{package}/srv/{path.stem}_Response"] = response
    for path in sorted((root / "action").glob("*.action")):
        goal, result, feedback = _parts(path, 3)
        name = f"{package}/action/{path.stem}"
        texts[f"{name}_Goal"] = goal
        texts[f"{name}_Result"] = result
        texts[f"{name}_Feedback"] = feedback
        texts[f"{name}_FeedbackMessage"] = f"unique_identifier_msgs/UUID goal_id\n{name}_Feedback feedback\n"
    if not texts:
        raise TypestoreError(f"{root}: no .msg, .srv or .action files (expected {package}'s msg/, srv/, action/)")
    types: dict = {}
    for name, text in texts.items():
        try:
            parsed = get_types_from_msg(text, name)
        except Exception as exc:  # noqa: BLE001 - rosbags raises several parser errors; name the file's type
            raise TypestoreError(f"{name}: definition does not parse ({exc})") from None
        # rosbags files a name outside msg/ and action/ under msg/: keep rosidl's srv/ name
        types.update({name if key.replace("/srv/msg/", "/srv/") == name else key: value
                      for key, value in parsed.items()})
    return types


def distro_store(distro: str | None = None) -> Stores:
    """The rosbags store of ``distro`` (default ``$ROS_DISTRO``, else Kilted)."""
    name = (distro or os.environ.get("ROS_DISTRO") or DEFAULT_DISTRO).lower()
    try:
        return DISTRO_STORES[name]
    except KeyError:
        raise TypestoreError(f"ROS distribution '{name}' has no rosbags store (known: {sorted(DISTRO_STORES)}); "
                             f"unset ROS_DISTRO or pass one of those") from None


def make_typestore(distro: str | None = None, interfaces: str | os.PathLike[str] | None = None) -> Typestore:
    """Standard messages of ``distro`` plus aloha_interfaces, ready to serialise and to describe bag topics."""
    store = get_typestore(distro_store(distro))
    store.register(interface_types(interfaces))
    return store
