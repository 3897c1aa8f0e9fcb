"""Bitbucket Cloud behind the source interface.

What differs from GitHub: pull request payloads name their head by a 12-character hash, so
`complete` asks the API for the full SHA before the policy sees the event; and Bitbucket has no
`refs/pull/<n>/head` to fetch, so a pull request run fetches its source branch from its source
repository (a fork's own clone URL, on the registered clone URL's host).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from middleware.domain import CommentEvent, Event, PullRequestEvent, PushEvent
from middleware.refs import is_sha
from middleware.sources.base import Delivery, FetchSpec, HeaderMap, PullRequestGone, Reporter, Source
from middleware.sources.bitbucket import api, signature
from middleware.sources.bitbucket import events as payloads

_PR_REF = re.compile(r"pr-([1-9][0-9]{0,9})")


class BitbucketSource:
    """bitbucket.org through its REST API 2.0 (`api_url`); `web_url` is where its pages live."""

    name = "bitbucket"
    title = "Bitbucket"
    event_header = payloads.EVENT_HEADER
    delivery_header = payloads.ID_HEADER
    proof = signature.HEADER
    name_field = "repository.full_name"
    events = frozenset({"repo:push", *payloads.PULL_REQUEST_ACTIONS, *payloads.COMMENT_ACTIONS})
    #: Bitbucket Cloud sends no test delivery: a new hook is tested by a push.
    ping_event: str | None = None

    def __init__(
        self, api_url: str = api.DEFAULT_API_URL, timeout: int = 10, *, web_url: str = api.DEFAULT_WEB_URL
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.web_url = web_url.rstrip("/")
        self.timeout = timeout

    def read(self, headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
        return payloads.read(headers, body, content_type)

    def verify(self, headers: HeaderMap, body: bytes, secret: str) -> bool:
        return signature.verify(headers, body, secret)

    def parse(self, delivery: Delivery) -> Sequence[Event]:
        return payloads.parse(delivery)

    def complete(self, event: Event, token: str) -> Event:
        """Short hashes made full (bounded GETs). A closed pull request's head is not read: closing
        runs nothing, and its fork may already be gone."""
        if isinstance(event, PullRequestEvent) and event.action != "closed" and not is_sha(event.head_sha):
            full = api.resolve_commit(
                self.api_url, token, event.repository, event.head_sha, also_in=event.head_repository
            )
            return dataclasses.replace(event, head_sha=full)
        if isinstance(event, PushEvent) and not event.deleted and not is_sha(event.after):
            return dataclasses.replace(
                event, after=api.resolve_commit(self.api_url, token, event.repository, event.after)
            )
        return event

    def pin(self, event: CommentEvent, token: str) -> CommentEvent:
        head = api.pin(self.api_url, token, event.repository, event.issue_number)
        return dataclasses.replace(event, head_sha=head.sha, base_ref=head.base_ref)

    def fetch_spec(
        self, ref: str, sha: str, pr_number: int | None, repository: str, clone_url: str, token: str
    ) -> FetchSpec:
        """A pull request's source branch from its source repository; a branch or tag as a full
        ref; a bare SHA alone."""
        matched = _PR_REF.fullmatch(ref)
        if pr_number is None and matched is not None:
            pr_number = int(matched.group(1))
        if pr_number is not None:
            body = api.pull_request(self.api_url, token, repository, pr_number)
            _, _, source, branch = api.head_of(body, repository, pr_number)
            if source is None:
                raise PullRequestGone(
                    f"the source repository of pull request #{pr_number} is gone (a deleted fork): "
                    "nothing to fetch"
                )
            url = None if source.lower() == repository.lower() else fork_url(clone_url, source)
            return FetchSpec(f"refs/heads/{branch}", sha, url)
        if ref.startswith("refs/tags/"):
            return FetchSpec(ref, sha)
        if is_sha(ref):
            return FetchSpec(None, ref)
        return FetchSpec(f"refs/heads/{ref}", sha)

    def reporter(self) -> api.BitbucketReporter:
        return api.BitbucketReporter(self.api_url, self.timeout, web_url=self.web_url)


def fork_url(clone_url: str, fork: str) -> str:
    """The fork's clone URL: the registered clone URL's scheme and host (and any user name in it,
    such as `x-token-auth@`), the fork's path."""
    if not api.is_full_name(fork):
        raise ValueError(f"{fork[:200]!r} is not a Bitbucket workspace/slug")
    parts = urlsplit(clone_url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("the registered clone URL is not an http(s) URL, so a fork's URL cannot follow it")
    return urlunsplit((parts.scheme, parts.netloc, f"/{fork}.git", "", ""))


if TYPE_CHECKING:  # mypy holds the provider to the interface, which is young and may still change
    _SOURCE: Source = BitbucketSource()
    _REPORTER: Reporter = api.BitbucketReporter()
