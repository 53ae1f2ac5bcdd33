"""The simulated ALOHA alone: cameras, joint states and stage scores on the contract's topics.

Defaults come from their one home: task, seed and mode from config/aloha_sim.yaml, the camera size from the
robot contract. In lockstep the simulator publishes /clock and never follows it (use_sim_time false); the other
nodes of a lockstep graph take use_sim_time:=true from the launch file that starts them.
"""

from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace, sim_defaults
from launch import LaunchDescription


def generate_launch_description():
    defaults = sim_defaults()
    args = [
        namespace_argument(),
        DeclareLaunchArgument("task", default_value=defaults["task"], description="task in config/tasks.yaml"),
        DeclareLaunchArgument("seed", default_value=defaults["seed"],
                              description="object pose seed of the first episode"),
        DeclareLaunchArgument("mode", default_value=defaults["mode"], choices=["realtime", "lockstep"],
                              description="realtime 50 Hz, or lockstep (one step per command, /clock)"),
        DeclareLaunchArgument("image_height", default_value=defaults["image_height"],
                              description="camera image height (default: the contract's)"),
        DeclareLaunchArgument("image_width", default_value=defaults["image_width"],
                              description="camera image width (default: the contract's)"),
    ]
    sim = Node(
        package="aloha_sim",
        executable="sim_node",
        name="aloha_sim",
        namespace=robot_namespace(),
        output="screen",
        parameters=[
            PathJoinSubstitution([FindPackageShare("aloha_bringup"), "config", "aloha_sim.yaml"]),
            {
                "task": LaunchConfiguration("task"),
                "seed": LaunchConfiguration("seed"),
                "mode": LaunchConfiguration("mode"),
                "image_height": LaunchConfiguration("image_height"),
                "image_width": LaunchConfiguration("image_width"),
                "use_sim_time": False,  # the clock's source (lockstep) must not follow it
            },
        ],
        # a sim that ends (refused: another robot on the domain; a camera fault) ends the graph: its policy and
        # evaluation nodes would otherwise reset and command whatever else runs on this domain
        on_exit=Shutdown(reason="the simulator ended"),
    )
    return LaunchDescription([*args, sim])
