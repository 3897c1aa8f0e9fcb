import pytest

from ci_runner.durations import format_duration, parse_duration
from ci_runner.errors import UsageError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("30m", 1800),
        ("1h30m", 5400),
        ("1h 30m", 5400),
        ("2d", 172800),
        ("45s", 45),
        ("1.5h", 5400),
        ("01:30:00", 5400),
        ("10:00", 600),
        ("0:00:05", 5),
    ],
)
def test_parses_the_forms_ci_users_write(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "abc", "30x", "1h30", "-5", "0", "00:00:00", "1:2:3:4"])
def test_rejects_what_is_not_a_duration_with_a_clear_message(text):
    with pytest.raises(UsageError) as info:
        parse_duration(text, what="timeout")
    assert "timeout" in info.value.message


def test_formats_like_sacct():
    assert format_duration(600) == "00:10:00"
    assert format_duration(3723.4) == "01:02:03"
