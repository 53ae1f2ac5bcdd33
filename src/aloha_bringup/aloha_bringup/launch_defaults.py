"""Launch-argument defaults read from the file that owns each value, when a launch file is generated.

A launch argument that repeats a number of the contract (the camera size) or of a node's parameter file (the
simulator's task, seed and clock) silently overrides that file once the two disagree: launch passes every
declared argument to the node. So the launch files take these defaults from here, and here reads them from
their one home: ``config/aloha_contract.yaml`` (through ``aloha_contract``) and ``config/aloha_sim.yaml``.
Works the same under ``ros2 launch`` and the wheel launcher (plain Python at generation time).
"""

from __future__ import annotations

from pathlib import Path

import yaml

from aloha_contract import load_contract

PACKAGE = "aloha_bringup"
SIM_PARAMETERS_FILE = "aloha_sim.yaml"
SIM_NODE = "aloha_sim"
SIM_LAUNCH_KEYS = ("task", "seed", "mode")  # sim.launch.py arguments whose defaults config/aloha_sim.yaml owns


NAMESPACE_ARGUMENT = "namespace"


def namespace_argument():
    """The ``namespace`` launch argument every robot-side launch file declares, with one description.

    The contract's names are relative, so each node resolves them in this namespace: two robots (or two sims)
    run on one ROS domain as ``namespace:=robot_a`` and ``namespace:=robot_b``. An outer PushRosNamespace
    applies too (the default '' adds nothing to it).
    """
    from launch.actions import DeclareLaunchArgument
    return DeclareLaunchArgument(NAMESPACE_ARGUMENT, default_value="",
                                 description="robot namespace for every node ('': none); the contract's topics "
                                             "resolve under it, so two robots can share a ROS domain")


def robot_namespace():
    """The node namespace of the robot's nodes: the ``namespace`` argument."""
    from launch.substitutions import LaunchConfiguration
    return LaunchConfiguration(NAMESPACE_ARGUMENT)


def under_robot_namespace(name: str):
    """``<namespace>/<name>``, kept relative (an outer PushRosNamespace still applies): a per-arm or per-camera
    driver's namespace, e.g. ``robot_a/follower_left`` or, without a robot namespace, ``follower_left``."""
    from launch.substitutions import LaunchConfiguration, PythonExpression
    return PythonExpression(["'", LaunchConfiguration(NAMESPACE_ARGUMENT), "/", name, "'.strip('/')"])


class LaunchDefaultsError(ValueError):
    """A configuration file lacks a value a launch argument takes as its default."""


def config_path(file_name: str) -> Path:
    """A file of this package's installed config/ folder."""
    from ament_index_python.packages import get_package_share_directory
    return Path(get_package_share_directory(PACKAGE)) / "config" / file_name


def node_parameters(file_name: str, node: str) -> dict:
    """``/**/<node>: ros__parameters:`` (the node in any namespace) of a parameter file in config/."""
    path = config_path(file_name)
    with path.open() as f:
        raw = yaml.safe_load(f) or {}
    try:
        return dict(raw[f"/**/{node}"]["ros__parameters"])
    except (KeyError, TypeError):
        raise LaunchDefaultsError(f"{path}: expected '/**/{node}: ros__parameters:' (the node's parameters, in "
                                  f"any namespace)") from None


def camera_size_defaults() -> dict[str, str]:
    """image_height / image_width: the contract's camera size."""
    contract = load_contract()
    return {"image_height": str(contract.image_height), "image_width": str(contract.image_width)}


def sim_defaults() -> dict[str, str]:
    """The simulator's launch-argument defaults: task, seed, mode from config/aloha_sim.yaml, size from the contract."""
    params = node_parameters(SIM_PARAMETERS_FILE, SIM_NODE)
    missing = [key for key in SIM_LAUNCH_KEYS if key not in params]
    if missing:
        raise LaunchDefaultsError(f"{config_path(SIM_PARAMETERS_FILE)}: {SIM_NODE} parameters lack {missing} "
                                  f"(sim.launch.py takes its defaults from there)")
    return {**{key: str(params[key]) for key in SIM_LAUNCH_KEYS}, **camera_size_defaults()}
