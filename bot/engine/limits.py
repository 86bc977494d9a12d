"""How often one member may act: a sliding window per member, told the time by its caller.

Pure and clock-free (the caller passes ``now``), so the Discord layer can use the
event loop's clock and tests can move it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable

SWEEP_EVERY = 256  # forget idle members now and then, so a flood of one-off posters does not pile up


class RateLimit:
    """At most ``limit`` actions per member within ``period`` seconds; ``limit`` 0 means no limit."""

    def __init__(self, limit: int, period: float = 60.0):
        self.limit = limit
        self.period = period
        self._times: dict[Hashable, deque[float]] = {}
        self._calls = 0

    def allow(self, member: Hashable, now: float) -> bool:
        """Count an action of ``member`` at ``now`` if the window has room; False (not counted) if not."""
        return self.take(member, now) == 0.0

    def take(self, member: Hashable, now: float) -> float:
        """Count an action at ``now`` if the window has room and return 0.0; else return how
        many seconds until it would have room (the action is not counted)."""
        if self.limit <= 0:
            return 0.0
        self._calls += 1
        if self._calls % SWEEP_EVERY == 0:
            self._sweep(now)
        times = self._times.setdefault(member, deque())
        while times and now - times[0] >= self.period:
            times.popleft()
        if len(times) >= self.limit:
            return times[0] + self.period - now  # > 0: the oldest is still inside the window
        times.append(now)
        return 0.0

    def _sweep(self, now: float) -> None:
        for member in [m for m, times in self._times.items() if not times or now - times[-1] >= self.period]:
            del self._times[member]
