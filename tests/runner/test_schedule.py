import itertools

from ci_runner.schedule import MAX_INTERVAL, PollSchedule, RequestBudget


def test_polls_start_fast_and_reach_the_cap():
    schedule = PollSchedule()
    intervals = [schedule.next_interval() for _ in range(40)]
    assert intervals[0] == 0.5
    assert all(b >= a for a, b in itertools.pairwise(intervals))
    assert intervals[-1] == MAX_INTERVAL
    assert max(intervals) == MAX_INTERVAL


def test_budget_allows_a_burst_then_a_rate():
    budget = RequestBudget(burst=15, per_minute=10)
    assert budget.allows(used=14, elapsed=0)
    assert not budget.allows(used=15, elapsed=0)
    assert budget.allows(used=24, elapsed=60)
    assert not budget.allows(used=25, elapsed=60)


def simulate(job_seconds: float, setup: int = 5, teardown: int = 3) -> tuple[int, float]:
    """Count requests and detection lag of the schedule for a job that prints all the time."""
    schedule, budget = PollSchedule(), RequestBudget()
    t, used = 0.0, setup
    while True:
        used += 1  # status read
        if t >= job_seconds:
            break
        if budget.allows(used, t):
            used += 1  # log read
        t += schedule.next_interval()
    return used + teardown, t - job_seconds


def test_long_jobs_stay_within_twelve_requests_per_minute():
    for minutes in (10, 20, 60):
        requests, _lag = simulate(minutes * 60)
        assert requests / minutes <= 12, (minutes, requests)


def test_a_five_second_job_is_noticed_within_a_second_and_a_half():
    _requests, lag = simulate(5.0)
    assert lag <= 1.5
