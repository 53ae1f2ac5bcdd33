"""`main()` of this package's nodes: SIGINT and SIGTERM end a node with status 0 and no traceback.

rclpy (Humble, Jazzy, Kilted alike) answers SIGINT with KeyboardInterrupt and SIGTERM by shutting the
context down (ExternalShutdownException from spin). Either can land while a callback is publishing, which
then fails because the context is gone: that is part of stopping too, not an error to report.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node


def run_node(name: str, make_node: Callable[[], Node], setup: Callable[[Node], None] | None = None,
             setup_errors: tuple[type[Exception], ...] = (), args: list[str] | None = None) -> int:
    """Create the node, run `setup` (e.g. wait for the hardware), spin; the process exit status.

    An exception of `setup_errors` from construction or setup (a bad config file, hardware that never
    answered) is reported in one line and gives status 1.
    """
    rclpy.init(args=args)
    node = None
    try:
        try:
            node = make_node()
            if setup is not None:
                setup(node)
        except setup_errors as exc:
            if not rclpy.ok():
                return 0  # stopped by a signal while setting up
            if node is not None:
                node.get_logger().error(str(exc))
            else:
                print(f"[{name}] error: {exc}", file=sys.stderr)
            return 1
        rclpy.spin(node)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
    return 0
