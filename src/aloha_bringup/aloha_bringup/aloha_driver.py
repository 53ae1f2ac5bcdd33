"""The real-robot driver: the robot contract on top of the Interbotix arm drivers (xs_sdk, one per arm).

- ``/aloha/joint_commands`` (14-D) -> per follower arm a ``JointGroupCommand`` ('arm', 6 joints) and a
  ``JointSingleCommand`` ('gripper', follower gripper joint), after the safety gate;
- ``/follower_{left,right}/joint_states`` (9 names each) -> ``/aloha/joint_states`` (14-D, gripper from the
  finger position), stamped with the older of the two source stamps;
- at start: waits for each follower's services and first joint states, reboots the grippers (clears an
  overload error), sets operating modes and torques the followers on.

A refused command (malformed, NaN, beyond limits, too large a step, too far from the measured position,
stale follower state) is not forwarded: the followers keep their last goal, i.e. the last safe target.
The translation itself lives in :mod:`aloha_bringup.interbotix_bridge` (plain Python, tested without ROS).

``/diagnostics`` carries the rates (commands in, commands forwarded, follower and 14-D joint states), the
refused commands per reason and the last fault. One robot per ROS domain: the driver refuses to start when
another driver or a simulator already publishes this robot's joint states (``peer_check_s`` for discovery).
"""

from __future__ import annotations

import sys
import time

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from interbotix_xs_msgs.srv import OperatingModes, Reboot, TorqueEnable
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState

from aloha_contract import ContractError, fully_qualified, load_contract
from aloha_contract.diagnostics import ERROR, OK, WARN, RateMeter, diagnostic_array
from aloha_contract.node_main import run_node
from aloha_contract.peers import (
    DISCOVERY_WAIT_S,
    AnotherRobotError,
    NewcomerWatch,
    refusal_message,
    wait_for_other_robots,
)
from aloha_contract.reason_log import ReasonLog
from aloha_contract.robot_config import load_robot_config
from aloha_contract.ros import MessageError, joint_state_to_vector, qos_profile, vector_to_joint_state
from aloha_contract.safety import SafetyGate

from .interbotix_bridge import (
    ARM_GROUP,
    FOLLOWER_ARM_MODE,
    FOLLOWER_GRIPPER_MODE,
    GRIPPER_JOINT,
    FollowerStateError,
    FollowerStates,
    arm_commands,
    interbotix_service,
)

WAIT_LOG_PERIOD_S = 5.0  # how often the start-up wait says what it is still waiting for
DIAGNOSTICS_PERIOD_S = 1.0


class StartupError(RuntimeError):
    """The arms could not be set up (a service or a joint state stream never came)."""


class AlohaDriver(Node):
    def __init__(self) -> None:
        super().__init__("aloha_driver")
        discovery_started_s = time.monotonic()  # discovery runs while the configuration loads
        contract_file = self.declare_parameter("contract_file", "").value
        robot_file = self.declare_parameter("robot_config_file", "").value
        self.startup_timeout_s = float(self.declare_parameter("startup_timeout_s", 30.0).value)
        self.reboot_grippers = bool(self.declare_parameter("reboot_grippers", True).value)
        # repeats of one refusal reason are logged at most this often (0: every refusal)
        log_interval_s = float(self.declare_parameter("refusal_log_interval_s", 1.0).value)
        # seconds discovery gets to find another driver or a simulator of this robot before this one starts
        peer_check_s = float(self.declare_parameter("peer_check_s", DISCOVERY_WAIT_S).value)
        self.contract = c = load_contract(contract_file or None)
        self.robot = load_robot_config(robot_file or None, contract=c)
        self.calibration = c.gripper_calibration(self.robot.gripper_calibration)
        self.stale_after_s = float(c.raw["safety"]["stale_after_s"]["joint_states"])

        self.gate = SafetyGate(c)
        self.gate_needs_reset = True  # the first command (and the first after a stale state) starts from measured
        self.states = FollowerStates(c, self.calibration)
        self.refusals = ReasonLog(log_interval_s)
        self.state_errors = ReasonLog(log_interval_s)  # malformed follower messages: logged like refusals, counted apart
        self.ready = False
        self.forwarded = 0
        self.last_fault = ""
        self.rates = RateMeter("commands", "forwarded", "joint_states",
                               *(f"{c.follower_robot(arm)}_joint_states" for arm in c.arms))
        # before this driver publishes anything: the other one must not see a second robot either
        self.refuse_if_another_robot(peer_check_s, discovery_started_s)

        self.pub_state = self.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        # discovery may still be under way: a second robot seen just after start-up means this one is the newcomer
        self.newcomer_watch = NewcomerWatch(self, c.topic("joint_states"), peer_check_s,
                                            "driver or simulator of this robot",
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.pub_group, self.pub_single = {}, {}
        self.service_clients = {}
        command_qos = qos_profile(c, "joint_commands")
        for arm in c.arms:
            robot = c.follower_robot(arm)
            self.pub_group[robot] = self.create_publisher(
                JointGroupCommand, c.topic("follower_joint_group_command", arm_robot=robot), command_qos)
            self.pub_single[robot] = self.create_publisher(
                JointSingleCommand, c.topic("follower_joint_single_command", arm_robot=robot), command_qos)
            self.create_subscription(JointState, c.follower_joint_states_topic(arm),
                                     lambda msg, arm=arm: self.on_follower_state(arm, msg), qos_profile(c, "joint_states"))
            self.service_clients[robot] = {
                key: self.create_client(srv_type, interbotix_service(c, key, robot))
                for key, srv_type in (("torque_enable", TorqueEnable), ("set_operating_modes", OperatingModes),
                                      ("reboot_motors", Reboot))}
        self.create_subscription(JointState, c.topic("joint_commands"), self.on_command, qos_profile(c, "joint_commands"))
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, c.topic("diagnostics"), 10)
        # on the wall clock: the diagnostics of a real robot never wait for a simulated clock
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics,
                          clock=Clock(clock_type=ClockType.STEADY_TIME))

    def refuse_if_another_robot(self, wait_s: float, since_s: float) -> None:
        """Raise AnotherRobotError when another driver or a simulator already serves this robot's joint states."""
        found = wait_for_other_robots(self, wait_s, since_s, topics=[self.contract.topic("joint_states")])
        if found:
            raise AnotherRobotError(refusal_message(self, "driver or simulator of this robot", found))

    # ---- start-up ----
    def start_robots(self) -> None:
        """Wait for the followers' services and joint states, then set modes and torque; raises StartupError."""
        c = self.contract
        deadline = time.monotonic() + self.startup_timeout_s
        next_report = time.monotonic() + WAIT_LOG_PERIOD_S
        while True:
            missing = self._missing_inputs()
            if not missing:
                break
            now = time.monotonic()
            if now > deadline:
                ports = {a.robot: a.port for a in self.robot.followers}
                raise StartupError(
                    f"after {self.startup_timeout_s:.0f} s still missing {missing}: start the arm drivers first "
                    f"(robot.launch.py starts xs_sdk per arm), check that each arm is powered and its USB port is "
                    f"connected {ports}, and that they run in this ROS_DOMAIN_ID")
            if now > next_report:
                self.get_logger().info(f"waiting for {missing}")
                next_report = now + WAIT_LOG_PERIOD_S
            rclpy.spin_once(self, timeout_sec=0.05)

        for robot in (c.follower_robot(arm) for arm in c.arms):
            if self.reboot_grippers:
                self._call(robot, "reboot_motors", Reboot.Request(cmd_type="single", name=GRIPPER_JOINT, enable=True,
                                                                  smart_reboot=False))
            for cmd_type, name, mode in (("group", ARM_GROUP, FOLLOWER_ARM_MODE),
                                         ("single", GRIPPER_JOINT, FOLLOWER_GRIPPER_MODE)):
                self._call(robot, "set_operating_modes", OperatingModes.Request(
                    cmd_type=cmd_type, name=name, mode=mode, profile_type="velocity", profile_velocity=0,
                    profile_acceleration=0))
            for cmd_type, name in (("group", ARM_GROUP), ("single", GRIPPER_JOINT)):
                self._call(robot, "torque_enable", TorqueEnable.Request(cmd_type=cmd_type, name=name, enable=True))
            self.get_logger().info(f"{robot}: {'gripper rebooted, ' if self.reboot_grippers else ''}operating modes "
                                   f"set, torque on")
        self.ready = True
        self.get_logger().info(
            f"ALOHA driver ready: followers {[c.follower_robot(a) for a in c.arms]} torqued on, arm "
            f"'{FOLLOWER_ARM_MODE}', gripper '{FOLLOWER_GRIPPER_MODE}', calibration '{self.robot.gripper_calibration}'; "
            f"forwarding {self._name(c.topic('joint_commands'))}, publishing {self._name(c.topic('joint_states'))}")

    def _name(self, name: str) -> str:
        return fully_qualified(name, self.get_namespace())

    def _missing_inputs(self) -> list[str]:
        missing = [self._name(client.srv_name) for clients in self.service_clients.values()
                   for key, client in clients.items()
                   if (key != "reboot_motors" or self.reboot_grippers) and not client.service_is_ready()]
        missing += [self._name(self.contract.follower_joint_states_topic(arm))
                    for arm in self.states.stale_arms(time.monotonic(), float("inf"))]
        return missing

    def _call(self, robot: str, key: str, request) -> None:
        client = self.service_clients[robot][key]
        future = client.call_async(request)
        rclpy.spin_until_future_complete(self, future, timeout_sec=self.startup_timeout_s)
        if not future.done():
            raise StartupError(f"{client.srv_name} did not answer within {self.startup_timeout_s:.0f} s "
                               f"(request {request}); is {robot}'s xs_sdk stuck on its serial port?")
        if future.exception() is not None:
            raise StartupError(f"{client.srv_name} failed: {future.exception()}")

    # ---- follower states -> 14-D state ----
    def on_follower_state(self, arm: str, msg: JointState) -> None:
        self.rates.count(f"{self.contract.follower_robot(arm)}_joint_states")
        stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        try:
            self.states.update(arm, msg.name, msg.position, msg.velocity, msg.effort, msg.header.stamp, stamp_ns,
                               time.monotonic())
        except FollowerStateError as exc:
            self._state_error(f"ignoring a follower joint state: {exc}")
            return
        obs = self.states.take_if_fresh()
        if obs is not None:
            self.pub_state.publish(vector_to_joint_state(obs.position, self.contract.joint_names, obs.stamp,
                                                         velocity=obs.velocity, effort=obs.effort))
            self.rates.count("joint_states")

    # ---- 14-D command -> Interbotix commands ----
    def on_command(self, msg: JointState) -> None:
        c = self.contract
        self.rates.count("commands")
        if not self.ready:
            self.refuse("not_ready", "the followers are not set up yet (waiting for their services and joint states)")
            return
        try:
            target = joint_state_to_vector(msg, c.joint_names, what=c.topic("joint_commands"))
        except MessageError as exc:
            self.refuse("invalid", str(exc))
            return
        stale = self.states.stale_arms(time.monotonic(), self.stale_after_s)
        if stale:
            self.gate_needs_reset = True
            self.refuse("stale", f"follower joint states of {stale} older than {self.stale_after_s} s "
                                 f"(is their xs_sdk running?)")
            return
        measured = self.states.measured_for_commands()
        if self.gate_needs_reset:
            self.gate.reset(measured)
            self.gate_needs_reset = False
        # the step limit covers the time since the last accepted command: a late or replaced message may move on
        violation = self.gate.check(target, measured, now_s=time.monotonic())
        if violation is not None:
            self.refuse(violation.reason, violation.detail)
            return
        for command in arm_commands(c, target, self.calibration):
            self.pub_group[command.robot].publish(JointGroupCommand(name=ARM_GROUP, cmd=list(command.arm_positions)))
            self.pub_single[command.robot].publish(JointSingleCommand(name=GRIPPER_JOINT, cmd=command.gripper_position))
        self.forwarded += 1
        self.rates.count("forwarded")

    def refuse(self, reason: str, detail: str) -> None:
        self.last_fault = f"refused command [{reason}]: {detail}"
        suppressed = self.refusals.record(reason, time.monotonic())
        if suppressed is None:
            return
        more = f", {suppressed} more like it since the last report" if suppressed else ""
        self.get_logger().warning(
            f"refused joint command [{reason}]: {detail}; holding the last safe target "
            f"(refused so far: {self.refusals.summary()}{more})")

    def _state_error(self, text: str) -> None:
        self.last_fault = text
        if self.state_errors.record("follower_state", time.monotonic()) is not None:
            self.get_logger().warning(text)

    # ---- diagnostics ----
    def publish_diagnostics(self) -> None:
        c = self.contract
        stale = self.states.stale_arms(time.monotonic(), self.stale_after_s)
        if not self.ready:
            level, message = WARN, "starting: waiting for the followers' services and joint states"
        elif stale:
            level, message = ERROR, f"follower joint states of {stale} older than {self.stale_after_s} s: commands stop"
        elif self.refusals.total or self.state_errors.total:
            level, message = WARN, self.last_fault
        else:
            level, message = OK, "forwarding commands"
        values = {
            "ready": self.ready,
            **{f"{stream}_rate_hz": rate for stream, rate in self.rates.rates_hz().items()},
            "forwarded_commands": self.forwarded,
            "refused_commands": self.refusals.total,
            **{f"refused_{reason}": n for reason, n in sorted(self.refusals.counts.items())},
            "follower_state_errors": self.state_errors.total,
            "stale_followers": ",".join(c.follower_robot(arm) for arm in stale),
            "last_fault": self.last_fault,
        }
        self.pub_diagnostics.publish(diagnostic_array("aloha_driver", c.robot, level, message, values,
                                                      self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    return run_node("aloha_driver", AlohaDriver, setup=AlohaDriver.start_robots,
                    setup_errors=(StartupError, ContractError, AnotherRobotError), args=args)


if __name__ == "__main__":
    sys.exit(main())
