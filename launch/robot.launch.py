"""The real bimanual ALOHA on the robot contract: Interbotix arm drivers, RealSense cameras, aloha_driver.

`hardware:=real` (default) starts Interbotix's xs_sdk per arm and realsense2_camera per camera (both must be
installed: the Interbotix ALOHA stack and ros-$ROS_DISTRO-realsense2-camera); `hardware:=fake` starts the
fake Interbotix driver instead and no cameras, for machines without the robot. Ports, arm models, camera
serial numbers and the gripper calibration come from config/aloha_robot.yaml (or $ALOHA_ROBOT_CONFIG).
"""

from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription, Shutdown
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

from aloha_bringup.launch_defaults import namespace_argument, robot_namespace
from launch import LaunchDescription


def generate_launch_description():
    args = [
        namespace_argument(),
        DeclareLaunchArgument("hardware", default_value="real", choices=["real", "fake"],
                              description="real: Interbotix xs_sdk + RealSense drivers; fake: the fake Interbotix "
                                          "driver, no cameras"),
        DeclareLaunchArgument("launch_leaders", default_value="false", choices=["true", "false"],
                              description="also start the two leader arms (teleoperation)"),
        DeclareLaunchArgument("use_cameras", default_value="true", choices=["true", "false"],
                              description="start the RealSense cameras (hardware:=real only)"),
        DeclareLaunchArgument("load_configs", default_value="true", choices=["true", "false"],
                              description="xs_sdk writes the motor configs' EEPROM values at start (hardware:=real)"),
    ]
    # One file per hardware kind, chosen by name (robot_hardware_real / _fake.launch.py): a condition cannot
    # combine 'hardware' with the other switches. The path is a concatenation, as launch's PathJoin takes no lists.
    hardware = IncludeLaunchDescription(PythonLaunchDescriptionSource([
        PathJoinSubstitution([FindPackageShare("aloha_bringup"), "launch", "robot_hardware_"]),
        LaunchConfiguration("hardware"), ".launch.py"]))
    driver = Node(
        package="aloha_bringup",
        executable="aloha_driver",
        name="aloha_driver",
        namespace=robot_namespace(),
        output="screen",
        # without the driver nothing reaches the arms: a failed start-up stops the whole robot graph
        on_exit=Shutdown(reason="aloha_driver ended"),
    )
    return LaunchDescription([*args, hardware, driver])
