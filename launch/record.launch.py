"""The recorder alone: every contract topic into streamed ALOHA/ACT HDF5 episodes in out_dir.

Start it next to a robot (sim.launch.py, robot.launch.py) and a policy (policy.launch.py): every RunPolicy
goal becomes an episode. Record by hand with `ros2 param set /rollout_recorder recording true` (then false).
"""

from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("out_dir", default_value="data/rollouts", description="episode folder"),
        DeclareLaunchArgument("image_height", default_value="0", description="frame height (0: the contract's)"),
        DeclareLaunchArgument("image_width", default_value="0", description="frame width (0: the contract's)"),
        DeclareLaunchArgument("compress", default_value="false", description="JPEG frames (quality 50)"),
        DeclareLaunchArgument("sim", default_value="false", description="episodes come from the simulator"),
        DeclareLaunchArgument("policy_checkpoint", default_value="none",
                              description="policy checkpoint id stored with each rollout"),
        DeclareLaunchArgument("auto_record_policy", default_value="true",
                              description="record every RunPolicy goal as an episode"),
        DeclareLaunchArgument("use_sim_time", default_value="false", choices=["true", "false"],
                              description="true next to a lockstep simulator (it publishes /clock)"),
    ]
    recorder = Node(
        package="rollout_recorder",
        executable="recorder_node",
        name="rollout_recorder",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{name: LaunchConfiguration(name) for name in (
            "out_dir", "image_height", "image_width", "compress", "sim", "policy_checkpoint", "auto_record_policy",
            "use_sim_time")}],
    )
    return LaunchDescription([*args, recorder])
