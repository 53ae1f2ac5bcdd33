"""Included by robot.launch.py with hardware:=fake: the fake Interbotix driver in place of the arms, no cameras."""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("launch_leaders", default_value="false", choices=["true", "false"],
                              description="also fake the two leader arms"),
    ]
    fake = Node(
        package="aloha_bringup",
        executable="fake_interbotix",
        name="fake_interbotix",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"with_leaders": LaunchConfiguration("launch_leaders")}],
    )
    return LaunchDescription([*args, fake])
