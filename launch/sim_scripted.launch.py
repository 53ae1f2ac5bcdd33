"""Simulated ALOHA driven by scripted demonstrations over ROS topics; ends after the last episode.

Each episode's stage score (0-100) and a summary per task are printed by the driver. In lockstep the driver runs
on the simulator's /clock (use_sim_time:=true).
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace, sim_defaults
from launch import LaunchDescription


def generate_launch_description():
    defaults = sim_defaults()
    args = [
        namespace_argument(),
        DeclareLaunchArgument("tasks", default_value="transfer_cube,insertion",
                              description="comma-separated tasks of config/tasks.yaml, run one after the other"),
        DeclareLaunchArgument("episodes", default_value="2", description="scripted episodes per task"),
        DeclareLaunchArgument("seed_start", default_value="0", description="seed of the first episode"),
        DeclareLaunchArgument("mode", default_value=defaults["mode"], choices=["realtime", "lockstep"],
                              description="realtime 50 Hz, or lockstep (as fast as possible, /clock)"),
        DeclareLaunchArgument("image_height", default_value=defaults["image_height"],
                              description="camera image height (default: the contract's)"),
        DeclareLaunchArgument("image_width", default_value=defaults["image_width"],
                              description="camera image width (default: the contract's)"),
    ]
    # a lockstep sim publishes /clock: the driver follows it
    use_sim_time = PythonExpression(["'", LaunchConfiguration("mode"), "' == 'lockstep'"])
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([FindPackageShare("aloha_bringup"), "launch", "sim.launch.py"])),
        launch_arguments=[("seed", LaunchConfiguration("seed_start")), ("mode", LaunchConfiguration("mode")),
                          ("image_height", LaunchConfiguration("image_height")),
                          ("image_width", LaunchConfiguration("image_width"))],
    )
    driver = Node(
        package="aloha_sim",
        executable="scripted_driver",
        name="scripted_driver",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"mode": LaunchConfiguration("mode"), "tasks": LaunchConfiguration("tasks"),
                     "episodes": LaunchConfiguration("episodes"), "seed_start": LaunchConfiguration("seed_start"),
                     "use_sim_time": use_sim_time}],
        on_exit=Shutdown(reason="scripted episodes finished"),
    )
    return LaunchDescription([*args, sim, driver])
