"""The parameters the policy node runs with, read over ROS, so that a report says how its episodes were made.

Chunk execution (execute_steps, temporal ensembling, smoothing) and the checkpoint are the policy node's
parameters, not options of a RunPolicy goal: without them a report cannot tell two columns apart, and a
resumed evaluation could mix episodes of two settings. The evaluator finds the node that serves the
RunPolicy action and reads every parameter it declared through the standard parameter services.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# parameters that do not change what the policy does: a resumed run may differ in these
IGNORED_ON_RESUME = frozenset({"use_sim_time", "start_type_description_service", "qos_overrides"})
# shown beside a column in merged tables, when the node reported them
SHOWN_IN_TABLES = ("execute_steps", "action_steps", "smoothing_window", "temporal_ensemble_coeff", "blend_steps")


def server_node(node, action_name: str) -> tuple[str, str] | None:
    """(name, namespace) of the node that serves ``action_name`` (fully qualified), or None if none does."""
    from rclpy.action import get_action_server_names_and_types_by_node

    for name, namespace in node.get_node_names_and_namespaces():
        try:
            served = get_action_server_names_and_types_by_node(node, name, namespace)
        except Exception:  # noqa: BLE001  (the node left the graph between the two calls)
            continue
        if any(served_name == action_name for served_name, _ in served):
            return name, namespace
    return None


def read_parameters(node, name: str, namespace: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """Every parameter the node ``namespace/name`` declared, as plain Python values, sorted by name.

    Raises TimeoutError when its parameter services do not answer within ``timeout_s`` seconds.
    """
    from rcl_interfaces.srv import GetParameters, ListParameters
    from rclpy.parameter import parameter_value_to_python

    from aloha_sim.plan_streamer import spin_until

    base = f"{namespace.rstrip('/')}/{name}"

    def call(srv_type, service: str, request):
        client = node.create_client(srv_type, f"{base}/{service}")
        try:
            if not client.wait_for_service(timeout_sec=timeout_s):
                raise TimeoutError(f"{base}/{service}: no answer after {timeout_s:.0f} s")
            future = client.call_async(request)
            if not spin_until(node, future.done, timeout_s) or future.result() is None:
                raise TimeoutError(f"{base}/{service}: no answer after {timeout_s:.0f} s")
            return future.result()
        finally:
            node.destroy_client(client)

    names = sorted(call(ListParameters, "list_parameters", ListParameters.Request()).result.names)
    values = call(GetParameters, "get_parameters", GetParameters.Request(names=names)).values
    return {n: parameter_value_to_python(v) for n, v in zip(names, values)}


def policy_node_settings(node, action_name: str, timeout_s: float = 5.0) -> tuple[dict[str, Any] | None, str]:
    """(parameters, where) of the node serving ``action_name``; (None, why) when they cannot be read."""
    found = server_node(node, action_name)
    if found is None:
        return None, f"no node in the ROS graph says it serves {action_name}"
    name, namespace = found
    where = f"{namespace.rstrip('/')}/{name}"
    try:
        return read_parameters(node, name, namespace, timeout_s), where
    except TimeoutError as exc:
        return None, str(exc)


def settings_differences(theirs: Mapping[str, Any], mine: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two policy nodes' parameters, ignoring IGNORED_ON_RESUME."""
    def shown(settings: Mapping[str, Any], key: str) -> str:
        return repr(settings[key]) if key in settings else "unset"

    keys = sorted((set(theirs) | set(mine)) - IGNORED_ON_RESUME)
    return [f"policy node {key} {shown(theirs, key)} (this run: {shown(mine, key)})"
            for key in keys if shown(theirs, key) != shown(mine, key)]


def settings_summary(settings: Mapping[str, Any] | None) -> str:
    """The chunk-execution settings a results table shows beside a column, e.g. 'execute_steps 10, ...'."""
    if not settings:
        return ""
    return ", ".join(f"{key} {settings[key]}" for key in SHOWN_IN_TABLES if key in settings)
