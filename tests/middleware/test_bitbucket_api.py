"""The Bitbucket Cloud API client and provider against the stand-in: short SHAs made full, pull
requests pinned, fork fetches, build statuses and comments, and how failures are mapped."""

from __future__ import annotations

import subprocess
import time

import pytest
import requests

from middleware.domain import CommentEvent, OtherEvent, PullRequestEvent, PushEvent
from middleware.sources.base import FetchSpec, PinUnavailable, PullRequestGone, ReportFailed, Status
from middleware.sources.bitbucket import api
from middleware.sources.bitbucket.api import BitbucketReporter, CommitNotFound, PullRequestHead, status_key
from middleware.sources.bitbucket.provider import BitbucketSource
from sandbox.bitbucket.app import BitbucketState
from sandbox.bitbucket.server import run_bitbucket

TOKEN = "bb-repo-token-SECRET-0123456789"
WORKSPACE_TOKEN = "bb-workspace-token-SECRET-0123456789"
REPO = "team/hpc-code"
FORK = "alice/hpc-code"
MAIN = "1" * 40
FEATURE = "2a" * 20
FIX = "3b" * 20


@pytest.fixture
def bb():
    with run_bitbucket() as handle:
        state = handle.state
        state.add_token(TOKEN, REPO)
        state.add_token(WORKSPACE_TOKEN, "team")
        state.add_repo(REPO)
        state.add_commit(REPO, sha=MAIN)
        state.add_commit(REPO, branch="feature", sha=FEATURE)
        state.add_repo(FORK, fork_of=REPO, private=False)
        state.add_commit(FORK, branch="fix", sha=FIX)  # only in the fork
        state.add_pull(REPO, 7, source_branch="feature")
        state.add_pull(REPO, 8, source_branch="fix", source_repo=FORK, destination_branch="main")
        state.add_pull(REPO, 9, source_branch="gone", source_commit="4" * 40, source_repo=None)
        yield handle


def commit_lookups(handle) -> list[str]:
    return [r["path"] for r in handle.state.requests if "/commit/" in r["path"] and r["method"] == "GET"]


def no_token_in(error: BaseException) -> None:
    assert TOKEN not in str(error)
    assert "SECRET" not in str(error)


# -- resolve_commit and pin (bounded) -----------------------------------------------------------


def test_short_hashes_resolve_to_full_shas(bb):
    assert api.resolve_commit(bb.api_url, TOKEN, REPO, FEATURE[:12]) == FEATURE
    assert api.resolve_commit(bb.api_url, TOKEN, REPO, MAIN) == MAIN
    assert commit_lookups(bb) == [
        f"/2.0/repositories/{REPO}/commit/{FEATURE[:12]}",
        f"/2.0/repositories/{REPO}/commit/{MAIN}",
    ]


def test_an_unknown_commit_is_a_final_answer(bb):
    with pytest.raises(CommitNotFound) as caught:
        api.resolve_commit(bb.api_url, TOKEN, REPO, "deadbeef0000")
    assert isinstance(caught.value, PullRequestGone)
    assert f"commit deadbeef0000 not found in {REPO}" in str(caught.value)
    no_token_in(caught.value)


def test_a_forks_commit_is_looked_up_in_the_fork_when_the_destination_lacks_it(bb):
    assert api.resolve_commit(bb.api_url, TOKEN, REPO, FIX[:12], also_in=FORK) == FIX
    assert commit_lookups(bb) == [
        f"/2.0/repositories/{REPO}/commit/{FIX[:12]}",
        f"/2.0/repositories/{FORK}/commit/{FIX[:12]}",
    ]


def test_a_fork_the_token_cannot_read_is_final(bb):
    bb.state.repo(FORK)["private"] = True
    with pytest.raises(CommitNotFound, match=f"not found in {REPO} or {FORK}"):
        api.resolve_commit(bb.api_url, TOKEN, REPO, FIX[:12], also_in=FORK)


@pytest.mark.parametrize("bad", ["HEAD", "abc", "A" * 12, "1" * 41, "../../x"])
def test_only_commit_hashes_are_sent(bb, bad):
    with pytest.raises(ValueError, match="not a commit hash"):
        api.resolve_commit(bb.api_url, TOKEN, REPO, bad)
    assert bb.state.requests == []


@pytest.mark.parametrize("bad", ["team", "team/a/b", "../x", "team/..", "te am/x", "team/x?y"])
def test_only_repository_names_are_sent(bb, bad):
    with pytest.raises(ValueError, match="workspace/slug"):
        api.resolve_commit(bb.api_url, TOKEN, bad, "abcdef")
    assert bb.state.requests == []


def test_pin_reads_the_pull_request_and_makes_its_head_full(bb):
    assert api.pin(bb.api_url, TOKEN, REPO, 7) == PullRequestHead(FEATURE, "main", REPO, "feature")
    assert api.pin(bb.api_url, TOKEN, REPO, 8) == PullRequestHead(FIX, "main", FORK, "fix")


def test_a_missing_pull_request_is_gone(bb):
    with pytest.raises(PullRequestGone, match=f"pull request #70 not found in {REPO}"):
        api.pin(bb.api_url, TOKEN, REPO, 70)


def test_one_5xx_is_retried_two_are_unavailable(bb):
    bb.state.fail_next(1, 503)
    assert api.resolve_commit(bb.api_url, TOKEN, REPO, FEATURE[:12]) == FEATURE
    assert len(commit_lookups(bb)) == 2
    bb.state.fail_next(2, 502)
    with pytest.raises(PinUnavailable) as caught:
        api.pin(bb.api_url, TOKEN, REPO, 7)
    assert "Bitbucket answered 502 for pull request #7 of team/hpc-code: Something went wrong" in str(
        caught.value
    )
    no_token_in(caught.value)


def test_a_429_is_not_waited_for_by_a_web_worker(bb):
    bb.state.fail_next(5, 429)
    with pytest.raises(PinUnavailable, match="answered 429"):
        api.resolve_commit(bb.api_url, TOKEN, REPO, FEATURE[:12])
    assert len(bb.state.requests) == 1


def test_a_rejected_token_is_unavailable_and_never_quoted(bb):
    with pytest.raises(PinUnavailable) as caught:
        api.pin(bb.api_url, "bb-wrong-SECRET-token", REPO, 7)
    assert "answered 401" in str(caught.value)
    assert "bb-wrong-SECRET-token" not in str(caught.value)


def test_a_slow_bitbucket_is_cut_short(bb, monkeypatch):
    monkeypatch.setattr(api, "PIN_TIMEOUT", 0.2)
    bb.state.delay = 1.0
    started = time.monotonic()
    with pytest.raises(
        PinUnavailable, match=r"unreachable for commit 2a2a2a2a2a2a of team/hpc-code \(timed out\)"
    ):
        api.resolve_commit(bb.api_url, TOKEN, REPO, FEATURE[:12])
    assert time.monotonic() - started < 1.5  # two tries of 0.2 s, not two answers of 1 s


def test_an_unreachable_bitbucket_is_unavailable():
    with pytest.raises(
        PinUnavailable, match=r"unreachable for commit abcdef of team/hpc-code \(cannot connect\)"
    ):
        api.resolve_commit("http://127.0.0.1:9/2.0", TOKEN, REPO, "abcdef")


def test_bitbuckets_message_is_quoted_without_the_token():
    response = requests.Response()
    response.status_code = 400
    response._content = (
        b'{"type": "error", "error": {"message": "bad token bb-repo-token-SECRET-0123456789"}}'
    )
    assert api._message(response, TOKEN) == ": bad token ***"
    response._content = b"<html>nginx</html>"
    assert api._message(response, TOKEN) == ""


# -- the reporter -------------------------------------------------------------------------------


@pytest.fixture
def reporter(bb):
    return BitbucketReporter(bb.api_url, timeout=5, web_url=bb.url, backoff=0.01)


def status(state="pending", context="firecrest-ci/cpu", description="queued", url=None) -> Status:
    return Status(state, context, description, url)


@pytest.mark.parametrize(
    ("state", "bitbucket"),
    [("pending", "INPROGRESS"), ("success", "SUCCESSFUL"), ("failure", "FAILED"), ("error", "FAILED")],
)
def test_states_map_to_bitbuckets(bb, reporter, state, bitbucket):
    reporter.post(TOKEN, REPO, FEATURE, status(state, url="https://gitlab.example.org/p/3"))
    (posted,) = bb.state.statuses.values()
    assert (posted["state"], posted["name"], posted["url"]) == (
        bitbucket,
        "firecrest-ci/cpu",
        "https://gitlab.example.org/p/3",
    )
    assert posted["key"] == status_key("firecrest-ci/cpu")


def test_an_unknown_state_is_refused(reporter):
    with pytest.raises(ValueError, match="unknown status state"):
        reporter.post(TOKEN, REPO, FEATURE, status("running"))


def test_a_status_without_a_url_links_to_the_commit(bb, reporter):
    reporter.post(TOKEN, REPO, FEATURE, status())
    (posted,) = bb.state.statuses.values()
    assert posted["url"] == f"{bb.url}/{REPO}/commits/{FEATURE}"
    assert reporter.posted(TOKEN, REPO, FEATURE, status())


def test_posted_finds_exactly_this_status(bb, reporter):
    wanted = status("success", description="passed in 3 min", url="https://gitlab.example.org/p/3")
    assert not reporter.posted(TOKEN, REPO, FEATURE, wanted)  # 404: no status under the key yet
    reporter.post(TOKEN, REPO, FEATURE, status())
    assert not reporter.posted(TOKEN, REPO, FEATURE, wanted)
    reporter.post(TOKEN, REPO, FEATURE, wanted)
    assert reporter.posted(TOKEN, REPO, FEATURE, wanted)
    assert not reporter.posted(TOKEN, REPO, FEATURE, status("success", description="other", url=wanted.url))
    assert not reporter.posted(TOKEN, REPO, FEATURE, status("success", description=wanted.description))
    assert not reporter.posted(TOKEN, REPO, MAIN, wanted)
    assert len(bb.state.statuses) == 1  # one key a context: the second post replaced the first


def test_long_or_odd_contexts_get_short_distinct_stable_keys(bb, reporter):
    long_a = "firecrest-ci/" + "a-very-long-pipeline-name-" * 3 + "one"
    long_b = "firecrest-ci/" + "a-very-long-pipeline-name-" * 3 + "two"
    keys = {status_key(c) for c in (long_a, long_b, "firecrest-ci/gpu", "firecrest-ci/gpu ", "plain-key")}
    assert len(keys) == 5
    assert all(len(k) <= 40 and k.replace("-", "").replace(".", "").replace("_", "").isalnum() for k in keys)
    assert status_key(long_a) == status_key(long_a)
    assert status_key("plain-key") == "plain-key"
    assert status_key(long_a).startswith("firecrest-ci-a-very-long")
    for context in (long_a, long_b):
        reporter.post(TOKEN, REPO, FEATURE, status(context=context, description="x" * 300))
        assert reporter.posted(TOKEN, REPO, FEATURE, status(context=context, description="x" * 300))
    assert {s["name"] for s in bb.state.statuses.values()} == {long_a, long_b}
    assert {len(s["description"]) for s in bb.state.statuses.values()} == {255}


def test_a_post_is_never_retried_once_it_may_have_arrived(bb, reporter):
    bb.state.fail_next(1, 503)
    with pytest.raises(ReportFailed) as caught:
        reporter.post(TOKEN, REPO, FEATURE, status())
    assert f"Bitbucket answered 503 to the pending status for {FEATURE[:12]}" in str(caught.value)
    no_token_in(caught.value)
    assert [r["method"] for r in bb.state.requests] == ["POST"]


def test_a_lost_answer_is_settled_by_posted(bb, reporter):
    bb.state.lose_status_answers = 1
    with pytest.raises(ReportFailed, match="502"):
        reporter.post(TOKEN, REPO, FEATURE, status())
    assert reporter.posted(TOKEN, REPO, FEATURE, status())


def test_look_ups_are_retried_on_5xx_and_429(bb, reporter):
    reporter.post(TOKEN, REPO, FEATURE, status())
    bb.state.fail_next(1, 429)
    assert reporter.posted(TOKEN, REPO, FEATURE, status())
    bb.state.fail_next(2, 503)
    assert reporter.posted(TOKEN, REPO, FEATURE, status())
    bb.state.fail_next(3, 500)
    with pytest.raises(ReportFailed, match="Bitbucket answered 500 to the status look-up"):
        reporter.posted(TOKEN, REPO, FEATURE, status())
    assert [r["method"] for r in bb.state.requests].count("GET") == 2 + 3 + 3


def test_reporter_failures_name_the_status_code_never_the_token(bb, reporter):
    with pytest.raises(ReportFailed) as caught:
        reporter.post("bb-wrong-SECRET-token", REPO, FEATURE, status())
    assert "answered 401" in str(caught.value)
    assert "SECRET" not in str(caught.value)
    with pytest.raises(ReportFailed) as caught:
        reporter.posted("bb-wrong-SECRET-token", REPO, FEATURE, status())
    assert "Bitbucket answered 401 to the status look-up" in str(caught.value)
    assert "SECRET" not in str(caught.value)
    with pytest.raises(ReportFailed) as caught:
        reporter.comment(TOKEN, FORK, 1, "x")  # a repository token writes to its repository only
    assert "answered 403" in str(caught.value)
    no_token_in(caught.value)


def test_max_seconds_bounds_every_try_and_pause():
    reporter = BitbucketReporter("https://api.bitbucket.org/2.0", timeout=10)
    assert reporter.max_seconds >= 3 * 2 * 10 + 2 * api.RETRY_AFTER_CAP
    assert BitbucketReporter(timeout=10, tries=1).max_seconds == 20


def test_comments_are_posted(bb, reporter):
    reporter.comment(TOKEN, REPO, 7, "Pipeline **cpu** failed: https://gitlab.example.org/p/3")
    (posted,) = bb.state.comments
    assert posted["content"]["raw"] == "Pipeline **cpu** failed: https://gitlab.example.org/p/3"
    assert posted["pullrequest"]["id"] == 7
    with pytest.raises(ReportFailed) as caught:
        reporter.comment(TOKEN, REPO, 70, "x")
    assert "Bitbucket answered 404 to a comment on #70: Pull request 70 not found" in str(caught.value)
    bb.state.fail_next(1, 502)
    with pytest.raises(ReportFailed, match="502"):
        reporter.comment(TOKEN, REPO, 7, "again")
    assert len(bb.state.comments) == 1
    with pytest.raises(ReportFailed, match=r"unreachable for a comment on #7 \(cannot connect\)"):
        BitbucketReporter("http://127.0.0.1:9/2.0", timeout=1, tries=1).comment(TOKEN, REPO, 7, "x")


# -- the provider -------------------------------------------------------------------------------


@pytest.fixture
def source(bb):
    return BitbucketSource(bb.api_url, timeout=5, web_url=bb.url)


def pr_event(number=7, head=FEATURE[:12], head_repository=REPO, action="opened") -> PullRequestEvent:
    return PullRequestEvent(
        REPO, action, number, "Emma", head, "feature", head_repository, "main", "Emma", "{u}"
    )


def test_complete_makes_short_shas_full(bb, source):
    assert source.complete(pr_event(), TOKEN).head_sha == FEATURE
    assert source.complete(pr_event(8, FIX[:12], FORK), TOKEN).head_sha == FIX
    push = PushEvent(REPO, "refs/heads/feature", FEATURE[:7], "", False, "Emma")
    assert source.complete(push, TOKEN).after == FEATURE


def test_complete_leaves_what_needs_nothing_alone(bb, source):
    untouched = [
        pr_event(head=FEATURE),
        pr_event(head="dead00000000", action="closed"),  # closing runs nothing
        PushEvent(REPO, "refs/heads/x", "0" * 40, MAIN[:12], True, "Emma"),
        PushEvent(REPO, "refs/heads/x", MAIN, "", False, "Emma"),
        OtherEvent(REPO, "repo:fork"),
    ]
    for event in untouched:
        assert source.complete(event, TOKEN) is event
    assert bb.state.requests == []


def test_complete_raises_final_and_transient_errors(bb, source):
    with pytest.raises(PullRequestGone):
        source.complete(pr_event(head="dead00000000"), TOKEN)
    bb.state.fail_next(2, 503)
    with pytest.raises(PinUnavailable):
        source.complete(pr_event(), TOKEN)


def test_pin_fills_the_comments_head_and_base(source):
    event = CommentEvent(REPO, "created", 8, True, "Emma", "firecrest-ci run", author_id="{u}")
    pinned = source.pin(event, TOKEN)
    assert (pinned.head_sha, pinned.base_ref) == (FIX, "main")
    with pytest.raises(PullRequestGone):
        source.pin(CommentEvent(REPO, "created", 70, True, "Emma", "firecrest-ci run"), TOKEN)


def test_fetch_spec_for_branches_tags_and_shas(bb, source):
    clone = f"{bb.url}/{REPO}.git"
    assert source.fetch_spec("main", MAIN, None, REPO, clone, TOKEN) == FetchSpec("refs/heads/main", MAIN)
    assert source.fetch_spec("refs/tags/v1", MAIN, None, REPO, clone, TOKEN) == FetchSpec(
        "refs/tags/v1", MAIN
    )
    assert source.fetch_spec(MAIN, MAIN, None, REPO, clone, TOKEN) == FetchSpec(None, MAIN)
    assert bb.state.requests == []


def test_fetch_spec_for_pull_requests_follows_their_source(bb, source):
    clone = f"https://x-token-auth@bitbucket.example.org:8443/{REPO}.git"
    assert source.fetch_spec("pr-7", FEATURE, 7, REPO, clone, TOKEN) == FetchSpec(
        "refs/heads/feature", FEATURE
    )
    fork = source.fetch_spec("pr-8", FIX, None, REPO, clone, TOKEN)  # the number read off the ref
    assert fork == FetchSpec(
        "refs/heads/fix", FIX, f"https://x-token-auth@bitbucket.example.org:8443/{FORK}.git"
    )
    with pytest.raises(PullRequestGone, match="deleted fork"):
        source.fetch_spec("pr-9", "4" * 40, 9, REPO, clone, TOKEN)
    with pytest.raises(PullRequestGone, match="#70 not found"):
        source.fetch_spec("pr-70", FIX, 70, REPO, clone, TOKEN)


def test_the_provider_describes_itself(bb, source):
    described = (source.name, source.title, source.event_header, source.delivery_header, source.proof)
    assert described == ("bitbucket", "Bitbucket", "X-Event-Key", "X-Request-UUID", "X-Hub-Signature")
    assert source.name_field == "repository.full_name"
    assert {"repo:push", "pullrequest:created", "pullrequest:comment_created"} <= source.events
    assert source.ping_event is None
    made = source.reporter()
    assert isinstance(made, BitbucketReporter)
    assert made.api_url == bb.api_url
    assert BitbucketSource().api_url == "https://api.bitbucket.org/2.0"


def test_a_fork_pull_request_fetches_for_real_through_git(tmp_path):
    """End to end on real git: the pinned head of a fork's pull request is in what fetch_spec names."""
    with run_bitbucket(BitbucketState(root=tmp_path / "bitbucket")) as handle:
        state = handle.state
        state.add_token(TOKEN, REPO)
        state.add_repo(REPO, private=False)
        state.add_commit(REPO, message="first")
        state.add_repo(FORK, fork_of=REPO, private=False)
        head = state.add_commit(FORK, branch="fix", message="the fix")
        state.add_pull(REPO, 12, source_branch="fix", source_repo=FORK)
        source = BitbucketSource(handle.api_url, web_url=handle.url)
        event = CommentEvent(REPO, "created", 12, True, "Emma", "firecrest-ci run")
        pinned = source.pin(event, TOKEN)
        assert pinned.head_sha == head
        spec = source.fetch_spec("pr-12", head, 12, REPO, handle.clone_url(REPO), TOKEN)
        assert spec.url == handle.clone_url(FORK)
        cache = tmp_path / "cache.git"
        subprocess.run(["git", "init", "--quiet", "--bare", str(cache)], check=True)
        subprocess.run(
            ["git", "-C", str(cache), "fetch", "--quiet", "--", spec.url, f"+{spec.ref}:refs/sources/pr"],
            check=True,
        )
        fetched = subprocess.run(
            ["git", "-C", str(cache), "rev-parse", "refs/sources/pr"],
            capture_output=True,
            text=True,
            check=True,
        )
        assert fetched.stdout.strip() == pinned.head_sha
