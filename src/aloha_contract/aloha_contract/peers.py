"""One robot per ROS domain: find another simulator or driver before a node starts acting as the robot.

Measured: two main jobs started at once on one ROS domain each reset both simulators, without a warning; a
sim and a real driver on one domain would both publish the robot's joint states. A node that serves the
robot (the sim, the real driver) therefore looks at the ROS graph before it creates its own publishers and
services, and refuses to start when another process already holds them.

Only nodes import this module (it needs an rclpy node); the graph queries are the rclpy API shared by Humble,
Jazzy and Kilted.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence

from rclpy.expand_topic_name import expand_topic_name
from rclpy.node import Node

POLL_S = 0.05  # how often the graph is read while discovery runs
# Measured on a loaded 2-core machine (Fast DDS, localhost): a new node saw an existing one after 0.0-3.1 s,
# half of the time after more than 1.5 s.
DISCOVERY_WAIT_S = 3.0
UNKNOWN_NAME = "_NODE_NAME_UNKNOWN_"  # the endpoint's node is not discovered yet (only its endpoint is)
NAME_WAIT_S = 1.0  # once something is found: how long to wait for discovery to name its node (for the message)
_UNNAMED = "a node not yet named by discovery"


class AnotherRobotError(RuntimeError):
    """Another simulator or driver already serves this robot on this ROS domain."""


def _fully_qualified(node: Node, name: str) -> str:
    return expand_topic_name(name, node.get_name(), node.get_namespace())


def _node_label(name: str, namespace: str) -> str:
    if name == UNKNOWN_NAME:
        return _UNNAMED
    return f"{namespace.rstrip('/')}/{name}"


def _publishers(node: Node, topic: str) -> list[str]:
    return [_node_label(p.node_name, p.node_namespace)
            for p in node.get_publishers_info_by_topic(_fully_qualified(node, topic))]


def _services_of(node: Node, name: str, namespace: str) -> set[str]:
    try:
        return {s for s, _ in node.get_service_names_and_types_by_node(name, namespace)}
    except Exception:  # noqa: BLE001 - the node left the graph since it was listed (a distro-specific error type)
        return set()


def _servers(node: Node, service: str) -> list[str]:
    """Who serves ``service`` (a service only called by clients is listed in the graph too, but has none)."""
    by_node = sorted({_node_label(name, ns) for name, ns in node.get_node_names_and_namespaces()
                      if service in _services_of(node, name, ns)})
    count_services = getattr(node, "count_services", None)  # rclpy >= Jazzy; discovery names nodes later
    if by_node or count_services is None or not count_services(service):
        return by_node
    return [_UNNAMED]


def find_other_robots(node: Node, services: Sequence[str] = (), topics: Sequence[str] = ()) -> list[str]:
    """What another process already holds, one description each (empty: nothing).

    Call it before creating this node's own publishers of ``topics`` and servers of ``services``: every
    publisher and server seen then belongs to someone else. A second node with this node's name and
    namespace counts too (this node itself is listed once).
    """
    me = (node.get_name(), node.get_namespace())
    found = []
    if node.get_node_names_and_namespaces().count(me) > 1:
        found.append(f"a node named {_node_label(*me)}")
    for service in (_fully_qualified(node, s) for s in services):
        servers = _servers(node, service)
        if servers:
            found.append(f"service {service} is already served by {', '.join(servers)}")
    for topic in topics:
        publishers = _publishers(node, topic)
        if publishers:
            who = ", ".join(sorted(set(publishers)))
            found.append(f"{_fully_qualified(node, topic)} is already published by {who}")
    return found


def second_publisher(node: Node, topic: str) -> str | None:
    """Once this node publishes ``topic`` itself: a description of the other publishers, or None.

    For a watch after start-up: a second simulator that discovery hid during the start-up check.
    """
    publishers = _publishers(node, topic)
    if len(publishers) < 2:
        return None
    who = ", ".join(sorted(publishers))
    return f"{_fully_qualified(node, topic)} is published by {len(publishers)} publishers ({who})"


class NewcomerWatch:
    """After start-up: a second publisher of ``topic`` seen within ``window_s`` makes this node the newcomer, and
    :meth:`check` (a timer, so out of spin) raises AnotherRobotError.

    For the robot that discovery hid from the start-up check (measured once in CI: a running sim not found in
    3 s). Asymmetric on purpose: the window is at most DISCOVERY_WAIT_S, and a node started after this one was
    ready spends its own start-up check (by default DISCOVERY_WAIT_S) before it publishes, so by the time either
    can see the other this one's window is over and only the newcomer leaves. A newcomer that checks for less
    time (its peer_check_s lowered) may make the older one leave instead. Two started at once may both leave,
    which is the safe outcome for two runs on one domain. Create it with the node's publisher of ``topic``: the
    window opens then, whenever the timer first runs (late under load, or after a driver's hardware set-up);
    that first check always looks, later ones only within the window.
    """

    def __init__(self, node: Node, topic: str, window_s: float, what: str, clock=None) -> None:
        self.node, self.topic, self.what = node, topic, what
        self.until_s = time.monotonic() + min(max(0.0, window_s), DISCOVERY_WAIT_S)
        self.checked = False
        self.timer = node.create_timer(POLL_S * 5, self.check, clock=clock)

    def check(self) -> None:
        first, self.checked = not self.checked, True
        if not first and time.monotonic() >= self.until_s:
            self.timer.cancel()
            return
        other = second_publisher(self.node, self.topic)
        if other:
            self.timer.cancel()
            raise AnotherRobotError(refusal_message(self.node, self.what, [other]) +
                                    " (found just after start-up, while discovery was still under way)")


def wait_for_other_robots(node: Node, wait_s: float, since_s: float | None = None,
                          services: Sequence[str] = (), topics: Sequence[str] = ()) -> list[str]:
    """:func:`find_other_robots` once discovery had ``wait_s`` seconds since ``since_s`` (time.monotonic()).

    Returns as soon as something is found. ``since_s`` lets a node count the time it spent loading (discovery
    runs from the moment the node exists); ``wait_s`` 0 checks once, without waiting.
    """
    deadline = (time.monotonic() if since_s is None else since_s) + max(0.0, wait_s)
    while True:
        found = find_other_robots(node, services, topics)
        if found:
            return _named(node, found, services, topics)
        if time.monotonic() >= deadline:
            return found
        time.sleep(POLL_S)


def _named(node: Node, found: list[str], services: Sequence[str], topics: Sequence[str]) -> list[str]:
    """``found`` again once discovery named the other nodes (endpoints come before names), within NAME_WAIT_S."""
    deadline = time.monotonic() + NAME_WAIT_S
    while any(_UNNAMED in f for f in found) and time.monotonic() < deadline:
        time.sleep(POLL_S)
        found = find_other_robots(node, services, topics) or found
    return found


def domain_id(node: Node) -> int:
    """The ROS domain this node runs in (for messages)."""
    try:
        return int(node.context.get_domain_id())
    except (AttributeError, TypeError, ValueError):  # older rclpy: the environment is what rcl read
        return int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)


def refusal_message(node: Node, what: str, found: Sequence[str]) -> str:
    """One line: what is already there, and the two ways out."""
    return (f"another {what} is already running on ROS domain {domain_id(node)} ({'; '.join(found)}); two on "
            f"one domain command and reset each other. Stop the other one, or run this one on a domain of its "
            f"own: export ROS_DOMAIN_ID=N (an N in 0-101 that no other run uses) in every shell of this run")
