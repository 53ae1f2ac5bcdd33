"""Stopping a long job cleanly: Ctrl-C and SIGTERM are held over work that must not be cut in half.

Only the process's main thread, and only handlers this module or Python installed, are touched: a
handler the application chose is left alone.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


def _stop_on_sigterm(signum, frame) -> None:
    """SIGTERM (`kill`, a scheduler's stop, the end of a session) does what Ctrl-C does: save, then exit."""
    raise KeyboardInterrupt


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """Within the block, SIGTERM stops training as Ctrl-C does (held over optimiser steps and saves).

    Measured: a training started in the background (`cmd &`) ignores SIGINT, and SIGTERM killed it without a
    save, losing everything since the last periodic checkpoint. Only the default SIGTERM action in the main
    thread is replaced.
    """
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL):
        yield
        return
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """Hold a Ctrl-C (or SIGTERM, within sigterm_as_ctrl_c) until the block ends: an optimiser step or a
    checkpoint cut in half cannot be resumed.

    A second signal inside the block interrupts at once (the user insists). Only Python's default SIGINT
    handler and sigterm_as_ctrl_c's SIGTERM handler, in the main thread, are replaced; anything else (an
    ignored SIGINT, a custom handler) is left alone.
    """
    held = []
    if threading.current_thread() is threading.main_thread():
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            held.append(signal.SIGINT)
        if signal.getsignal(signal.SIGTERM) is _stop_on_sigterm:
            held.append(signal.SIGTERM)
    if not held:
        yield
        return
    pending: list[int] = []

    def hold(signum, frame) -> None:
        if pending:
            raise KeyboardInterrupt
        pending.append(signum)
        log.warning("%s: finishing the optimiser step / checkpoint first (the same signal again aborts at once)",
                    signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, hold) for signum in held}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if pending:
        raise KeyboardInterrupt
