"""A stand-in for Interbotix's xs_sdk arm drivers, for machines without the arms (tests, CI, dry runs).

Per robot (the followers, and the leaders with ``with_leaders:=true``) it speaks xs_sdk's interfaces:
``/<robot>/joint_states`` (9 names, ``publish_rate_hz``), ``commands/joint_group`` ('arm') and
``commands/joint_single``, and the services torque_enable, set_operating_modes, reboot_motors,
get_robot_info, set/get_motor_registers. Each joint follows its goal as a first-order lag
(``time_constant_s``) and moves only while torqued on and in a position-type operating mode, as the motors
do. The fingers follow the gripper joint through the robot's gripper calibration. The joint model itself
is :class:`aloha_bringup.fake_arm.FakeArm` (plain Python).
"""

from __future__ import annotations

import sys
import time

import numpy as np
from interbotix_xs_msgs.msg import JointGroupCommand, JointSingleCommand
from interbotix_xs_msgs.srv import OperatingModes, Reboot, RegisterValues, RobotInfo, TorqueEnable
from rclpy.node import Node
from sensor_msgs.msg import JointState

from aloha_contract import ContractError, load_contract
from aloha_contract.node_main import run_node
from aloha_contract.robot_config import load_robot_config
from aloha_contract.ros import qos_profile, vector_to_joint_state

from .fake_arm import FakeArm, FakeArmError
from .interbotix_bridge import interbotix_service


class FakeInterbotix(Node):
    def __init__(self) -> None:
        super().__init__("fake_interbotix")
        contract_file = self.declare_parameter("contract_file", "").value
        robot_file = self.declare_parameter("robot_config_file", "").value
        with_leaders = bool(self.declare_parameter("with_leaders", False).value)
        rate_hz = float(self.declare_parameter("publish_rate_hz", 100.0).value)
        time_constant_s = float(self.declare_parameter("time_constant_s", 0.05).value)
        self.contract = c = load_contract(contract_file or None)
        robot_config = load_robot_config(robot_file or None, contract=c)
        calibration = c.gripper_calibration(robot_config.gripper_calibration)
        if rate_hz <= 0 or time_constant_s <= 0:
            raise ValueError(f"publish_rate_hz={rate_hz} and time_constant_s={time_constant_s} must be positive")

        arms = robot_config.followers + (robot_config.leaders if with_leaders else [])
        self.arms: dict[str, FakeArm] = {}
        self.pub_states = {}
        self.warned: set[tuple[str, str]] = set()
        for arm in arms:
            robot = arm.robot
            self.arms[robot] = FakeArm(c, calibration, time_constant_s)
            self.pub_states[robot] = self.create_publisher(
                JointState, c.topic("follower_joint_states", arm_robot=robot), qos_profile(c, "joint_states"))
            self.create_subscription(JointGroupCommand, c.topic("follower_joint_group_command", arm_robot=robot),
                                     lambda msg, r=robot: self.on_group(r, msg), 10)
            self.create_subscription(JointSingleCommand, c.topic("follower_joint_single_command", arm_robot=robot),
                                     lambda msg, r=robot: self.on_single(r, msg), 10)
            for key, srv_type, handler in (
                    ("torque_enable", TorqueEnable, self.on_torque_enable),
                    ("set_operating_modes", OperatingModes, self.on_operating_modes),
                    ("reboot_motors", Reboot, self.on_reboot),
                    ("get_robot_info", RobotInfo, self.on_robot_info),
                    ("set_motor_registers", RegisterValues, self.on_set_registers),
                    ("get_motor_registers", RegisterValues, self.on_get_registers)):
                self.create_service(srv_type, interbotix_service(c, key, robot),
                                    lambda req, res, r=robot, h=handler: self._serve(r, h, req, res))
        self.period_s = 1.0 / rate_hz
        self.last_step_s = time.monotonic()
        self.create_timer(self.period_s, self.on_tick)
        self.get_logger().info(f"fake Interbotix arms up: {sorted(self.arms)} (torque off until enabled), joint "
                               f"states at {rate_hz:.0f} Hz, time constant {time_constant_s} s")

    def _serve(self, robot, handler, request, response):
        try:
            return handler(robot, self.arms[robot], request, response)
        except FakeArmError as exc:
            # xs_sdk logs an invalid request and answers it unchanged: do the same
            self.get_logger().error(f"{robot}: {exc}")
            return response

    # ---- commands ----
    def on_group(self, robot: str, msg: JointGroupCommand) -> None:
        self._command(robot, lambda arm: arm.command_group(msg.name, list(msg.cmd)))

    def on_single(self, robot: str, msg: JointSingleCommand) -> None:
        self._command(robot, lambda arm: arm.command_single(msg.name, float(msg.cmd)))

    def _command(self, robot: str, apply) -> None:
        try:
            ignored = apply(self.arms[robot])
        except FakeArmError as exc:
            self.get_logger().error(f"{robot}: {exc}")
            return
        for joint, why in ignored:
            if (robot, joint) not in self.warned:  # once per joint, as a real motor silently ignores them
                self.warned.add((robot, joint))
                self.get_logger().warning(f"{robot}: command for '{joint}' ignored ({why})")

    # ---- services ----
    def on_torque_enable(self, robot, arm: FakeArm, req: TorqueEnable.Request, res):
        arm.torque(req.cmd_type, req.name, req.enable)
        self.get_logger().info(f"{robot}: torque {'on' if req.enable else 'off'} for {req.cmd_type} '{req.name}'")
        return res

    def on_operating_modes(self, robot, arm: FakeArm, req: OperatingModes.Request, res):
        arm.set_mode(req.cmd_type, req.name, req.mode, req.profile_type)
        self.get_logger().info(f"{robot}: operating mode of {req.cmd_type} '{req.name}' -> {req.mode} "
                               f"(profile {req.profile_type} {req.profile_velocity}/{req.profile_acceleration})")
        return res

    def on_reboot(self, robot, arm: FakeArm, req: Reboot.Request, res):
        arm.reboot(req.cmd_type, req.name, req.enable)
        after = "on" if req.enable else "off"
        self.get_logger().info(f"{robot}: rebooted {req.cmd_type} '{req.name}' (torque {after} after)")
        return res

    def on_robot_info(self, robot, arm: FakeArm, req: RobotInfo.Request, res):
        info = arm.info(req.cmd_type, req.name)
        res.mode, res.profile_type = info.mode, info.profile_type
        res.joint_names = info.joint_names
        res.joint_ids = info.joint_ids
        res.joint_lower_limits, res.joint_upper_limits = info.lower_limits, info.upper_limits
        res.joint_velocity_limits = info.velocity_limits
        res.joint_sleep_positions = info.sleep_positions
        res.joint_state_indices = info.joint_state_indices
        res.num_joints = len(info.joint_names)
        res.name = [req.name]
        return res

    def on_set_registers(self, robot, arm: FakeArm, req: RegisterValues.Request, res):
        arm.set_register(req.cmd_type, req.name, req.reg, int(req.value))
        return res

    def on_get_registers(self, robot, arm: FakeArm, req: RegisterValues.Request, res):
        res.values = arm.get_register(req.cmd_type, req.name, req.reg)
        return res

    # ---- motion and joint states ----
    def on_tick(self) -> None:
        now = time.monotonic()
        dt, self.last_step_s = now - self.last_step_s, now
        stamp = self.get_clock().now().to_msg()
        names = self.contract.follower_joint_names
        for robot, arm in self.arms.items():
            arm.step(dt)
            position, velocity = arm.joint_states()
            self.pub_states[robot].publish(vector_to_joint_state(position, names, stamp, velocity=velocity,
                                                                 effort=np.zeros(len(names))))


def main(args: list[str] | None = None) -> int:
    return run_node("fake_interbotix", FakeInterbotix, setup_errors=(ContractError, ValueError), args=args)


if __name__ == "__main__":
    sys.exit(main())
