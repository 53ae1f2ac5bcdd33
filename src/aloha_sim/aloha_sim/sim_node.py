"""ROS node exposing the MuJoCo ALOHA simulator through the robot contract, as the real robot would.

Publishes the 14-D joint state, each follower arm's Interbotix joint_states, the three RealSense-style
camera topics and the stage score; takes 14-D joint commands; resets episodes through a service.

Two clocks:
- ``realtime`` (default): physics follows the wall clock at the contract's 50 Hz; cameras render at
  ``camera_rate_hz`` when the CPU allows it (a real camera is not synchronous with the arms either).
- ``lockstep``: for batch evaluation. The simulator advances exactly one control period per command
  stamped with the current sim time, publishes /clock, and runs as fast as the controller answers.
A malformed or unsafe command is refused with a log line and the arms hold their last valid target.
"""

from __future__ import annotations

import time

import rclpy
from aloha_contract import InvalidCommand, check_joint_command, load_contract
from aloha_contract.ros import (MessageError, joint_state_to_vector, qos_profile, rgb_to_image, time_msg,
                                vector_to_joint_state)
from aloha_interfaces.msg import StageScore
from aloha_interfaces.srv import ResetEpisode
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Pose
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image, JointState

from .camera_worker import CameraWorker
from .env import AlohaSimEnv
from .tasks import TaskError, load_tasks

MODES = ("realtime", "lockstep")
MAX_CATCH_UP_STEPS = 5  # realtime: physics steps per tick when the loop fell behind the wall clock


class SimNode(Node):
    def __init__(self) -> None:
        super().__init__("aloha_sim")
        contract_file = self.declare_parameter("contract_file", "").value
        self.contract = load_contract(contract_file or None)
        c = self.contract
        self.task = self.declare_parameter("task", "transfer_cube").value
        seed = int(self.declare_parameter("seed", 0).value)
        height = int(self.declare_parameter("image_height", c.image_height).value)
        width = int(self.declare_parameter("image_width", c.image_width).value)
        self.cameras = list(self.declare_parameter("cameras", c.cameras).value)
        self.mode = self.declare_parameter("mode", "realtime").value
        self.camera_rate_hz = float(self.declare_parameter("camera_rate_hz", c.control_rate_hz).value)
        if self.mode not in MODES:
            raise ValueError(f"parameter mode:={self.mode} must be one of {MODES}")
        unknown = [cam for cam in self.cameras if cam not in c.cameras]
        if unknown:
            raise ValueError(f"parameter cameras: {unknown} not in the contract's cameras {c.cameras}")

        self.known_tasks = load_tasks()
        self.image_size = (height, width)
        self.env = AlohaSimEnv(self.task, cameras=self.cameras, image_size=self.image_size, render=False, contract=c)
        self.env.reset(seed)
        self.camera_worker = self.start_camera_worker()
        self.target = self.env.start_command()
        self.refused = 0
        self.last_refusal, self.last_refusal_log_s = "", 0.0

        self.pub_state = self.create_publisher(JointState, c.topic("joint_states"), qos_profile(c, "joint_states"))
        self.pub_follower = {arm: self.create_publisher(JointState, c.follower_joint_states_topic(arm),
                                                        qos_profile(c, "joint_states")) for arm in c.arms}
        self.pub_images = {cam: self.create_publisher(Image, c.camera_topic(cam), qos_profile(c, "images"))
                           for cam in self.cameras}
        self.pub_score = self.create_publisher(StageScore, c.topic("stage_score"), qos_profile(c, "stage_score"))
        self.pub_clock = (self.create_publisher(Clock, c.topic("clock"), qos_profile(c, "clock"))
                          if self.mode == "lockstep" else None)
        self.create_subscription(JointState, c.topic("joint_commands"), self.on_command, qos_profile(c, "joint_commands"))
        self.create_service(ResetEpisode, c.service("reset_episode"), self.on_reset)

        self.period_s = c.control_period_s
        self.last_render_s = -1.0
        if self.mode == "realtime":
            self.t0 = time.monotonic()
            self.steps_since_t0 = 0
            self.create_timer(self.period_s, self.on_tick)
        self.publish_observation(render=True)
        self.get_logger().info(
            f"ALOHA sim ready: task={self.task} seed={seed} mode={self.mode} cameras={self.cameras} "
            f"{height}x{width} control {c.control_rate_hz:.0f} Hz")

    def start_camera_worker(self) -> CameraWorker:
        worker = CameraWorker(self.env.model, self.cameras, self.image_size, self.publish_images)
        worker.start()
        return worker

    # ---- commands ----
    def on_command(self, msg: JointState) -> None:
        try:
            command = joint_state_to_vector(msg, self.contract.joint_names, what=self.contract.topic("joint_commands"))
            # validate on arrival so that a bad command is refused once, with its reason, and never stored
            command = check_joint_command(command, self.contract)
        except (MessageError, InvalidCommand) as exc:
            self.refused += 1
            reason = str(exc)
            now = time.monotonic()
            # a controller gone wrong can send 50 bad commands a second: log each new reason, repeats once a second
            if reason != self.last_refusal or now - self.last_refusal_log_s > 1.0:
                self.get_logger().warning(f"refused joint command ({reason}); holding the last valid target "
                                          f"[{self.refused} refused so far]")
                self.last_refusal, self.last_refusal_log_s = reason, now
            return
        if self.mode == "lockstep":
            stamp_s = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
            if abs(stamp_s - self.env.sim_time_s) > 0.25 * self.period_s:
                self.get_logger().debug(f"lockstep: ignoring command for t={stamp_s:.3f}, sim at {self.env.sim_time_s:.3f}")
                return
            self.target = command
            self.env.step(self.target, render=False)
            self.publish_observation(render=True)
        else:
            self.target = command

    def on_tick(self) -> None:
        due = int((time.monotonic() - self.t0) / self.period_s) - self.steps_since_t0
        if due <= 0:
            return  # an early tick: physics is already level with the wall clock
        for _ in range(min(due, MAX_CATCH_UP_STEPS)):
            self.env.step(self.target, render=False)
        # further behind than we can catch up: drop the missed periods instead of spiralling
        self.steps_since_t0 += due
        render = (self.env.sim_time_s - self.last_render_s) >= 1.0 / self.camera_rate_hz - 1e-6
        self.publish_observation(render=render)

    # ---- observations ----
    def stamp(self) -> Time:
        if self.mode == "lockstep":
            return time_msg(self.env.sim_time_s)
        return self.get_clock().now().to_msg()

    def publish_observation(self, render: bool) -> None:
        c = self.contract
        stamp = self.stamp()
        if self.pub_clock is not None:
            self.pub_clock.publish(Clock(clock=stamp))
        self.pub_state.publish(vector_to_joint_state(self.env.qpos(), c.joint_names, stamp,
                                                     velocity=self.env.qvel(), effort=self.env.effort()))
        for arm, state in self.env.follower_joint_states().items():
            msg = vector_to_joint_state(state.position, state.names, stamp, velocity=state.velocity, effort=state.effort)
            self.pub_follower[arm].publish(msg)
        if render:
            self.last_render_s = self.env.sim_time_s
            self.camera_worker.submit(self.env.data, stamp)
            if self.mode == "lockstep" and not self.camera_worker.wait_published():
                self.get_logger().error("camera rendering stalled for 10 s")
        score = self.env.stage_score()
        msg = StageScore(task=self.task, episode_step=self.env.step_count, score=float(score.score),
                         stage=score.stage or "", stages_reached=list(score.reached), success=score.success,
                         source="sim")
        msg.header.stamp = stamp
        self.pub_score.publish(msg)

    def publish_images(self, images: dict, stamp: Time) -> None:
        """Called from the camera worker thread (rclpy publishers are thread-safe)."""
        for cam, rgb in images.items():
            self.pub_images[cam].publish(rgb_to_image(rgb, stamp, self.contract.camera_frame_id(cam)))

    # ---- episodes ----
    def on_reset(self, request: ResetEpisode.Request, response: ResetEpisode.Response) -> ResetEpisode.Response:
        task = request.task or self.task
        if task not in self.known_tasks:
            response.success = False
            response.message = f"unknown task '{task}' (known: {sorted(self.known_tasks)})"
            return response
        try:
            if task != self.task:
                self.camera_worker.stop()
                self.env.close()
                self.env = AlohaSimEnv(task, cameras=self.cameras, image_size=self.image_size, render=False,
                                       contract=self.contract)
                self.camera_worker = self.start_camera_worker()
                self.task = task
            self.env.reset(int(request.seed))
        except (TaskError, KeyError, ValueError) as exc:
            response.success = False
            response.message = f"reset failed: {exc}"
            return response
        self.target = self.env.start_command()
        if self.mode == "realtime":
            self.t0, self.steps_since_t0 = time.monotonic(), 0
        self.publish_observation(render=True)
        response.success = True
        response.message = f"{task} seed {request.seed}"
        response.task_description = self.env.task.description
        response.episode_steps = self.env.episode_steps
        for name, (pos, quat) in self.env.object_poses().items():
            pose = Pose()
            pose.position.x, pose.position.y, pose.position.z = (float(v) for v in pos)
            pose.orientation.w, pose.orientation.x, pose.orientation.y, pose.orientation.z = (float(v) for v in quat)
            response.object_names.append(name)
            response.object_poses.append(pose)
        self.get_logger().info(f"episode reset: {response.message}")
        return response

    def destroy_node(self) -> None:
        if hasattr(self, "camera_worker"):
            self.camera_worker.stop()
        if hasattr(self, "env"):
            self.env.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = SimNode()
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
