"""``sim_leader``: the leader arms of a simulated operator, replaying scripted demonstrations for teleop.

Stands in for a person at the leader arms, so that leader -> teleop -> follower -> recorder runs without a
robot. Per episode: reset the simulator through its service (which reports the object poses), plan the
scripted demonstration from those poses (``scripted.plan_episode``, as the scripted driver does) and publish,
one plan row per control period, what the two leader arms would report (Interbotix joint_states,
``leader_arms.leader_joint_states``). Between demonstrations it holds the last pose.

With ``follow_recording`` (default) it behaves like an operator watching the recorder: it resets the scene
only while nothing is being recorded, starts a demonstration when a recording starts (``record_demos``, the
scoring page, or any caller of the RecordEpisode service), stops when that recording ends, then resets for
the next one. Without it, demonstrations follow one another (``episodes``, then it exits).
"""

from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import rclpy
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.clock import Clock, ClockType
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from sensor_msgs.msg import JointState

from aloha_contract import ContractError, load_contract
from aloha_contract.ros import qos_profile, vector_to_joint_state
from aloha_interfaces.srv import RecordEpisode

from .leader_arms import leader_joint_states
from .plan_streamer import ResetError, SimEpisodes, object_poses_from_reset, spin_until
from .scripted import plan_episode

RECORD_POLL_S = 0.2      # how often the recorder is asked whether a recording runs (follow_recording)
WAIT_LOG_PERIOD_S = 15.0  # how often a wait says again what it waits for


class SimLeader(Node):
    def __init__(self) -> None:
        super().__init__("sim_leader")
        contract_file = self._param("contract_file", "", "robot contract YAML ('': the installed one)")
        self.task = self._param("task", "transfer_cube", "task of config/tasks.yaml to demonstrate")
        self.seed_start = int(self._param("seed_start", 0, "object pose seed of the first demonstration"))
        self.episodes = int(self._param("episodes", 0, "demonstrations to give, then exit (0: until stopped)"))
        self.max_steps = int(self._param("max_steps", 0, "steps of each demonstration (0: the whole plan)"))
        self.follow_recording = bool(self._param(
            "follow_recording", True, "demonstrate once per recording of the recorder (false: back to back)"))
        self.settle_s = float(self._param("settle_s", 0.5, "seconds the leaders rest between demonstrations"))
        if self.episodes < 0 or self.max_steps < 0 or self.settle_s < 0:
            raise ValueError(f"episodes:={self.episodes}, max_steps:={self.max_steps}, settle_s:={self.settle_s}: "
                             f"expected >= 0")
        self.contract = c = load_contract(contract_file or None)
        self.calibration = c.gripper_calibration("sim")  # the simulator's leaders, as the sim's followers
        self.sim = SimEpisodes(self, c)
        self.record = self.create_client(RecordEpisode, c.service("record_episode"))
        self.pose: np.ndarray | None = None  # the 14-D command the leaders show now
        self.plan: np.ndarray | None = None
        self.start_pose: np.ndarray | None = None  # where every demonstration starts (the contract's start pose)
        self.step = 0
        qos = qos_profile(c, "joint_states")
        states = leader_joint_states(c, np.zeros(len(c.joint_names)), self.calibration)
        self.publishers_by_arm = {arm: self.create_publisher(JointState, c.topic("follower_joint_states",
                                                                                 arm_robot=state.robot), qos)
                                  for arm, state in states.items()}
        # the leaders move on the wall clock, like a person's hands, whatever use_sim_time says
        self.create_timer(c.control_period_s, self.on_tick, clock=Clock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(
            f"simulated leaders ready: {[s.robot for s in states.values()]} demonstrate {self.task} "
            f"(seeds from {self.seed_start}"
            + (f", {self.max_steps} steps each" if self.max_steps else "")
            + (f"), once per recording of {self.record.srv_name}" if self.follow_recording else "), back to back"))

    def _param(self, name: str, default, description: str):
        return self.declare_parameter(name, default, ParameterDescriptor(description=description)).value

    # ---- the leaders' pose, one plan row per control period ----
    def on_tick(self) -> None:
        if self.plan is not None and self.step < len(self.plan):
            self.pose = self.plan[self.step]
            self.step += 1
        if self.pose is None:
            return
        stamp = self.get_clock().now().to_msg()
        for arm, state in leader_joint_states(self.contract, self.pose, self.calibration).items():
            self.publishers_by_arm[arm].publish(vector_to_joint_state(state.position, state.names, stamp))

    def hold(self, pose: np.ndarray) -> None:
        self.plan, self.pose = None, np.asarray(pose, dtype=np.float64)

    def play(self, plan: np.ndarray) -> None:
        self.plan, self.step = plan, 0

    @property
    def playing(self) -> bool:
        return self.plan is not None and self.step < len(self.plan)

    def rest(self, seconds: float) -> None:
        until = time.monotonic() + seconds
        spin_until(self, lambda: time.monotonic() >= until, None)

    # ---- the recorder, as an operator watches it ----
    def recording(self) -> str | None:
        """The episode file being recorded, '' when nothing is, None when the recorder did not answer."""
        if not self.record.service_is_ready():
            return None  # a request to a recorder not yet discovered would wait for ever
        future = self.record.call_async(RecordEpisode.Request(command=RecordEpisode.Request.STATUS))
        if not spin_until(self, future.done, 5.0) or future.result() is None:
            return None
        answer = future.result()
        return answer.episode_path if answer.recording else ""

    def wait_recording(self, want_running: bool) -> str:
        """Spin until a recording runs (``want_running``) or none does; the file being recorded."""
        said_s = -np.inf
        while rclpy.ok(context=self.context):
            episode = self.recording()
            if episode is not None and bool(episode) == want_running:
                return episode
            if time.monotonic() - said_s >= WAIT_LOG_PERIOD_S:
                said_s = time.monotonic()
                self.get_logger().info(
                    f"waiting for a recording to {'start' if want_running else 'end'} ({self.record.srv_name}: "
                    f"record_demos, the scoring page's start button, or the service)"
                    if episode is not None else f"waiting for the recorder ({self.record.srv_name})")
            self.rest(RECORD_POLL_S)
        return ""

    # ---- one demonstration ----
    def demonstrate(self, number: int, seed: int) -> bool:
        """Reset, plan and play one demonstration; False when the simulator did not reset."""
        if self.follow_recording:
            self.wait_recording(want_running=False)  # never reset the scene under a running recording
        if self.start_pose is not None:
            self.hold(self.start_pose)  # back to the start; teleop holds until the reset puts the followers there
        try:
            response = self.sim.reset(self.task, seed)
        except ResetError as exc:
            self.get_logger().error(str(exc))
            return False
        # plan in a worker thread while this one keeps the leaders' messages flowing (a silent leader holds teleop)
        with ThreadPoolExecutor(max_workers=1) as pool:
            job = pool.submit(plan_episode, self.task, object_poses_from_reset(response), self.contract)
            spin_until(self, job.done, None)
            plan = job.result()[:response.episode_steps]
        if self.max_steps:
            plan = plan[:self.max_steps]
        self.hold(plan[0])
        self.rest(self.settle_s)  # teleop takes over at the start pose before anything moves
        episode = ""
        if self.follow_recording:
            episode = self.wait_recording(want_running=True)
        t0 = time.monotonic()
        self.play(plan)
        last_poll_s = time.monotonic()

        def finished() -> bool:
            nonlocal last_poll_s
            if not self.playing:
                return True
            if self.follow_recording and time.monotonic() - last_poll_s >= RECORD_POLL_S:
                last_poll_s = time.monotonic()
                return self.recording() not in (episode, None)  # the recording ended before the demonstration
            return False

        spin_until(self, finished, None)
        steps = self.step
        self.hold(plan[max(steps, 1) - 1])
        self.start_pose = plan[0]
        score = self.sim.scores.latest
        self.get_logger().info(
            f"demonstration {number} seed {seed}: {steps}/{len(plan)} steps in {time.monotonic() - t0:.1f} s"
            + (f", stage score {score.score:.0f}/100" if score is not None else "")
            + (f" (recording {episode})" if episode else ""))
        return True


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    node = None
    status = 0
    try:
        node = SimLeader()
        if not node.sim.wait_for_service(30.0):
            node.get_logger().error(f"simulator reset service {node.sim.service_name} not available after 30 s: "
                                    f"is the sim node running (sim.launch.py, teleop.launch.py)?")
            return 1
        number = 0
        while rclpy.ok() and (node.episodes == 0 or number < node.episodes):
            if not node.demonstrate(number + 1, node.seed_start + number):
                status = 1
                break
            number += 1
            if not node.follow_recording:
                node.rest(node.settle_s)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ContractError, ValueError) as exc:
        if rclpy.ok():
            print(f"[sim_leader] error: {exc}", file=sys.stderr, flush=True)
            status = 1
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
