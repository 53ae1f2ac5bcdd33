"""Teleoperated demonstrations: the leader arms drive the followers, the recorder writes an episode per recording.

robot:=sim (default) brings up the simulated ALOHA on the wall clock and a simulated operator (sim_leader), whose
leader arms replay a scripted demonstration each time a recording starts. robot:=real brings up the real ALOHA
with its two leader arms (robot.launch.py launch_leaders:=true; hardware:=fake for a dry run without the arms).
Either way teleop maps the leaders to the followers through the contract, and the recorder (auto-recording of
policy runs off) serves the RecordEpisode service: record in a second terminal with
`ros2 run rollout_recorder record_demos --task transfer_cube`, or with the scoring page's buttons.
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.conditions import IfCondition
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution, PythonExpression
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace, sim_defaults
from launch import LaunchDescription


def generate_launch_description():
    defaults = sim_defaults()
    robot = LaunchConfiguration("robot")
    is_sim = PythonExpression(["'", robot, "' == 'sim'"])
    share = FindPackageShare("aloha_bringup")
    args = [
        namespace_argument(),
        DeclareLaunchArgument("robot", default_value="sim", choices=["sim", "real"],
                              description="sim: MuJoCo ALOHA and a simulated operator; real: the Interbotix arms "
                                          "with their leaders, and the RealSense cameras"),
        DeclareLaunchArgument("hardware", default_value="real", choices=["real", "fake"],
                              description="robot:=real only: the Interbotix/RealSense drivers, or the fake "
                                          "Interbotix driver (leaders included, no cameras) for a dry run"),
        DeclareLaunchArgument("task", default_value=defaults["task"],
                              description="sim: the task the simulator loads and the simulated operator "
                                          "demonstrates; both: the recorder's task when a recording names none"),
        DeclareLaunchArgument("seed", default_value=defaults["seed"],
                              description="sim: object pose seed of the first demonstration (then +1 each)"),
        DeclareLaunchArgument("out_dir", default_value="data/demos", description="episode folder"),
        DeclareLaunchArgument("image_height", default_value=defaults["image_height"],
                              description="camera image height (default: the contract's)"),
        DeclareLaunchArgument("image_width", default_value=defaults["image_width"],
                              description="camera image width (default: the contract's)"),
        DeclareLaunchArgument("compress", default_value="false", choices=["true", "false"],
                              description="store JPEG frames (quality 50), as ALOHA does"),
        DeclareLaunchArgument("leader_steps", default_value="0",
                              description="sim: steps of each simulated demonstration (0: the task's whole plan)"),
        DeclareLaunchArgument("follow_recording", default_value="true", choices=["true", "false"],
                              description="sim: the simulated operator demonstrates once per recording "
                                          "(false: demonstrations back to back)"),
    ]
    sim = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "sim.launch.py"])),
        # a person (or the simulated operator) moves the leaders on the wall clock: the sim follows it
        launch_arguments=[("namespace", LaunchConfiguration("namespace")), ("task", LaunchConfiguration("task")),
                          ("seed", LaunchConfiguration("seed")), ("mode", "realtime"),
                          ("image_height", LaunchConfiguration("image_height")),
                          ("image_width", LaunchConfiguration("image_width"))],
        condition=IfCondition(is_sim),
    )
    real = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "robot.launch.py"])),
        launch_arguments=[("namespace", LaunchConfiguration("namespace")),
                          ("hardware", LaunchConfiguration("hardware")), ("launch_leaders", "true")],
        condition=IfCondition(PythonExpression(["'", robot, "' == 'real'"])),
    )
    teleop = Node(
        package="aloha_bringup",
        executable="teleop",
        name="teleop",
        namespace=robot_namespace(),
        output="screen",
        # sim: the simulator's calibration; real: '' = the robot file's profile
        parameters=[{"gripper_calibration": PythonExpression(["'sim' if '", robot, "' == 'sim' else ''"])}],
        on_exit=Shutdown(reason="teleop ended"),
    )
    recorder = Node(
        package="rollout_recorder",
        executable="recorder_node",
        name="rollout_recorder",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"out_dir": LaunchConfiguration("out_dir"), "image_height": LaunchConfiguration("image_height"),
                     "image_width": LaunchConfiguration("image_width"), "compress": LaunchConfiguration("compress"),
                     "task": LaunchConfiguration("task"), "sim": is_sim, "auto_record_policy": False}],
        on_exit=Shutdown(reason="the recorder ended"),
    )
    leader = Node(
        package="aloha_sim",
        executable="sim_leader",
        name="sim_leader",
        namespace=robot_namespace(),
        output="screen",
        parameters=[{"task": LaunchConfiguration("task"), "seed_start": LaunchConfiguration("seed"),
                     "max_steps": LaunchConfiguration("leader_steps"),
                     "follow_recording": LaunchConfiguration("follow_recording")}],
        condition=IfCondition(is_sim),
    )
    return LaunchDescription([*args, sim, real, teleop, recorder, leader])
