"""Token mode's live check proves the notification token may write commit statuses: a classic
token by its `X-OAuth-Scopes`, a fine-grained one (no such header) by a labelled test status."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from middleware.sources.github.tokens import CHECK_CONTEXT, TokenChecker, TokenRejected, missing_status_scope
from sandbox.github.server import GitHubHandle, run_github

CLASSIC = "ghp_classic_token_0123456789abcdef"
FINE = "github_pat_11AAAAAAA0fine_grained_token_0123456789"


@pytest.fixture
def gh() -> Iterator[GitHubHandle]:
    with run_github() as handle:
        handle.state.strict_tokens = True
        handle.state.add_user("octo-bot", CLASSIC)
        handle.state.add_repo("octo-org/hpc-code", collaborators={"octo-bot": "write"})
        handle.state.add_repo("octo-org/secret", private=True, collaborators={"octo-bot": "write"})
        yield handle


def check(gh: GitHubHandle, token: str, repo: str = "octo-org/hpc-code") -> bool:
    return TokenChecker(gh.url)(token, repo)


@pytest.mark.parametrize(
    ("scopes", "repo"),
    [
        (["repo"], "octo-org/secret"),
        (["repo:status"], "octo-org/hpc-code"),
        (["read:org", "repo:status"], "octo-org/hpc-code"),
    ],
)
def test_classic_tokens_with_a_status_scope_pass(gh, scopes, repo):
    gh.state.set_token_scopes(CLASSIC, scopes)
    assert check(gh, CLASSIC, repo) is repo.endswith("secret")
    assert gh.state.statuses == []  # a classic token is judged by its scopes: nothing posted


@pytest.mark.parametrize("scopes", [[], ["read:user"], ["gist", "workflow"]])
def test_classic_tokens_without_one_are_refused_readably(gh, scopes):
    gh.state.set_token_scopes(CLASSIC, scopes)
    with pytest.raises(TokenRejected) as raised:
        check(gh, CLASSIC)
    text = str(raised.value)
    assert "may not write commit statuses on octo-org/hpc-code" in text
    assert "repo:status" in text
    assert CLASSIC not in text


def test_public_repo_is_enough_for_a_public_repository(gh):
    gh.state.set_token_scopes(CLASSIC, ["public_repo"])
    assert check(gh, CLASSIC) is False


def test_scope_decision_is_pure():
    missing_status_scope(["repo"], private=True, full_name="o/r")
    missing_status_scope([" repo:status "], private=True, full_name="o/r")
    with pytest.raises(TokenRejected, match="public_repo"):  # listed as what it has
        missing_status_scope(["public_repo"], private=True, full_name="o/r")
    with pytest.raises(TokenRejected, match="no scopes"):
        missing_status_scope([""], private=False, full_name="o/r")


def test_a_fine_grained_token_is_proved_by_a_labelled_test_status(gh):
    gh.state.add_fine_grained_token("octo-bot", FINE, {"octo-org/hpc-code": {"statuses": "write"}})
    assert check(gh, FINE) is False
    [posted] = gh.state.statuses
    assert posted["context"] == CHECK_CONTEXT == "firecrest-ci/token-check"
    assert posted["state"] == "success"
    assert (
        "only checks" in posted["description"].lower() and "not a ci result" in posted["description"].lower()
    )


@pytest.mark.parametrize("granted", [{"statuses": "read"}, {"contents": "write"}])
def test_a_fine_grained_token_that_may_not_write_statuses_is_refused(gh, granted):
    gh.state.add_fine_grained_token("octo-bot", FINE, {"octo-org/hpc-code": granted})
    with pytest.raises(TokenRejected) as raised:
        check(gh, FINE)
    text = str(raised.value)
    assert "commit statuses on octo-org/hpc-code" in text and "Commit statuses: Read and write" in text
    assert FINE not in text
    assert gh.state.statuses == []


def test_bad_credentials_still_say_so(gh):
    with pytest.raises(TokenRejected, match="bad credentials"):
        check(gh, "ghp_unknown_token_zzzzzzzzzzzzzzzz")
