"""`main()` of every node in the workspace: SIGINT and SIGTERM end a node with status 0 and no traceback.

rclpy (Humble, Jazzy, Kilted alike) answers SIGINT with KeyboardInterrupt and SIGTERM by shutting the
context down (ExternalShutdownException from spin). Either can land while a callback is publishing, which
then fails because the context is gone: that is part of stopping too, not an error to report. A node with
worker threads stops them in its `close()` before the node and the context go away.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import rclpy
from rclpy.executors import Executor, ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node


def run_node(name: str, make_node: Callable[[], Node], setup: Callable[[Node], None] | None = None,
             setup_errors: tuple[type[Exception], ...] = (), args: list[str] | None = None,
             make_executor: Callable[[], Executor] = SingleThreadedExecutor) -> int:
    """Create the node, run `setup` (e.g. wait for the hardware), spin; the process exit status.

    An exception of `setup_errors` from construction or setup (a bad parameter or file, hardware that never
    answered), or raised by a callback (another robot found just after start-up), is reported in one line and
    gives status 1.
    """
    rclpy.init(args=args)
    node = None
    executor = make_executor()
    try:
        try:
            node = make_node()
            if setup is not None:
                setup(node)
        except setup_errors as exc:
            if not rclpy.ok():
                return 0  # stopped by a signal while setting up
            print(f"[{name}] error: {exc}", file=sys.stderr, flush=True)
            return 1
        executor.add_node(node)
        executor.spin()
    except setup_errors as exc:  # raised by a callback on purpose (e.g. another robot found after start-up)
        if not rclpy.ok():
            return 0
        print(f"[{name}] error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
    finally:
        if node is not None:
            close = getattr(node, "close", None)
            if callable(close):
                close()
            node.destroy_node()
        executor.shutdown()
        if rclpy.ok():
            rclpy.try_shutdown()
    return 0
