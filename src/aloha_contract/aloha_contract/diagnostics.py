"""``/diagnostics`` the same way from every node that serves the robot: one status per node, key values as text.

Only nodes import this module (it builds diagnostic_msgs messages). The rates are counted here so that every
node reports "<stream>_rate_hz" the same way: events since the previous report over the time since then.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR


class RateMeter:
    """Counts events of several streams; :meth:`rates_hz` gives each stream's rate since the previous call."""

    def __init__(self, *streams: str) -> None:
        self.totals = {s: 0 for s in streams}
        self._previous = dict(self.totals)
        self._previous_s = time.monotonic()

    def count(self, stream: str, n: int = 1) -> None:
        self.totals[stream] = self.totals.get(stream, 0) + n

    def rates_hz(self, now_s: float | None = None) -> dict[str, float]:
        now_s = time.monotonic() if now_s is None else now_s
        dt = max(now_s - self._previous_s, 1e-6)
        rates = {s: (n - self._previous.get(s, 0)) / dt for s, n in self.totals.items()}
        self._previous, self._previous_s = dict(self.totals), now_s
        return rates


def diagnostic_array(name: str, hardware_id: str, level, message: str, values: Mapping[str, object],
                     stamp) -> DiagnosticArray:
    """A DiagnosticArray holding one status; values become text (floats with one decimal unless already text)."""
    status = DiagnosticStatus(name=name, hardware_id=hardware_id, level=level, message=message)
    status.values = [KeyValue(key=str(k), value=_text(v)) for k, v in values.items()]
    msg = DiagnosticArray(status=[status])
    msg.header.stamp = stamp
    return msg


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.1f}"
    return str(value)
