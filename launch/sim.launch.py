"""The simulated ALOHA alone: cameras, joint states and stage scores on the contract's topics."""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    args = [
        DeclareLaunchArgument("task", default_value="transfer_cube", description="task in config/tasks.yaml"),
        DeclareLaunchArgument("seed", default_value="0", description="object pose seed of the first episode"),
        DeclareLaunchArgument("mode", default_value="realtime", choices=["realtime", "lockstep"],
                              description="realtime 50 Hz, or lockstep (one step per command, /clock)"),
        DeclareLaunchArgument("image_height", default_value="480", description="camera image height"),
        DeclareLaunchArgument("image_width", default_value="640", description="camera image width"),
    ]
    sim = Node(
        package="aloha_sim",
        executable="sim_node",
        name="aloha_sim",
        output="screen",
        parameters=[
            PathJoinSubstitution([FindPackageShare("aloha_bringup"), "config", "aloha_sim.yaml"]),
            {
                "task": LaunchConfiguration("task"),
                "seed": LaunchConfiguration("seed"),
                "mode": LaunchConfiguration("mode"),
                "image_height": LaunchConfiguration("image_height"),
                "image_width": LaunchConfiguration("image_width"),
            },
        ],
    )
    return LaunchDescription([*args, sim])
