"""``teleop``: the leader arms drive the followers through the robot contract.

Subscribes to each leader arm's joint_states (Interbotix layout, the contract's ``leader_robots`` on the per-arm
``{arm_robot}/joint_states`` template) and to the followers' 14-D joint state; publishes the 14-D command on
the contract's joint_commands at the control rate, on the wall clock (a person moves the leaders). The
simulator or the real-robot driver executes it like any other command, through the same safety gate.

The mapping and the hold live in :mod:`aloha_bringup.teleop_mapping` (plain Python): a stale or malformed
leader, or a target the safety gate refuses, holds the arm at the last safe target until the leaders are
brought back to the followers' pose; motion faster than the followers may move is slowed to their velocity
limit. ``/diagnostics`` carries the rates, the holds per reason and the last fault.
"""

from __future__ import annotations

import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.node import Node
from sensor_msgs.msg import JointState

from aloha_contract import ContractError, load_contract
from aloha_contract.diagnostics import OK, WARN, RateMeter, diagnostic_array
from aloha_contract.node_main import run_node
from aloha_contract.reason_log import ReasonLog
from aloha_contract.robot_config import load_robot_config
from aloha_contract.ros import MessageError, joint_state_to_vector, qos_profile, vector_to_joint_state

from .teleop_mapping import NOT_MATCHED, LeaderStateError, Teleoperation, leader_joint_states_topic, leader_robot

DIAGNOSTICS_PERIOD_S = 1.0


class TeleopNode(Node):
    def __init__(self) -> None:
        super().__init__("teleop")
        contract_file = self._param("contract_file", "", "robot contract YAML ('': $ALOHA_CONTRACT or the shipped one)")
        robot_file = self._param("robot_config_file", "", "robot file ('': $ALOHA_ROBOT_CONFIG or the shipped one)")
        profile = self._param("gripper_calibration", "", "gripper calibration profile of the contract for the "
                              "leaders: real (hardware) or sim; '' = the robot file's")
        # repeats of one hold reason are logged at most this often
        log_interval_s = float(self._param("hold_log_interval_s", 1.0, "seconds between log lines of one hold reason"))
        self.contract = c = load_contract(contract_file or None)
        self.profile = profile or load_robot_config(robot_file or None, contract=c).gripper_calibration
        stale_after_s = float(c.raw["safety"]["stale_after_s"]["joint_states"])
        self.teleop = Teleoperation(c, c.gripper_calibration(self.profile), stale_after_s)
        self.holds = ReasonLog(log_interval_s)
        self.message_errors = ReasonLog(log_interval_s)
        self.last_fault = ""
        self.commands = 0
        self.slowed = 0  # ticks whose target was slowed to the velocity limit (the leaders moved faster)
        self.leaders = [leader_robot(c, arm) for arm in c.arms]
        self.rates = RateMeter("commands", "joint_states", *(f"{robot}_joint_states" for robot in self.leaders))

        self.pub_command = self.create_publisher(JointState, c.topic("joint_commands"), qos_profile(c, "joint_commands"))
        self.pub_diagnostics = self.create_publisher(DiagnosticArray, c.topic("diagnostics"), 10)
        leader_subscriptions = [
            self.create_subscription(JointState, leader_joint_states_topic(c, arm),
                                     lambda msg, arm=arm: self.on_leader(arm, msg), qos_profile(c, "joint_states"))
            for arm in c.arms]
        self.create_subscription(JointState, c.topic("joint_states"), self.on_follower, qos_profile(c, "joint_states"))
        # on the wall clock whatever use_sim_time says: a person moves the leaders in real time
        steady = Clock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(c.control_period_s, self.on_tick, clock=steady)
        self.create_timer(DIAGNOSTICS_PERIOD_S, self.publish_diagnostics, clock=steady)
        self.get_logger().info(
            f"teleop ready: leaders {[sub.topic_name for sub in leader_subscriptions]} -> "
            f"{self.pub_command.topic_name} at {c.control_rate_hz:.0f} Hz, gripper calibration '{self.profile}'; "
            f"the arms follow once the leaders are at the followers' pose")

    def _param(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    def on_leader(self, arm: str, msg: JointState) -> None:
        self.rates.count(f"{leader_robot(self.contract, arm)}_joint_states")
        try:
            self.teleop.update_leader(arm, msg.name, msg.position, time.monotonic())
        except LeaderStateError as exc:
            self.last_fault = f"unusable leader message: {exc}"
            if self.message_errors.record(f"leader_{arm}", time.monotonic()) is not None:
                self.get_logger().warning(f"{self.last_fault} (the arm holds until a good one arrives)")

    def on_follower(self, msg: JointState) -> None:
        self.rates.count("joint_states")
        try:
            qpos = joint_state_to_vector(msg, self.contract.joint_names, self.contract.topic("joint_states"))
        except MessageError as exc:
            self.last_fault = str(exc)
            if self.message_errors.record("follower", time.monotonic()) is not None:
                self.get_logger().warning(f"ignoring a follower joint state: {exc}")
            return
        self.teleop.update_follower(qpos, time.monotonic())

    def on_tick(self) -> None:
        was_following = self.teleop.following
        step = self.teleop.tick(time.monotonic())
        if step.command is not None:
            self.pub_command.publish(vector_to_joint_state(step.command, self.contract.joint_names,
                                                           self.get_clock().now().to_msg()))
            self.commands += 1
            self.slowed += step.slowed
            self.rates.count("commands")
        if step.following and not was_following:
            self.get_logger().info("following the leaders")
        elif not step.following:
            self.hold(step.reason, step.detail)

    def hold(self, reason: str, detail: str) -> None:
        self.last_fault = f"holding [{reason}]: {detail}"
        suppressed = self.holds.record(reason, time.monotonic())
        if suppressed is None:
            return
        more = f" ({suppressed} more ticks like it since the last report)" if suppressed else ""
        if self.teleop.hold_target is None:
            self.get_logger().info(f"not commanding yet [{reason}]: {detail}{more}")
        else:
            again = "" if reason == NOT_MATCHED else "; to take over again, bring the leaders to the followers' pose"
            self.get_logger().warning(f"holding the arm at the last safe target [{reason}]: {detail}{again}{more}")

    def publish_diagnostics(self) -> None:
        if self.teleop.following:
            level, message = OK, "following the leaders"
        else:
            level, message = WARN, self.last_fault or "waiting for the leaders and the followers"
        values = {
            "following": self.teleop.following,
            "gripper_calibration": self.profile,
            **{f"{stream}_rate_hz": rate for stream, rate in self.rates.rates_hz().items()},
            "commands_published": self.commands,
            "slowed_ticks": self.slowed,
            "hold_ticks": self.holds.total,
            **{f"hold_{reason}": n for reason, n in sorted(self.holds.counts.items())},
            "unusable_messages": self.message_errors.total,
            "last_fault": self.last_fault,
        }
        self.pub_diagnostics.publish(diagnostic_array("teleop", self.contract.robot, level, message, values,
                                                      self.get_clock().now().to_msg()))


def main(args: list[str] | None = None) -> int:
    return run_node("teleop", TeleopNode, setup_errors=(ContractError, ValueError), args=args)


if __name__ == "__main__":
    sys.exit(main())
