"""The policy driving the robot: the simulated ALOHA (robot:=sim, default) or the real one (robot:=real),
and the policy node serving the RunPolicy action with the embedded default checkpoint.

With the simulator and episodes:=N > 0, `run_policy` then runs N seeded episodes per task through the action,
prints each episode's stage score and a summary, and the graph shuts down. With episodes:=0 (the default on
the real robot) the graph stays up and waits for goals: `ros2 run cosmos_policy_ros run_policy --task ...`.
With the simulator in lockstep (mode:=lockstep) the sim publishes /clock and run_policy runs on it
(use_sim_time:=true), and so does the policy node, whose ticks follow the sim's stamps (clock_mode) and whose
housekeeping timers run on a steady clock. Otherwise every node runs on the wall clock.
Best-of-N planning: planning_checkpoint:=DIR policy_mode:=planning [num_candidates:=N].
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
    robot = LaunchConfiguration("robot")
    is_sim = PythonExpression(["'", robot, "' == 'sim'"])
    # only a lockstep simulator publishes /clock; the sim itself never follows it (sim.launch.py)
    use_sim_time = PythonExpression(["'", robot, "' == 'sim' and '", LaunchConfiguration("mode"), "' == 'lockstep'"])
    share = FindPackageShare("aloha_bringup")
    args = [
        namespace_argument(),
        DeclareLaunchArgument("robot", default_value="sim", choices=["sim", "real"],
                              description="sim: MuJoCo ALOHA; real: the Interbotix arms and RealSense cameras"),
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
                              description="policy checkpoint directory (default: the shipped sim checkpoint)"),
        DeclareLaunchArgument("planning_checkpoint", default_value="",
                              description="checkpoint that scores proposals in planning mode ('' = no planning)"),
        DeclareLaunchArgument("policy_mode", default_value="direct", choices=["direct", "planning"],
                              description="sim episodes: the RunPolicy mode of run_policy's goals (planning needs "
                                          "planning_checkpoint)"),
        DeclareLaunchArgument("num_candidates", default_value="0",
                              description="planning proposals per chunk (0: the policy node's num_candidates)"),
        DeclareLaunchArgument("device", default_value="cpu", description="torch device: cpu, cuda, cuda:N"),
        DeclareLaunchArgument("task", default_value="transfer_cube,insertion",
                              description="comma-separated tasks of config/tasks.yaml that run_policy runs"),
        DeclareLaunchArgument("episodes", default_value="2",
                              description="sim: episodes per task run through the action, then shut down "
                                          "(0: wait for goals)"),
        DeclareLaunchArgument("seed_start", default_value="1000",
                              description="object pose seed of the first episode (demos use seeds < 1000)"),
        # lockstep by default: on a 2-core CPU the policy's inference starves a realtime sim (measured: joint
        # states 0.3 s late, the goal aborted as a stale sensor); realtime is for timing and GPU machines
        DeclareLaunchArgument("mode", default_value="lockstep", choices=["realtime", "lockstep"],
                              description="sim clock: lockstep (one step per command, deterministic), or "
                                          "realtime 50 Hz; the real robot is always realtime"),
        DeclareLaunchArgument("hardware", default_value="real", choices=["real", "fake"],
                              description="robot:=real only: the Interbotix/RealSense drivers, or the fake "
                                          "Interbotix driver (no cameras) to try the graph without a robot"),
        DeclareLaunchArgument("image_height", default_value="96",
                              description="sim camera height: the checkpoint's training size"),
        DeclareLaunchArgument("image_width", default_value="128",
                              description="sim camera width: the checkpoint's training size"),
    ]
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "sim.launch.py"])),
        # the sim starts on the first task (run_policy resets to each task in turn)
        launch_arguments=[("task", PythonExpression(["'", LaunchConfiguration("task"), "'.split(',')[0]"])),
                          ("seed", LaunchConfiguration("seed_start")), ("mode", LaunchConfiguration("mode")),
                          ("image_height", LaunchConfiguration("image_height")),
                          ("image_width", LaunchConfiguration("image_width"))],
        condition=IfCondition(is_sim),
    )
    real = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "robot.launch.py"])),
        launch_arguments=[("hardware", LaunchConfiguration("hardware"))],
        condition=IfCondition(PythonExpression(["'", robot, "' == 'real'"])),
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
            {
                "checkpoint": LaunchConfiguration("checkpoint"),
                "planning_checkpoint": LaunchConfiguration("planning_checkpoint"),
                "device": LaunchConfiguration("device"), "execute_steps": LaunchConfiguration("execute_steps"),
                "clock_mode": PythonExpression(["'", LaunchConfiguration("mode"), "' if '", robot,
                                                "' == 'sim' else 'realtime'"]),
                "use_sim_time": use_sim_time,
            },
        ],
        on_exit=Shutdown(reason="the policy node ended"),
    )
    runner = Node(
        package="cosmos_policy_ros",
        executable="run_policy",
        name="run_policy",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"tasks": LaunchConfiguration("task"), "episodes": LaunchConfiguration("episodes"),
                     "seed_start": LaunchConfiguration("seed_start"),
                     "policy_mode": LaunchConfiguration("policy_mode"),
                     "num_candidates": LaunchConfiguration("num_candidates"), "use_sim_time": use_sim_time}],
        condition=IfCondition(PythonExpression([is_sim, " and ", LaunchConfiguration("episodes"), " > 0"])),
        on_exit=Shutdown(reason="run_policy finished"),
    )
    return LaunchDescription([*args, sim, real, policy, runner])
