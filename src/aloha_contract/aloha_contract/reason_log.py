"""Throttled logging of repeated faults, keyed on a stable reason, shared by every node that refuses input.

A controller gone wrong sends 50 bad commands a second: the first of each reason is logged at once, repeats
of the same reason at most once per interval with how many were suppressed meanwhile. Keyed on the reason
key, never on the text (which carries values and would defeat the throttle).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class ReasonLog:
    """Counts events per reason key and says when to log."""

    interval_s: float = 1.0
    counts: dict[str, int] = field(default_factory=dict)
    _last_log_s: dict[str, float] = field(default_factory=dict)
    _suppressed: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def record(self, reason: str, now_s: float, count: int = 1) -> int | None:
        """Count `count` events; if a line is due now, the number suppressed since the last one, else None."""
        self.counts[reason] = self.counts.get(reason, 0) + count
        last = self._last_log_s.get(reason)
        if last is not None and now_s - last < self.interval_s:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return None
        self._last_log_s[reason] = now_s
        return self._suppressed.pop(reason, 0)

    def summary(self) -> str:
        return ", ".join(f"{reason} {n}" for reason, n in sorted(self.counts.items())) or "none"
