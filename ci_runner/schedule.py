"""How often to ask FirecREST about a job: quick at first, gentle later.

Before a job runs, status polls start at 0.5 s and grow by 25 % per poll up
to a 10 s cap. While it runs, the live log's reads are the poll: the batch
script ends its output with a per-run end marker (logs.py), so the read that
sees it sends the runner to the scheduler at once. Reads come every 0.5 s,
0.1 s slower per 10 s of run time, for 32 s (a 5 s or 30 s job is noticed
within about half a second), then grow by 30 % per read to one per 15 s.
Status polls meanwhile only watch for ends the marker cannot report (a
SIGKILL, a node failure): at 20 s, doubling to every 3 minutes. Without a
readable marker, status polls keep the 10 s cap. `RequestBudget` (70 plus
4 a minute, all requests counted) holds any job, big logs and a separate
stderr included, under 12 FirecREST requests per job-minute from 10 minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_INTERVAL = 0.5
GROWTH = 1.25
MAX_INTERVAL = 10.0
BUDGET_BURST = 70
BUDGET_PER_MINUTE = 4.0
READ_FIRST = 0.5
READ_SLOPE = 0.01
READ_KNEE = 32.0
READ_GROWTH = 1.3
READ_CAP = 15.0
WATCH_FIRST = 20.0
WATCH_GROWTH = 2.0
WATCH_CAP = 180.0
#: After the end marker: ask the scheduler at once, then again soon (it may not have the end yet).
CONFIRM_FIRST = 0.05
CONFIRM_GROWTH = 2.0


@dataclass
class PollSchedule:
    first: float = FIRST_INTERVAL
    growth: float = GROWTH
    cap: float = MAX_INTERVAL
    _next: float = 0.0

    def next_interval(self) -> float:
        self._next = self.first if self._next == 0.0 else min(self._next * self.growth, self.cap)
        return self._next


@dataclass(frozen=True)
class RequestBudget:
    burst: int = BUDGET_BURST
    per_minute: float = BUDGET_PER_MINUTE

    def allows(self, used: int, elapsed: float) -> bool:
        """May one more optional request (a log read) be made now?"""
        return used + 1 <= self.burst + self.per_minute * elapsed / 60.0

    def wait(self, used: int, elapsed: float) -> float:
        """Seconds until one more optional request is allowed (0 if it is now)."""
        return max(0.0, (used + 1 - self.burst) * 60.0 / self.per_minute - elapsed)


@dataclass
class ReadSchedule:
    """Seconds between live log reads, by how long the job has been running (see above)."""

    first: float = READ_FIRST
    slope: float = READ_SLOPE
    knee: float = READ_KNEE
    growth: float = READ_GROWTH
    cap: float = READ_CAP
    _last: float = 0.0

    def next_interval(self, running_for: float) -> float:
        if running_for < self.knee or self._last == 0.0:
            self._last = self.first + self.slope * min(running_for, self.knee)
        else:
            self._last = min(self._last * self.growth, self.cap)
        return self._last
