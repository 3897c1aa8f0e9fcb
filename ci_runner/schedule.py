"""How often to ask FirecREST about a job: quick at first, gentle later.

Status polls start at 0.5 s and grow by 25 % per poll up to a 10 s cap, so
a short job is noticed finishing within about a second, and a long one costs
six status reads a minute. Log reads share a request budget of 15 plus 10
per minute of run time: at the cap most polls also read the log, and over a
10-minute job the whole run stays under 12 FirecREST requests per minute.
"""

from __future__ import annotations

from dataclasses import dataclass

FIRST_INTERVAL = 0.5
GROWTH = 1.25
MAX_INTERVAL = 10.0
BUDGET_BURST = 15
BUDGET_PER_MINUTE = 10.0


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
