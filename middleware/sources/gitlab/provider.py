"""GitLab (gitlab.com or self-managed) as a source provider: the `Source` the intake, the run's
life and the registry talk to.

A GitLab project's API lives on its own instance, so the provider is given `instance_for`: the
instance's base URL for a project's full path (`group/sub/project`), or one fixed URL. The
intake knows the registration's clone URL, so `lambda name: instance_url(clone_url_of(name))`
is the usual choice. There is no default on purpose: a notification token sent to the wrong
instance (gitlab.com for a self-managed project) would be a token handed to a stranger.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from middleware.domain import CommentEvent, Event
from middleware.refs import is_sha
from middleware.sources.base import Delivery, FetchSpec, HeaderMap, PullRequestGone
from middleware.sources.gitlab import api, events, signature

#: Where GitLab keeps a merge request's head in the TARGET project, forks' included.
MERGE_REQUEST_HEAD = "refs/merge-requests/{}/head"


class GitLabSource:
    """Implements `middleware.sources.base.Source` for GitLab.

    `ca_file` is a CA bundle to trust for the instance (a self-managed one's own CA), used for
    its API and handed to the mirror in every FetchSpec; `timeout` bounds each reporting call.
    """

    name = "gitlab"
    title = "GitLab"
    event_header = events.EVENT_HEADER
    #: What the log shows; the delivery's id falls back on `X-Gitlab-Event-UUID` (GitLab before 17.4).
    delivery_header = events.IDEMPOTENCY_HEADER
    proof = signature.HEADER
    name_field = "project.path_with_namespace"
    events = frozenset({"Push Hook", "Tag Push Hook", "Merge Request Hook", "Note Hook"})
    #: GitLab's "Test" button sends a sample of a real event, with its project: no ping of its own.
    ping_event: str | None = None

    def __init__(
        self,
        ca_file: str | None = None,
        timeout: int = 10,
        *,
        instance_for: Callable[[str], str] | str,
    ) -> None:
        if ca_file is not None and not os.path.isfile(ca_file):
            raise ValueError(f"the CA bundle {ca_file!r} is not a readable file")
        self.ca_file = ca_file
        self.timeout = timeout
        self._instance_for = instance_for

    def instance(self, repository: str) -> str:
        """The base URL of the GitLab instance that holds `repository`."""
        if isinstance(self._instance_for, str):
            return self._instance_for
        return self._instance_for(repository)

    def read(self, headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
        return events.read(headers, body, content_type)

    def verify(self, headers: HeaderMap, body: bytes, secret: str) -> bool:
        """GitLab sends the secret itself in `X-Gitlab-Token`; the body is not signed."""
        del body
        return signature.verify(headers, secret)

    def parse(self, delivery: Delivery) -> list[Event]:
        return events.parse(delivery)

    def complete(self, event: Event, token: str) -> Event:
        """GitLab's payloads carry full SHAs and full refs: nothing to add."""
        del token
        return event

    def pin(self, event: CommentEvent, token: str) -> CommentEvent:
        """The note's merge request head SHA and target branch, read from GitLab now (bounded)."""
        if not event.is_pull_request:
            raise PullRequestGone(f"#{event.issue_number} in {event.repository} is not a merge request")
        sha, target = api.pin(
            self.instance(event.repository), token, event.repository, event.issue_number, self.ca_file
        )
        return dataclasses.replace(event, head_sha=sha, base_ref=target)

    def fetch_spec(
        self, ref: str, sha: str, pr_number: int | None, repository: str, clone_url: str, token: str
    ) -> FetchSpec:
        """`pr-<n>` -> `refs/merge-requests/<n>/head` of the registered project (forks' heads are
        there too), tags as they are, a SHA alone, a branch name -> `refs/heads/<name>`."""
        del repository, clone_url, token
        if ref.startswith("pr-") and ref[3:].isdigit():
            number = int(ref[3:])
            if pr_number is not None and pr_number != number:
                raise ValueError(f"ref {ref!r} names merge request !{number}, the run says !{pr_number}")
            return FetchSpec(MERGE_REQUEST_HEAD.format(number), sha, ca_file=self.ca_file)
        if ref.startswith("refs/tags/"):
            return FetchSpec(ref, sha, ca_file=self.ca_file)
        if is_sha(ref):
            return FetchSpec(None, ref, ca_file=self.ca_file)
        return FetchSpec(f"refs/heads/{ref}", sha, ca_file=self.ca_file)

    def reporter(self) -> api.GitLabReporter:
        return api.GitLabReporter(self.instance, self.ca_file, self.timeout)
