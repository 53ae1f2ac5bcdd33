"""Included by robot.launch.py with hardware:=real: Interbotix's xs_sdk per arm and a RealSense node per camera.

The per-robot values (ports, arm models, camera serials) are read from the robot file when this description
is generated; each arm's xs_sdk 'mode config' (which is where xs_sdk reads its port) is written from it.
"""

from launch.actions import DeclareLaunchArgument, LogInfo
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.interbotix_config import (
    MOTOR_CONFIG_PACKAGE,
    realsense_parameters,
    realsense_remappings,
    write_mode_configs,
)
from aloha_bringup.launch_defaults import namespace_argument, under_robot_namespace
from aloha_contract import load_contract
from aloha_contract.robot_config import load_robot_config
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("launch_leaders", default_value="false", choices=["true", "false"],
                              description="also start the two leader arms (teleoperation)"),
        DeclareLaunchArgument("use_cameras", default_value="true", choices=["true", "false"],
                              description="start the RealSense cameras"),
        DeclareLaunchArgument("load_configs", default_value="true", choices=["true", "false"],
                              description="xs_sdk writes the motor configs' EEPROM values at start"),
    ]
    contract = load_contract()
    robot = load_robot_config(contract=contract)
    mode_files = write_mode_configs(robot)

    arms = []
    for arm in robot.arms:
        arms.append(Node(
            package="interbotix_xs_sdk",
            executable="xs_sdk",
            name="xs_sdk",
            namespace=under_robot_namespace(arm.robot),
            output="screen",
            parameters=[{
                "motor_configs": PathJoinSubstitution([FindPackageShare(MOTOR_CONFIG_PACKAGE), "config",
                                                       f"{arm.model}.yaml"]),
                "mode_configs": str(mode_files[arm.robot]),
                "load_configs": LaunchConfiguration("load_configs"),
            }],
            condition=None if arm.role == "follower" else IfCondition(LaunchConfiguration("launch_leaders")),
        ))

    cameras = []
    for cam in robot.cameras:
        cameras.append(Node(
            package="realsense2_camera",
            executable="realsense2_camera_node",
            name="camera",
            namespace=under_robot_namespace(cam.name),
            output="screen",
            parameters=[realsense_parameters(cam.name, cam.serial_number, robot.camera_fps, contract.image_width,
                                             contract.image_height, robot.camera_auto_exposure)],
            remappings=realsense_remappings(contract, cam.name),
            condition=IfCondition(LaunchConfiguration("use_cameras")),
        ))
    unset = robot.unset_camera_serials()
    if unset:
        cameras.append(LogInfo(
            msg=f"WARNING: no serial number for {unset} in {robot.source}: each of those nodes opens the first "
                f"free camera, so views can be swapped (list serials with rs-enumerate-devices -s)",
            condition=IfCondition(LaunchConfiguration("use_cameras"))))
    return LaunchDescription([*args, *arms, *cameras])
