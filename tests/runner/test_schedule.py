import itertools

from ci_runner.schedule import (
    MAX_INTERVAL,
    READ_CAP,
    READ_FIRST,
    READ_KNEE,
    PollSchedule,
    ReadSchedule,
    RequestBudget,
)


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


def test_reads_stay_quick_past_half_a_minute_then_grow_to_the_cap():
    schedule = ReadSchedule()
    early = [schedule.next_interval(t) for t in (0.0, 5.0, 30.0, READ_KNEE - 1)]
    assert early[0] == READ_FIRST and early[1] <= 0.6 and early[2] <= 0.8  # a 5 s / 30 s job's end
    assert all(b >= a for a, b in itertools.pairwise(early))
    later = [schedule.next_interval(READ_KNEE + t) for t in range(60)]
    assert all(b >= a for a, b in itertools.pairwise(later))
    assert later[1] > READ_FIRST and later[-1] == READ_CAP


def test_budget_says_how_long_until_the_next_request():
    budget = RequestBudget(burst=10, per_minute=6)
    assert budget.wait(used=5, elapsed=0) == 0
    assert budget.wait(used=10, elapsed=0) == 10.0
    assert budget.wait(used=10, elapsed=4) == 6.0
    assert not budget.allows(used=10, elapsed=9.9) and budget.allows(used=10, elapsed=10)


def test_token_renewal_margin_follows_short_lifetimes():
    from ci_runner.client import renewal_margin

    assert renewal_margin(300) == 60
    assert renewal_margin(90) == 60
    assert 30 < renewal_margin(60) < 60
    assert 30 < renewal_margin(40) < 40
