"""One command per results-table column: the simulator in lockstep, the policy node (driver policy) and
aloha_eval, which writes the report and ends the launch.

    ./scripts/launch.sh aloha_bringup eval.launch.py episodes:=50 out:=eval/policy.json      # shipped checkpoint
    ./scripts/launch.sh aloha_bringup eval.launch.py checkpoint:=runs/tiny device:=cuda out:=eval/tiny.json
    ./scripts/launch.sh aloha_bringup eval.launch.py driver:=scripted out:=eval/scripted.json
    ./scripts/launch.sh aloha_bringup eval.launch.py driver:=replay replay_episode:=data/demos/episode_0.hdf5

In lockstep (the default) the simulator publishes /clock and aloha_eval and the policy node run on it
(use_sim_time:=true; the policy node's ticks follow the sim's stamps, its housekeeping timers a steady clock).
In realtime every node runs on the wall clock.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("driver", default_value="policy", choices=["policy", "scripted", "replay"],
                              description="policy (the policy node), scripted (upper bound) or replay (lower bound)"),
        DeclareLaunchArgument("tasks", default_value="transfer_cube,insertion",
                              description="comma-separated tasks of config/tasks.yaml"),
        DeclareLaunchArgument("episodes", default_value="10", description="episodes per task"),
        DeclareLaunchArgument("seed_start", default_value="1000",
                              description="seed of each task's first episode (training demos use seeds from 0)"),
        DeclareLaunchArgument("mode", default_value="lockstep", choices=["lockstep", "realtime"],
                              description="sim clock: lockstep (fast, deterministic) or realtime (to measure timing)"),
        DeclareLaunchArgument("image_height", default_value="96",
                              description="sim camera height (driver policy: the checkpoint's training size)"),
        DeclareLaunchArgument("image_width", default_value="128",
                              description="sim camera width (driver policy: the checkpoint's training size)"),
        DeclareLaunchArgument("execute_steps", default_value="0",
                              description="policy node: chunk steps executed before the next chunk (0: the checkpoint's)"),
        DeclareLaunchArgument("policy_params",
                              default_value=PathJoinSubstitution([FindPackageShare("aloha_bringup"), "config",
                                                                  "policy.yaml"]),
                              description="policy node: a parameters file applied over config/policy.yaml, e.g. "
                                          "config/policy_ensemble.yaml (the arguments here still win)"),
        DeclareLaunchArgument("checkpoint",
                              default_value=PathJoinSubstitution([FindPackageShare("cosmos_policy_ros"),
                                                                  "checkpoints", "aloha_sim_default"]),
                              description="driver policy: checkpoint directory (default: the shipped sim checkpoint)"),
        DeclareLaunchArgument("planning_checkpoint", default_value="",
                              description="driver policy: checkpoint that scores proposals in planning mode"),
        DeclareLaunchArgument("device", default_value="cpu", description="policy torch device: cpu, cuda, cuda:N"),
        DeclareLaunchArgument("camera_hw_check", default_value="strict", choices=["strict", "resize"],
                              description="policy node: refuse (strict) or resize images unlike the checkpoint's"),
        DeclareLaunchArgument("policy_mode", default_value="direct", choices=["direct", "planning"],
                              description="RunPolicy mode of every goal"),
        DeclareLaunchArgument("num_candidates", default_value="0",
                              description="planning proposals per chunk (0: the policy node's num_candidates)"),
        DeclareLaunchArgument("action_steps", default_value="0",
                              description="denoising steps per action chunk (0: the checkpoint's)"),
        DeclareLaunchArgument("max_steps", default_value="0",
                              description="driver policy: steps per episode (0: the task's episode length)"),
        DeclareLaunchArgument("replay_episode", default_value="",
                              description="driver replay: the demonstration (.hdf5) whose /action is replayed"),
        DeclareLaunchArgument("out", default_value="",
                              description="report path (default eval/<label>.json); the PNG plot goes next to it"),
        DeclareLaunchArgument("label", default_value="", description="column name in merged tables (default: driver)"),
        DeclareLaunchArgument("resume", default_value="false", choices=["true", "false"],
                              description="keep the finished episodes of out's report (same driver, label and goal "
                                          "options) and run only the missing seeds"),
        DeclareLaunchArgument("min_success", default_value="0.0",
                              description="fail (exit 3) when a task's success rate is below this (0-1)"),
    ]
    driver = LaunchConfiguration("driver")
    share = FindPackageShare("aloha_bringup")
    # a lockstep sim publishes /clock: every other node follows it (the sim itself never does, sim.launch.py)
    use_sim_time = PythonExpression(["'", LaunchConfiguration("mode"), "' == 'lockstep'"])
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "sim.launch.py"])),
        launch_arguments=[("seed", LaunchConfiguration("seed_start")), ("mode", LaunchConfiguration("mode")),
                          ("image_height", LaunchConfiguration("image_height")),
                          ("image_width", LaunchConfiguration("image_width"))],
    )
    policy = Node(
        package="cosmos_policy_ros",
        executable="policy_node",
        name="policy_node",
        namespace=robot_namespace(),
        output="screen",
        parameters=[
            PathJoinSubstitution([share, "config", "policy.yaml"]),
            LaunchConfiguration("policy_params"),
            {"checkpoint": LaunchConfiguration("checkpoint"),
             "planning_checkpoint": LaunchConfiguration("planning_checkpoint"),
             "device": LaunchConfiguration("device"), "execute_steps": LaunchConfiguration("execute_steps"),
             "clock_mode": LaunchConfiguration("mode"), "camera_hw_check": LaunchConfiguration("camera_hw_check"),
             "use_sim_time": use_sim_time},
        ],
        condition=IfCondition(PythonExpression(["'", driver, "' == 'policy'"])),
        on_exit=Shutdown(reason="the policy node ended"),  # a policy node that dies ends the evaluation
    )
    evaluator = Node(
        package="cosmos_policy_ros",
        executable="aloha_eval",
        name="aloha_eval",
        namespace=robot_namespace(),
        output="screen",
        arguments=["--driver", driver, "--tasks", LaunchConfiguration("tasks"),
                   "--episodes", LaunchConfiguration("episodes"), "--seed-start", LaunchConfiguration("seed_start"),
                   "--clock", LaunchConfiguration("mode"), "--mode", LaunchConfiguration("policy_mode"),
                   "--max-steps", LaunchConfiguration("max_steps"),
                   "--num-candidates", LaunchConfiguration("num_candidates"),
                   "--action-steps", LaunchConfiguration("action_steps"),
                   "--replay-episode", LaunchConfiguration("replay_episode"), "--out", LaunchConfiguration("out"),
                   "--label", LaunchConfiguration("label"), "--min-success", LaunchConfiguration("min_success"),
                   "--resume", LaunchConfiguration("resume")],
        parameters=[{"use_sim_time": use_sim_time}],
        on_exit=Shutdown(reason="evaluation finished"),
    )
    return LaunchDescription([*args, sim, policy, evaluator])
