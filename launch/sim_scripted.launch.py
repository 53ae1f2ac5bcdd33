"""Simulated ALOHA driven by scripted demonstrations over ROS topics; ends after `episodes` episodes.

Each episode's stage score (0-100) and a summary are printed by the driver.
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    args = [
        DeclareLaunchArgument("tasks", default_value="transfer_cube,insertion",
                              description="comma-separated tasks of config/tasks.yaml, run one after the other"),
        DeclareLaunchArgument("episodes", default_value="2", description="scripted episodes per task"),
        DeclareLaunchArgument("seed_start", default_value="0", description="seed of the first episode"),
        DeclareLaunchArgument("mode", default_value="realtime", choices=["realtime", "lockstep"],
                              description="realtime 50 Hz, or lockstep (as fast as possible, /clock)"),
        DeclareLaunchArgument("image_height", default_value="480", description="camera image height"),
        DeclareLaunchArgument("image_width", default_value="640", description="camera image width"),
    ]
    mode = {"mode": LaunchConfiguration("mode")}
    sim = Node(
        package="aloha_sim",
        executable="sim_node",
        name="aloha_sim",
        output="screen",
        parameters=[
            PathJoinSubstitution([FindPackageShare("aloha_bringup"), "config", "aloha_sim.yaml"]),
            {**mode, "seed": LaunchConfiguration("seed_start"),
             "image_height": LaunchConfiguration("image_height"), "image_width": LaunchConfiguration("image_width")},
        ],
    )
    driver = Node(
        package="aloha_sim",
        executable="scripted_driver",
        name="scripted_driver",
        output="screen",
        parameters=[{**mode, "tasks": LaunchConfiguration("tasks"), "episodes": LaunchConfiguration("episodes"),
                     "seed_start": LaunchConfiguration("seed_start")}],
        on_exit=Shutdown(reason="scripted episodes finished"),
    )
    return LaunchDescription([*args, sim, driver])
