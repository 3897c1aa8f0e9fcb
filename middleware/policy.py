"""Event -> Decision: which pipelines run, at which commit, and why. Pure; no I/O.

Refs in triggers name what the mirror will hold: a branch push keeps its
branch name (`main`), a pull request becomes `pr-<n>`, a tag `refs/tags/<t>`.

- Push to a CI-enabled branch runs every pipeline enabled for it; a deleted
  branch runs nothing and asks for a mirror cleanup; tags run only for
  pipelines that list matching tag globs.
- Pull requests (opened, synchronize, reopened, ready_for_review) into a
  CI-enabled branch run when they come from the same repository, or from a
  fork whose author is trusted for the pipeline (by numeric user id, never
  by login). author_association is never trusted on its own. A closed PR asks
  for a cleanup of `pr-<n>`.
- A `<prefix> run` comment runs only when created (never edited or deleted),
  on a pull request, by a user trusted for every pipeline it names, at the
  head SHA pinned by the enrichment step, and only if this service saw that
  head arrive at or before the comment was made (a comment approves only what
  the commenter saw). With several pipelines the names must be given. Its
  variables must be allowed by each pipeline that narrows them with its own list.
- Branch and tag names git would refuse run nothing ("invalid ref"), here
  rather than failing in the mirror on every retry.
- A re-run (GitHub's "Re-run" on a check run or suite) counts only for this
  service's own App, and starts the next attempt of each finished run it names
  whose pipeline trusts the sender (by numeric id, as for comments).
"""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from middleware.commands import CommandError, check_allowed_variables, parse_command
from middleware.domain import (
    CommentEvent,
    Decision,
    Event,
    MirrorCleanup,
    OtherEvent,
    PingEvent,
    PipelineConfig,
    PullRequestEvent,
    PushEvent,
    RepositoryConfig,
    RerunEvent,
    RunRef,
    Trigger,
    TriggerKind,
    UserId,
)
from middleware.refs import ZERO_SHA, is_sha, ref_problem

PR_ACTIONS = frozenset({"opened", "synchronize", "reopened", "ready_for_review"})


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatchcase(name, pattern) for pattern in patterns)


def _trusted(repo: RepositoryConfig, pipeline: PipelineConfig, user_id: UserId | None) -> bool:
    """Trust follows GitHub's numeric user ids: a renamed login can be taken by someone else."""
    return user_id is not None and user_id in repo.trusted_for(pipeline)


def _push(event: PushEvent, repo: RepositoryConfig) -> Decision:
    branch, tag = event.branch, event.tag
    name = branch if branch is not None else tag
    if name is None:
        return Decision(reason=f"push to {event.ref!r}: not a branch or tag")
    problem = ref_problem(name)
    if problem:
        return Decision(reason=f"invalid ref {name!r}: {problem}, so git would refuse it")
    if event.deleted or ZERO_SHA.fullmatch(event.after):
        if branch is not None and any(_matches(branch, repo.branches_for(p)) for p in repo.pipelines):
            return Decision(
                cleanups=(MirrorCleanup(repo.id, branch, f"branch {branch} deleted"),),
                reason=f"branch {branch} deleted",
            )
        return Decision(reason=f"{name} deleted; nothing to run")
    if not is_sha(event.after):
        return Decision(reason=f"push without a commit SHA ({event.after!r})")
    if branch is not None:
        chosen = [p for p in repo.pipelines if _matches(branch, repo.branches_for(p))]
        ref, why = branch, f"push to {branch}"
    else:
        assert tag is not None
        chosen = [p for p in repo.pipelines if p.tags and _matches(tag, p.tags)]
        ref, why = f"refs/tags/{tag}", f"tag {tag}"
    if not chosen:
        what = f"branch {branch} is not CI-enabled" if branch is not None else f"tag pushes for {tag} are off"
        return Decision(reason=f"{what} for any pipeline")
    return Decision(
        triggers=tuple(Trigger(repo.id, p.name, ref, event.after, TriggerKind.PUSH, why) for p in chosen)
    )


def _pull_request(event: PullRequestEvent, repo: RepositoryConfig) -> Decision:
    ref = f"pr-{event.number}"
    if event.action == "closed":
        return Decision(
            cleanups=(MirrorCleanup(repo.id, ref, f"pull request #{event.number} closed"),),
            reason=f"pull request #{event.number} closed",
        )
    if event.action not in PR_ACTIONS:
        return Decision(reason=f"pull request action {event.action!r} runs nothing")
    if not is_sha(event.head_sha):
        return Decision(reason="pull request without a head commit SHA")
    targeted = [p for p in repo.pipelines if _matches(event.base_ref, repo.branches_for(p))]
    if not targeted:
        return Decision(
            reason=f"pull request #{event.number} targets {event.base_ref!r}, not a CI-enabled branch"
        )
    if event.from_fork:
        chosen = [p for p in targeted if _trusted(repo, p, event.author_id)]
        if not chosen:
            return Decision(
                reason=f"pull request #{event.number} comes from a fork by {event.author}, who is not "
                "trusted; a trusted user can approve it with a `run` comment"
            )
    else:
        chosen = targeted
    why = f"pull request #{event.number} {event.action}"
    return Decision(
        triggers=tuple(
            Trigger(
                repo.id, p.name, ref, event.head_sha, TriggerKind.PULL_REQUEST, why, pr_number=event.number
            )
            for p in chosen
        )
    )


def _comment(event: CommentEvent, repo: RepositoryConfig, prefix: str) -> Decision:
    if event.action != "created":
        return Decision(reason=f"comment {event.action}: only new comments can start pipelines")
    if not event.is_pull_request:
        return Decision(reason="comment on an issue, not a pull request")
    try:
        command = parse_command(event.body, prefix)
    except CommandError as error:
        return Decision(reason=f"invalid command: {error}")
    if command is None:
        return Decision(reason="comment is not a command")
    known = {p.name: p for p in repo.pipelines}
    names = command.pipelines
    if not names:
        if len(known) != 1:
            return Decision(
                reason=f"name the pipelines to run; this repository has: {', '.join(sorted(known)) or 'none'}"
            )
        names = tuple(known)
    unknown = [n for n in names if n not in known]
    if unknown:
        return Decision(
            reason=f"unknown pipeline {', '.join(unknown)}; known: {', '.join(sorted(known)) or 'none'}"
        )
    untrusted = [n for n in names if not _trusted(repo, known[n], event.author_id)]
    if untrusted:
        return Decision(
            reason=f"comment by untrusted user {event.author}; only trusted users can start pipelines "
            f"({', '.join(untrusted)})"
        )
    for name in names:
        problem = check_allowed_variables(name, command.variables, known[name].allowed_variables)
        if problem:
            return Decision(reason=problem)
    if not event.head_sha or not is_sha(event.head_sha):
        return Decision(reason="the pull request's head commit could not be pinned; nothing was run")
    if event.head_seen_before_comment is not True:
        return Decision(
            reason=f"the pull request's head {event.head_sha[:12]} was not seen here before the comment "
            "was made, so the comment does not approve it; nothing was run: a trusted user must "
            "comment again to approve the current head",
            stale_approval=True,
        )
    why = f"comment by {event.author} on #{event.issue_number}"
    return Decision(
        triggers=tuple(
            Trigger(
                repo.id,
                name,
                f"pr-{event.issue_number}",
                event.head_sha,
                TriggerKind.COMMENT,
                why,
                variables=dict(command.variables),
                pr_number=event.issue_number,
            )
            for name in names
        )
    )


def _rerun(event: RerunEvent, repo: RepositoryConfig, runs: Sequence[RunRef], app_id: int | None) -> Decision:
    what = event.scope.replace("_", " ")
    if app_id is None or event.app_id != app_id:
        return Decision(reason=f"re-run of a {what} this service did not make")
    if not is_sha(event.head_sha):
        return Decision(reason=f"re-run of a {what} without a head commit SHA")
    if not runs:
        return Decision(reason=f"re-run of a {what}: no run of {event.head_sha[:12]} here to run again")
    known = {p.name: p for p in repo.pipelines}
    triggers: list[Trigger] = []
    untrusted: list[str] = []
    going: list[str] = []
    for run in runs:
        pipeline = known.get(run.pipeline)
        if pipeline is None:
            continue  # the pipeline was removed since
        if not _trusted(repo, pipeline, event.sender_id):
            untrusted.append(run.pipeline)
        elif not run.finished:
            going.append(run.pipeline)
        else:
            attempt = run.attempt + 1
            triggers.append(
                Trigger(
                    repo.id, run.pipeline, run.ref, run.sha, TriggerKind(run.kind),
                    f"re-run by {event.sender} (attempt {attempt})",
                    variables=dict(run.variables), pr_number=run.pr_number,
                    attempt=attempt, requested_by=event.sender,
                )
            )  # fmt: skip
    if triggers:
        return Decision(triggers=tuple(triggers))
    if untrusted:
        return Decision(
            reason=f"re-run requested by {event.sender}, who is not trusted for {', '.join(untrusted)}; "
            "only trusted users can run pipelines again"
        )
    if going:
        return Decision(reason=f"re-run of {', '.join(going)}: still running; cancel it or wait for its end")
    return Decision(reason=f"re-run of a {what}: its pipelines are no longer configured")


def decide(
    event: Event,
    repo: RepositoryConfig,
    *,
    prefix: str = "firecrest-ci",
    runs: Sequence[RunRef] = (),
    app_id: int | None = None,
) -> Decision:
    """`runs` and `app_id` matter for a re-run only: the runs it names (read by the intake),
    and this service's GitHub App (None in token mode)."""
    if isinstance(event, RerunEvent):
        return _rerun(event, repo, runs, app_id)
    if isinstance(event, PushEvent):
        return _push(event, repo)
    if isinstance(event, PullRequestEvent):
        return _pull_request(event, repo)
    if isinstance(event, CommentEvent):
        return _comment(event, repo, prefix)
    if isinstance(event, PingEvent):
        return Decision(reason="ping")
    assert isinstance(event, OtherEvent)
    return Decision(reason=f"{event.name} events run nothing")


def is_command_candidate(event: CommentEvent, repo: RepositoryConfig, prefix: str) -> bool:
    """Worth asking the provider for the PR's head: a new PR comment by someone trusted for
    some pipeline, whose first line starts with `<prefix> run`."""
    if event.action != "created" or not event.is_pull_request:
        return False
    first_line = (event.body or "").strip().splitlines()[0] if (event.body or "").strip() else ""
    if not first_line.startswith(f"{prefix} run"):
        return False
    return event.author_id is not None and any(event.author_id in repo.trusted_for(p) for p in repo.pipelines)


def merge(decisions: list[Decision]) -> Decision:
    """One delivery's decision from its events' (a push of several refs is several events)."""
    if len(decisions) == 1:
        return decisions[0]
    return Decision(
        triggers=tuple(t for d in decisions for t in d.triggers),
        cleanups=tuple(c for d in decisions for c in d.cleanups),
        reason="; ".join(dict.fromkeys(d.reason for d in decisions if d.reason)) or "no events",
        stale_approval=any(d.stale_approval for d in decisions),
    )
