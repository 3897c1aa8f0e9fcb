"""Following a job on a simulated clock: when the end is noticed, at what cost, in what order."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from ci_runner.client import ApiError
from ci_runner.follow import Follower, Target
from ci_runner.logs import MARKER_PREFIX, new_end_marker
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from tests.runner.test_logs import FileGateway

#: Requests a run makes outside following: systems, userinfo, mkdir, chmod, submit; rm at the end.
SETUP, TEARDOWN = 5, 1


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


class JobGateway(FileGateway):
    """A job on a simulated clock: PENDING, then RUNNING while it writes its lines, then its end state.

    `events` are (time, file, text) written when a request comes at or after that time; the
    scheduler records the end `lag` seconds after the job's last write. Each request takes 10 ms.
    """

    def __init__(
        self,
        tmp_path: Path,
        clock: Clock,
        events: list[tuple[float, str, str]],
        *,
        start: float = 0.3,
        lag: float = 0.02,
        state: str = "COMPLETED",
        error_file: str | None = None,
    ) -> None:
        super().__init__()
        self.dir, self.clock, self.events = tmp_path, clock, sorted(events)
        self.start, self.state, self.error_file = start, state, error_file
        self.end = max(t for t, _f, _x in events) + lag
        self.info_reads: list[float] = []

    def _tick(self) -> None:
        self.clock.now += 0.01
        while self.events and self.events[0][0] <= self.clock.now:
            _t, name, text = self.events.pop(0)
            with (self.dir / name).open("a") as handle:
                handle.write(text)

    def _data(self, op: str, path: str) -> bytes:
        self._tick()
        return super()._data(op, path)

    def job_info(self, system: str, job_id: str) -> list[dict[str, Any]]:
        self._tick()
        self.requests += 1
        self.info_reads.append(self.clock.now)
        now = self.clock.now
        state = "PENDING" if now < self.start else "RUNNING" if now < self.end else self.state
        return [{"jobId": job_id, "status": {"state": state, "exitCode": 0}}]

    def job_metadata(self, system: str, job_id: str) -> list[dict[str, Any]]:
        self._tick()
        self.requests += 1
        out = str(self.dir / "slurm-1.out")
        return [
            {
                "standardOutput": out,
                "standardError": str(self.dir / self.error_file) if self.error_file else out,
            }
        ]


def follow(
    tmp_path: Path, events: list[tuple[float, str, str]], marker: str | None = None, **job: Any
) -> tuple[Follower, JobGateway, io.StringIO, dict[str, Any], Clock]:
    clock = Clock()
    gateway = JobGateway(tmp_path, clock, events, **job)
    gateway.requests = SETUP
    shown = io.StringIO()
    reporter = Reporter(Redactor(), out=shown, err=shown)
    target = Target("cluster", "1", "fci-1", str(tmp_path), "fireuser", None)
    follower = Follower(
        gateway,  # type: ignore[arg-type]
        target,
        reporter,
        clock=clock,
        sleep=clock.sleep,
        end_marker=marker,
    )
    followed = follower.run(submitted_at=0.0)
    return follower, gateway, shown, followed.info, clock


def ticking(seconds: int, marker: str | None, start: float = 0.3) -> list[tuple[float, str, str]]:
    """A job that prints a line a second, then the batch script's end marker."""
    events = [(start + i, "slurm-1.out", f"tick {i}\n") for i in range(1, seconds + 1)]
    if marker:
        events.append((start + seconds + 0.001, "slurm-1.out", f"{marker}\n"))
    return events


def test_the_last_lines_come_before_the_line_with_the_final_state(tmp_path):
    _f, _g, shown, info, _c = follow(tmp_path, [*ticking(3, None), (3.5, "slurm-1.out", "FAILED: x\n")])
    text = shown.getvalue()
    assert info["status"]["state"] == "COMPLETED"
    assert text.index("FAILED: x") < text.index("job 1 is COMPLETED")
    assert text.rstrip().endswith("job 1 is COMPLETED")


def test_the_end_marker_gets_a_30_s_job_noticed_within_a_second(tmp_path):
    marker = new_end_marker()
    _f, gateway, shown, _info, clock = follow(tmp_path, ticking(30, marker), marker)
    assert clock.now - gateway.end < 1.0
    assert marker not in shown.getvalue()
    assert "tick 30\n" in shown.getvalue()
    (tmp_path / "plain").mkdir()
    _f, plain, _s, _i, plain_clock = follow(tmp_path / "plain", ticking(30, None))
    assert plain_clock.now - plain.end > 1.0  # without it, only the status polls notice


def test_a_forged_marker_does_not_end_following_and_the_state_is_the_schedulers(tmp_path):
    marker = new_end_marker()
    forged = MARKER_PREFIX + "0" * 32
    events = ticking(20, marker)
    events += [
        (5.0, "slurm-1.out", f"{forged}\n"),
        (8.0, "slurm-1.out", f"{marker}\n"),
    ]  # even the token, early
    _f, gateway, shown, info, clock = follow(tmp_path, events, marker, state="FAILED")
    assert info["status"]["state"] == "FAILED"
    assert clock.now >= gateway.end
    assert forged in shown.getvalue() and marker not in shown.getvalue()
    assert "tick 20\n" in shown.getvalue()
    early = [t for t in gateway.info_reads if 5.0 <= t < 8.0]
    assert not early  # another token is ordinary output: no status read for it
    asked = [t for t in gateway.info_reads if 8.0 <= t < 9.0]
    assert asked and asked[0] < 8.0 + 1.0  # the right token early: a status read at once, then on


def simulated_requests(tmp_path: Path, seconds: int, *, error_file: str | None = None) -> int:
    marker = new_end_marker()
    events = ticking(seconds, marker)
    if error_file:
        events += [(0.3 + i * 7, error_file, f"warning {i}\n") for i in range(1, seconds // 7)]
    _f, gateway, shown, _info, _clock = follow(tmp_path, events, marker, error_file=error_file)
    assert f"tick {seconds}\n" in shown.getvalue()
    return gateway.requests + TEARDOWN


def test_a_ten_minute_job_costs_at_most_twelve_requests_a_minute_even_with_stderr(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    assert simulated_requests(tmp_path / "a", 600) <= 120
    assert simulated_requests(tmp_path / "b", 600, error_file="err.txt") <= 120


def test_failing_reads_leave_the_end_to_status_polls(tmp_path):
    marker = new_end_marker()
    clock = Clock()
    gateway = JobGateway(tmp_path, clock, ticking(30, marker))
    gateway.tail_from = lambda *a, **k: (_ for _ in ()).throw(ApiError(500, "ssh broke"))  # type: ignore[method-assign]
    shown = io.StringIO()
    follower = Follower(
        gateway,  # type: ignore[arg-type]
        Target("cluster", "1", "fci-1", str(tmp_path), "fireuser", None),
        Reporter(Redactor(), out=shown, err=shown),
        clock=clock,
        sleep=clock.sleep,
        end_marker=marker,
    )
    info = follower.run(0.0).info
    assert info["status"]["state"] == "COMPLETED"
    assert clock.now - gateway.end <= 10.5
    assert shown.getvalue().count("ssh broke") == 2  # once live, once for the end
