"""The recorder's RecordEpisode service for programs that are not nodes: ``record_demos`` and the scoring page.

:class:`RecordClient` owns a private rclpy context, a node and a spin thread, so that a terminal program or a
web server (whose own loop must not block on ROS) can call ``start`` / ``stop`` / ``discard`` / ``status`` as
plain blocking calls. Answers come back as the plain :class:`~rollout_recorder.demo_session.RecordAnswer`.
"""

from __future__ import annotations

import threading
import time

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions

from aloha_contract import Contract, load_contract
from aloha_interfaces.srv import RecordEpisode

from .demo_session import RecordAnswer, RecorderUnavailable

COMMANDS = {"status": RecordEpisode.Request.STATUS, "start": RecordEpisode.Request.START,
            "stop": RecordEpisode.Request.STOP, "discard": RecordEpisode.Request.DISCARD}
# stop and discard answer once the file is final: the recorder may first write the rows still queued
CALL_TIMEOUT_S = {"status": 5.0, "start": 10.0, "stop": 90.0, "discard": 90.0}
# How long a new client may take to discover the recorder: measured up to 3.1 s on a loaded 2-core machine.
# Only the first calls wait this long; once discovered, an absent recorder is reported within 2 s.
DISCOVERY_S = 6.0
SERVICE_WAIT_S = 2.0


def service_wait_s(now_s: float, discovery_deadline_s: float, timeout_s: float) -> float:
    """How long a call waits for the service: the rest of the discovery window of a new client, else up to
    SERVICE_WAIT_S, never more than the call's own timeout."""
    return min(timeout_s, max(SERVICE_WAIT_S, discovery_deadline_s - now_s))


class RecordClient:
    """Blocking calls of the contract's ``record_episode`` service from a thread of one's own.

    Args:
        contract: the robot contract (default: the installed one).
        namespace: the robot namespace the recorder runs in ('' = none), as its launch file's ``namespace:=``.
        node_name: this client's node name.
    """

    def __init__(self, contract: Contract | None = None, namespace: str = "", node_name: str = "record_client"):
        self.contract = contract or load_contract()
        self.context = rclpy.Context()
        # the host program (a terminal UI, uvicorn) handles Ctrl-C itself
        rclpy.init(context=self.context, signal_handler_options=SignalHandlerOptions.NO)
        self.node = rclpy.create_node(node_name, namespace=namespace or "", context=self.context)
        self.client = self.node.create_client(RecordEpisode, self.contract.service("record_episode"))
        self.discovery_deadline_s = time.monotonic() + DISCOVERY_S
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self._spin, name="record_client", daemon=True)
        self.thread.start()
        self._lock = threading.Lock()

    @property
    def service_name(self) -> str:
        return self.client.srv_name

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # noqa: BLE001 - the context went away while closing
            if self.context.ok():
                raise

    def wait_for_service(self, timeout_s: float) -> bool:
        return self.client.wait_for_service(timeout_sec=timeout_s)

    def call(self, command: str, task: str = "", task_description: str = "", source: str = "",
             timeout_s: float | None = None) -> RecordAnswer:
        """Send ``command`` (status, start, stop, discard); raises :class:`RecorderUnavailable` without an answer."""
        if command not in COMMANDS:
            raise ValueError(f"record command '{command}': expected one of {sorted(COMMANDS)}")
        timeout_s = CALL_TIMEOUT_S[command] if timeout_s is None else timeout_s
        wait_s = service_wait_s(time.monotonic(), self.discovery_deadline_s, timeout_s)
        if not self.client.service_is_ready() and not self.client.wait_for_service(timeout_sec=wait_s):
            raise RecorderUnavailable(f"no recorder serves {self.service_name}: start it (teleop.launch.py or "
                                      f"record.launch.py) on this ROS_DOMAIN_ID and namespace")
        request = RecordEpisode.Request(command=COMMANDS[command], task=task, task_description=task_description,
                                        source=source)
        with self._lock:  # one call at a time: the page's poll and a button press must not interleave
            future = self.client.call_async(request)
            deadline = time.monotonic() + timeout_s
            while not future.done() and time.monotonic() < deadline:
                time.sleep(0.01)
        if not future.done():
            future.cancel()
            raise RecorderUnavailable(f"{self.service_name}: no answer to '{command}' within {timeout_s:.0f} s")
        return answer_from_response(future.result())

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        if self.context.ok():
            rclpy.shutdown(context=self.context)
        self.thread.join(timeout=2.0)


def answer_from_response(response: RecordEpisode.Response) -> RecordAnswer:
    return RecordAnswer(
        success=bool(response.success), message=str(response.message), recording=bool(response.recording),
        episode_path=str(response.episode_path), steps=int(response.steps), duration_s=float(response.duration_s),
        task=str(response.task), source=str(response.source),
        camera_rates_hz=dict(zip(response.camera_names, (float(r) for r in response.camera_rate_hz))),
        min_camera_rate_hz=float(response.min_camera_rate_hz), low_rate_cameras=list(response.low_rate_cameras))
