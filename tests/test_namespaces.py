"""One namespace per robot: the contract's names are relative, so two robots share a ROS domain.

Measured before: every contract name was absolute (/aloha/joint_states, /follower_left/..., /cam_high/...), so a
namespace changed nothing and two robots on one domain always collided.
"""

from __future__ import annotations

import pytest
from ros_harness import wait_until

SMALL = {"image_height": 48, "image_width": 64, "camera_rate_hz": 5.0, "mode": "realtime"}


def evaluate(name, **overrides):
    from aloha_bringup import wheel_launch as wl
    description = wl.load_description(wl.find_launch_file("aloha_bringup", name))
    return wl.evaluate(description, {k: str(v) for k, v in overrides.items()})


def node_namespace(node) -> str:
    return next(arg.split(":=", 1)[1] for arg in node.argv if arg.startswith("__ns:="))


def test_robot_side_names_are_relative_and_the_global_ones_absolute():
    from aloha_contract import fully_qualified, load_contract
    c = load_contract()
    relative = [c.topic("joint_states"), c.topic("joint_commands"), c.topic("stage_score"), c.camera_topic("cam_high"),
                c.follower_joint_states_topic("left"), c.topic("policy_run"), c.service("reset_episode"),
                c.action("run_policy")]
    assert not [name for name in relative if name.startswith("/")]
    assert c.topic("diagnostics") == "/diagnostics" and c.topic("clock") == "/clock"
    assert c.qualified_topic("joint_states", "/robot_a") == "/robot_a/aloha/joint_states"
    assert c.qualified_topic("joint_states") == "/aloha/joint_states"
    assert fully_qualified(c.topic("diagnostics"), "robot_a") == "/diagnostics"
    assert fully_qualified(c.camera_topic("cam_high"), "/a/b/") == "/a/b/cam_high/camera/color/image_rect_raw"


@pytest.mark.parametrize("name, arguments", [
    ("policy.launch.py", {}),
    ("policy.launch.py", {"robot": "real", "hardware": "fake"}),
    ("eval.launch.py", {}),
    ("record.launch.py", {}),
    ("sim_scripted.launch.py", {}),
    ("teleop.launch.py", {}),
    ("teleop.launch.py", {"robot": "real", "hardware": "fake"}),
])
def test_the_namespace_argument_reaches_every_node(name, arguments):
    nodes, _ = evaluate(name, **arguments, namespace="robot_a")
    assert nodes
    assert {n.label: node_namespace(n) for n in nodes} == {n.label: "/robot_a" for n in nodes}
    default, _ = evaluate(name, **arguments)  # no namespace: the root, as before
    assert {node_namespace(n) for n in default} == {"/"}


def test_per_arm_and_per_camera_drivers_stay_under_the_robot_namespace():
    """xs_sdk and realsense2_camera run in <robot ns>/<arm or camera>; their remaps are private names, which
    a namespace cannot break (an absolute rule would only match at the root)."""
    from aloha_bringup import wheel_launch as wl
    from aloha_bringup.interbotix_config import realsense_remappings
    from aloha_contract import fully_qualified, load_contract
    wl.install_shim()
    from aloha_bringup.launch_defaults import under_robot_namespace
    for robot_ns, expected in (("", "follower_left"), ("robot_a", "robot_a/follower_left"),
                               ("/robot_a", "robot_a/follower_left")):
        context = wl.Context(arguments={"namespace": robot_ns})
        assert wl.perform(under_robot_namespace("follower_left"), context) == expected
    contract = load_contract()
    (source, target), = realsense_remappings(contract, "cam_high")
    # the camera node cam_high/camera under /robot_a publishes ~/color/... = /robot_a/cam_high/camera/color/...
    assert target.startswith("~/")
    assert "/robot_a/cam_high/camera/" + target[2:] == fully_qualified(contract.camera_topic("cam_high"), "/robot_a")


@pytest.mark.ros
def test_two_simulators_in_two_namespaces_share_a_domain(start_node, test_node):
    """Two robots on one ROS domain, one namespace each: both start, and a reset reaches only its own."""
    from sensor_msgs.msg import JointState

    from aloha_contract import load_contract
    from aloha_contract.ros import qos_profile
    from aloha_interfaces.srv import ResetEpisode
    contract = load_contract()
    sims = {ns: start_node("aloha_sim", "sim_node", params=SMALL, ros_args=["-r", f"__ns:=/{ns}"])
            for ns in ("robot_a", "robot_b")}
    for sim in sims.values():
        assert sim.wait_for_output("ALOHA sim ready", 90), sim.output
    states = {ns: [] for ns in sims}
    for ns in sims:
        test_node.create_subscription(JointState, contract.qualified_topic("joint_states", ns),
                                      states[ns].append, qos_profile(contract, "joint_states"))
    assert wait_until(lambda: all(len(s) > 5 for s in states.values()), 30), {ns: s.output for ns, s in sims.items()}
    assert all(sim.proc.poll() is None for sim in sims.values())
    assert not any("another simulator" in sim.output for sim in sims.values())

    client = test_node.create_client(ResetEpisode, fully_qualified_service(contract, "robot_b"))
    assert client.wait_for_service(timeout_sec=20)
    future = client.call_async(ResetEpisode.Request(task="insertion", seed=7))
    assert wait_until(future.done, 30) and future.result().success, sims["robot_b"].output
    # the node's log line travels through its stdout pipe and may land after the service response (CI saw it)
    assert sims["robot_b"].wait_for_output("episode reset: insertion", 10), sims["robot_b"].output
    assert not sims["robot_a"].wait_for_output("episode reset: insertion", 2), sims["robot_a"].output


@pytest.mark.ros
def test_lockstep_simulators_still_need_a_domain_each(start_node):
    """/clock is global (every node with use_sim_time listens to it): a second lockstep sim refuses, even in its
    own namespace, and says why."""
    lockstep = {**SMALL, "mode": "lockstep"}
    first = start_node("aloha_sim", "sim_node", params=lockstep, ros_args=["-r", "__ns:=/robot_a"])
    assert first.wait_for_output("ALOHA sim ready", 90), first.output
    second = start_node("aloha_sim", "sim_node", params=lockstep, ros_args=["-r", "__ns:=/robot_b"])
    rc = second.proc.wait(timeout=90)
    assert rc != 0 and "/clock" in second.output, second.output
    assert first.proc.poll() is None, first.output


def fully_qualified_service(contract, namespace: str) -> str:
    from aloha_contract import fully_qualified
    return fully_qualified(contract.service("reset_episode"), namespace)


TWO_ROBOTS = '''
from launch import LaunchDescription
from launch.actions import GroupAction, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import PathJoinSubstitution
from launch_ros.actions import Node, PushRosNamespace
from launch_ros.substitutions import FindPackageShare


def generate_launch_description():
    def robot(name):
        return GroupAction([
            PushRosNamespace(name),
            IncludeLaunchDescription(PythonLaunchDescriptionSource(
                PathJoinSubstitution([FindPackageShare("aloha_bringup"), "launch", "sim_scripted.launch.py"])),
                launch_arguments=[("mode", "realtime")]),
        ])
    outside = Node(package="aloha_sim", executable="sim_node", name="after_the_groups")
    return LaunchDescription([robot("robot_a"), robot("robot_b"), outside])
'''


def test_an_outer_push_ros_namespace_applies_to_our_launch_files(tmp_path):
    """A user's two-robot file, the way launch_ros users write one: each include under its own namespace, the
    push undone after each scoped group (the wheel launcher follows launch_ros's rules)."""
    from aloha_bringup import wheel_launch as wl
    path = tmp_path / "two_robots.launch.py"
    path.write_text(TWO_ROBOTS)
    nodes, _ = wl.evaluate(wl.load_description(path), {})
    found = sorted((n.label, next((a for a in n.argv if a.startswith("__ns:=")), None)) for n in nodes)
    assert found == [("after_the_groups", None),
                     ("aloha_sim", "__ns:=/robot_a"), ("aloha_sim", "__ns:=/robot_b"),
                     ("scripted_driver", "__ns:=/robot_a"), ("scripted_driver", "__ns:=/robot_b")]
    # our own namespace argument nests under the pushed one, as in launch_ros
    nodes, _ = wl.evaluate(wl.load_description(wl.find_launch_file("aloha_bringup", "sim.launch.py")),
                           {"namespace": "left_cell"}, ros_namespace="/lab")
    assert [node_namespace(n) for n in nodes] == ["/lab/left_cell"]
