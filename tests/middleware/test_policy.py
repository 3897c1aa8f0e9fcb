"""The trigger policy: pure decisions on events, hostile cases included."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.domain import (
    CommentEvent,
    OtherEvent,
    PingEvent,
    PipelineConfig,
    PullRequestEvent,
    PushEvent,
    RepositoryConfig,
    TriggerKind,
)
from middleware.policy import decide

SHA = "a" * 40
#: GitHub's numeric user ids; logins are only for display.
IDS = {"alice": 1001, "bob": 1002, "carol": 1003, "mallory": 666, "eve": 667}


def uid(login: str) -> int | None:
    return IDS.get(login.lower())


REPO = RepositoryConfig(
    id=1,
    full_name="octo-org/hpc-code",
    trusted_users=frozenset({1001, 1002}),
    branches=("main", "release/*"),
    pipelines=(
        PipelineConfig(name="cpu", entrypoint="ci/cpu.yml", system="cluster"),
        PipelineConfig(
            name="gpu",
            entrypoint="ci/gpu.yml",
            system="daint",
            branches=("main",),
            trusted_users=frozenset({1003}),
        ),
        PipelineConfig(name="release", entrypoint="ci/rel.yml", system="cluster", branches=(), tags=("v*",)),
    ),
)


def push(ref="refs/heads/main", after=SHA, deleted=False):
    return PushEvent("octo-org/hpc-code", ref, after, "b" * 40, deleted, "alice")


def pr(
    action="opened", author="alice", head_repo="octo-org/hpc-code", base="main", number=12, author_id=None
):
    return PullRequestEvent(
        "octo-org/hpc-code",
        action,
        number,
        author,
        SHA,
        "feature",
        head_repo,
        base,
        author,
        author_id=author_id if author_id is not None else uid(author),
    )


def comment(
    body="firecrest-ci run cpu",
    author="alice",
    action="created",
    is_pr=True,
    sha=SHA,
    seen=True,
    author_id=None,
):
    return CommentEvent(
        "octo-org/hpc-code",
        action,
        12,
        is_pr,
        author,
        body,
        head_sha=sha,
        author_id=author_id if author_id is not None else uid(author),
        created_at="2026-11-26T06:00:00Z",
        head_seen_before_comment=seen,
    )


def names(decision):
    return sorted(t.pipeline for t in decision.triggers)


def test_push_to_enabled_branch_runs_every_pipeline_enabled_for_it():
    decision = decide(push(), REPO)
    assert names(decision) == ["cpu", "gpu"]
    assert {(t.ref, t.sha, t.kind) for t in decision.triggers} == {("main", SHA, TriggerKind.PUSH)}


def test_glob_branches_and_per_pipeline_overrides():
    assert names(decide(push("refs/heads/release/2.0"), REPO)) == ["cpu"]
    assert decide(push("refs/heads/feature"), REPO).empty
    assert "not CI-enabled" in decide(push("refs/heads/feature"), REPO).reason


def test_branch_deletion_is_a_cleanup_only():
    decision = decide(push(after="0" * 40, deleted=True), REPO)
    assert decision.triggers == ()
    assert [c.ref for c in decision.cleanups] == ["main"]


def test_tags_are_off_unless_a_pipeline_lists_them():
    assert names(decide(push("refs/tags/v1.0"), REPO)) == ["release"]
    assert decide(push("refs/tags/nightly"), REPO).empty
    no_tags = replace(REPO, pipelines=REPO.pipelines[:2])
    assert decide(push("refs/tags/v1.0"), no_tags).empty
    assert decide(push("refs/tags/v1.0"), REPO).triggers[0].ref == "refs/tags/v1.0"


@pytest.mark.parametrize(
    "ref", ["refs/heads/--upload-pack=touch pwned", "refs/heads/a\nb", "refs/heads/a..b", "refs/notes/x"]
)
def test_hostile_or_odd_refs_trigger_nothing(ref):
    assert decide(push(ref), REPO).empty


def test_same_repository_pr_runs():
    decision = decide(pr(author="anyone"), REPO)
    assert names(decision) == ["cpu", "gpu"]
    assert {(t.ref, t.pr_number) for t in decision.triggers} == {("pr-12", 12)}


def test_trust_follows_numeric_ids_not_logins():
    """A renamed login keeps its trust; whoever takes over the old login gets none."""
    assert names(decide(pr(author="alice-renamed", head_repo="x/fork", author_id=1001), REPO)) == ["cpu"]
    taken_over = decide(pr(author="alice", head_repo="alice/fork", author_id=4242), REPO)
    assert taken_over.empty and "not trusted" in taken_over.reason
    assert decide(comment(author="alice", author_id=4242), REPO).empty
    assert names(decide(comment(author="alice-renamed", author_id=1001), REPO)) == ["cpu"]


def test_a_comment_approves_only_a_head_seen_before_it_was_made():
    stale = decide(comment(seen=False), REPO)
    assert stale.empty and stale.stale_approval
    assert "was not seen here before the comment" in stale.reason
    assert "comment again" in stale.reason
    unknown = decide(comment(seen=None), REPO)  # never judged: never approved
    assert unknown.empty and unknown.stale_approval
    assert not decide(comment(author="mallory", seen=False), REPO).stale_approval  # untrusted: no ask


def test_fork_pr_runs_only_for_pipelines_trusting_the_author_case_insensitively():
    assert names(decide(pr(author="BOB", head_repo="bob/fork"), REPO)) == ["cpu"]
    assert names(decide(pr(author="carol", head_repo="carol/fork"), REPO)) == ["gpu"]
    refused = decide(pr(author="mallory", head_repo="mallory/fork"), REPO)
    assert refused.empty
    assert "not trusted" in refused.reason


def test_fork_pr_whose_fork_was_deleted_counts_as_a_fork():
    assert decide(pr(author="mallory", head_repo=None), REPO).empty


def test_pr_into_a_disabled_branch_and_other_actions():
    assert decide(pr(base="feature"), REPO).empty
    assert decide(pr(action="labeled"), REPO).empty
    assert names(decide(pr(action="synchronize"), REPO)) == ["cpu", "gpu"]
    closed = decide(pr(action="closed"), REPO)
    assert [c.ref for c in closed.cleanups] == ["pr-12"]


def test_trusted_comment_runs_with_variables():
    decision = decide(comment("firecrest-ci run cpu;DEBUG=1"), REPO)
    (trigger,) = decision.triggers
    assert (trigger.pipeline, trigger.sha, trigger.kind, trigger.variables) == (
        "cpu",
        SHA,
        TriggerKind.COMMENT,
        {"DEBUG": "1"},
    )


@pytest.mark.parametrize(
    ("event", "needle"),
    [
        (comment(action="edited"), "only new comments"),
        (comment(action="deleted"), "only new comments"),
        (comment(is_pr=False), "not a pull request"),
        (comment(author="mallory"), "untrusted user mallory"),
        (comment("firecrest-ci run gpu"), "untrusted user alice"),
        (comment("firecrest-ci run nope"), "unknown pipeline nope; known: cpu, gpu, release"),
        (comment("firecrest-ci run"), "name the pipelines"),
        (comment("firecrest-ci run cpu;CI_JOB_TOKEN=x"), "reserved"),
        (comment(sha=None), "could not be pinned"),
        (comment("looks good to me"), "not a command"),
    ],
)
def test_comments_that_run_nothing_say_why(event, needle):
    decision = decide(event, REPO)
    assert decision.empty
    assert needle in decision.reason


def test_single_pipeline_may_be_omitted():
    single = replace(REPO, pipelines=REPO.pipelines[:1])
    assert names(decide(comment("firecrest-ci run"), single)) == ["cpu"]


def test_ping_and_other_events():
    assert decide(PingEvent("octo-org/hpc-code"), REPO).reason == "ping"
    assert decide(OtherEvent("octo-org/hpc-code", "create"), REPO).empty


logins = st.sampled_from(["alice", "ALICE", "bob", "carol", "mallory", "eve", "nobody", ""])


@settings(max_examples=300, deadline=None)
@given(
    action=st.sampled_from(["opened", "synchronize", "reopened", "closed", "edited", "labeled"]),
    author=logins,
    base=st.sampled_from(["main", "release/1", "dev", "--x"]),
    body=st.text(max_size=60).map(lambda s: "firecrest-ci run " + s),
    commenter=logins,
    comment_action=st.sampled_from(["created", "edited", "deleted"]),
)
def test_untrusted_forks_and_commenters_never_trigger(action, author, base, body, commenter, comment_action):
    fork = decide(pr(action=action, author=author, head_repo=f"{author or 'x'}/fork", base=base), REPO)
    for trigger in fork.triggers:
        pipeline = next(p for p in REPO.pipelines if p.name == trigger.pipeline)
        assert uid(author) in REPO.trusted_for(pipeline)
    said = decide(comment(body, author=commenter, action=comment_action), REPO)
    for trigger in said.triggers:
        pipeline = next(p for p in REPO.pipelines if p.name == trigger.pipeline)
        assert comment_action == "created"
        assert uid(commenter) in REPO.trusted_for(pipeline)


@pytest.mark.parametrize(
    "name",
    [
        "release/.x",
        "release/a.lock",
        "x.lock",
        "-x",
        "a..b",
        "@",
        "a@{b",
        "main\n",
        "a//b",
        "main/",
        "main.",
        "",
    ],
)
def test_refs_git_would_refuse_run_nothing_and_say_why(name):
    decision = decide(push(f"refs/heads/{name}"), REPO)
    assert decision.empty
    assert decision.reason.startswith(f"invalid ref {name!r}: ")
    assert decide(push(f"refs/tags/{name}"), REPO).reason.startswith("invalid ref")


def test_shas_need_a_full_match_not_a_trailing_newline():
    assert decide(push(after=SHA + "\n"), REPO).reason.startswith("push without a commit SHA")
    assert decide(replace(pr(), head_sha=SHA + "\n"), REPO).empty


def _narrowed(allowed_cpu, allowed_gpu=None):
    """Two pipelines trusting user 7, whose allowed variable names are narrowed as given."""
    return RepositoryConfig(
        id=1,
        full_name="octo-org/hpc-code",
        trusted_users=frozenset({7}),
        pipelines=(
            PipelineConfig(name="cpu", entrypoint="c.yml", system="s", allowed_variables=allowed_cpu),
            PipelineConfig(name="gpu", entrypoint="g.yml", system="s", allowed_variables=allowed_gpu),
        ),
    )


def _said(body):
    return CommentEvent(
        "octo-org/hpc-code", "created", 12, True, "alice", body, head_sha=SHA, author_id=7,
        head_seen_before_comment=True,
    )  # fmt: skip


def test_a_pipeline_may_narrow_the_variables_a_comment_sets():
    repo = _narrowed(frozenset({"DEBUG", "N"}))
    (trigger,) = decide(_said("firecrest-ci run cpu;DEBUG=1;N=2"), repo).triggers
    assert trigger.variables == {"DEBUG": "1", "N": "2"}
    refused = decide(_said("firecrest-ci run cpu;DEBUG=1;LEVEL=3"), repo)
    assert refused.empty
    assert refused.reason == "pipeline cpu does not allow the variable(s) LEVEL; it allows only DEBUG, N"
    both = decide(_said("firecrest-ci run gpu,cpu;LEVEL=3"), repo)  # every named pipeline must allow it
    assert both.empty and "pipeline cpu does not allow" in both.reason
    assert len(decide(_said("firecrest-ci run gpu;LEVEL=3"), repo).triggers) == 1  # None: any allowed name
    closed = decide(_said("firecrest-ci run cpu;DEBUG=1"), _narrowed(frozenset()))
    assert closed.reason == "pipeline cpu does not allow the variable(s) DEBUG; it allows none"
    assert len(decide(_said("firecrest-ci run cpu"), _narrowed(frozenset())).triggers) == 1
