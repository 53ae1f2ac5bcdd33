"""LIBERO through ROS 2: the LIBERO sim node, the policy node with the libero contract, and libero_eval, which runs
the release's evaluation protocol, writes its report and ends the launch.

    ./scripts/setup_libero.sh                                           # once: the LIBERO venv (.venv-libero)
    ./scripts/launch.sh aloha_bringup libero.launch.py checkpoint:=runs/libero_tiny \
        suites:=libero_spatial tasks:=0 trials:=1 seeds:=195            # one task, one trial, on the CPU
    ./scripts/launch.sh aloha_bringup libero.launch.py checkpoint:=checkpoints/libero_release device:=cuda
                                                                        # the full protocol: 4 x 10 x 50, seeds 195-197

The simulator runs in lockstep (it publishes /clock; the policy node and the evaluator follow it) and renders its
cameras every `camera_every_steps` steps (16: the frames at which the policy asks for a chunk). The policy node's
LIBERO settings (chunk 16 open loop, no prefetch, stop on success) are in config/libero_policy.yaml.
"""

from launch.actions import DeclareLaunchArgument, Shutdown
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("checkpoint", default_value="runs/libero_tiny",
                              description="libero-layout checkpoint directory: cosmos-policy import-release's output, "
                                          "or the default, written by `libero_tiny_checkpoint --out runs/libero_tiny` "
                                          "(random weights: a CPU smoke run, success ~0)"),
        DeclareLaunchArgument("device", default_value="cpu", description="policy torch device: cpu, cuda, cuda:N"),
        DeclareLaunchArgument("suites", default_value="libero_spatial,libero_object,libero_goal,libero_10",
                              description="comma-separated suites"),
        DeclareLaunchArgument("tasks", default_value="0,1,2,3,4,5,6,7,8,9", description="task ids per suite"),
        DeclareLaunchArgument("trials", default_value="50", description="trials per task (init states 0..N-1)"),
        DeclareLaunchArgument("seeds", default_value="195,196,197", description="sampling seeds, averaged"),
        DeclareLaunchArgument("max_steps", default_value="0",
                              description="steps per trial (0: the suite's budget, e.g. 220 for libero_spatial)"),
        DeclareLaunchArgument("camera_every_steps", default_value="16",
                              description="render the cameras every N steps (the chunk length executed)"),
        DeclareLaunchArgument("out", default_value="", description="report path (default eval/libero_<label>.json)"),
        DeclareLaunchArgument("label", default_value="", description="name of the run in the report"),
        DeclareLaunchArgument("libero_python", default_value="",
                              description="the LIBERO venv's Python ('' = .venv-libero, see scripts/setup_libero.sh)"),
    ]
    config = PathJoinSubstitution([FindPackageShare("aloha_bringup"), "config"])
    contract = PathJoinSubstitution([config, "libero_contract.yaml"])
    sim = Node(
        package="libero_sim",
        executable="libero_sim_node",
        name="libero_sim",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"contract_file": contract, "mode": "lockstep",
                     "camera_every_steps": LaunchConfiguration("camera_every_steps"),
                     "libero_python": LaunchConfiguration("libero_python")}],
        on_exit=Shutdown(reason="the LIBERO simulator ended"),
    )
    policy = Node(
        package="cosmos_policy_ros",
        executable="policy_node",
        name="policy_node",
        namespace=robot_namespace(),
        output="screen",
        parameters=[
            PathJoinSubstitution([config, "libero_policy.yaml"]),
            {"contract_file": contract, "checkpoint": LaunchConfiguration("checkpoint"),
             "device": LaunchConfiguration("device"), "clock_mode": "lockstep", "use_sim_time": True},
        ],
        on_exit=Shutdown(reason="the policy node ended"),
    )
    evaluator = Node(
        package="libero_sim",
        executable="libero_eval",
        name="libero_eval",
        namespace=robot_namespace(),
        output="screen",
        arguments=["--suites", LaunchConfiguration("suites"), "--tasks", LaunchConfiguration("tasks"),
                   "--trials", LaunchConfiguration("trials"), "--seeds", LaunchConfiguration("seeds"),
                   "--max-steps", LaunchConfiguration("max_steps"),
                   "--checkpoint", LaunchConfiguration("checkpoint"), "--contract", contract,
                   "--out", LaunchConfiguration("out"), "--label", LaunchConfiguration("label")],
        parameters=[{"use_sim_time": True}],
        on_exit=Shutdown(reason="evaluation finished"),
    )
    return LaunchDescription([*args, sim, policy, evaluator])
