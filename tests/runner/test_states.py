import pytest

from ci_runner.states import TERMINAL_STATES, base_states, is_pending, is_terminal, state_text


@pytest.mark.parametrize("state", sorted(TERMINAL_STATES))
def test_every_terminal_state_ends_the_follow(state):
    assert is_terminal(state)


@pytest.mark.parametrize(
    "raw",
    ["CANCELLED by 1001", ["FAILED", "NODE_FAIL"], "COMPLETED", ["CANCELLED by 0"], "OUT_OF_MEMORY"],
)
def test_real_server_spellings_are_terminal(raw):
    assert is_terminal(raw)


@pytest.mark.parametrize("raw", ["PENDING", "RUNNING", "COMPLETING", None, "", ["RUNNING"]])
def test_live_states_are_not_terminal(raw):
    assert not is_terminal(raw)


def test_cancelled_by_uid_keeps_its_text_but_maps_to_cancelled():
    assert base_states("CANCELLED by 1001") == {"CANCELLED"}
    assert state_text("CANCELLED by 1001") == "CANCELLED by 1001"
    assert state_text(["FAILED", "NODE_FAIL"]) == "FAILED,NODE_FAIL"


def test_pending():
    assert is_pending("PENDING")
    assert not is_pending("RUNNING")
    assert not is_pending(None)
