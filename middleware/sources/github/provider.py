"""GitHub behind the source interface: `X-Hub-Signature-256`, pull request refs, statuses and
comments through PyGithub."""

from __future__ import annotations

import json
from collections.abc import Sequence
from urllib.parse import parse_qs

from middleware.domain import CommentEvent, Event
from middleware.refs import is_sha
from middleware.sources.base import Delivery, FetchSpec, HeaderMap, Refusal, Status
from middleware.sources.github import events, signature
from middleware.sources.github.comments import post_comment
from middleware.sources.github.pinning import pin_pull_request
from middleware.sources.github.statuses import StatusReporter
from middleware.sources.headers import delivery_headers, json_body


class GitHubReporter:
    """Commit statuses and pull request comments on GitHub."""

    def __init__(self, api_url: str, *, write_interval: float = 1.0, timeout: int = 10) -> None:
        self.api_url = api_url
        self.statuses = StatusReporter(api_url, write_interval=write_interval, timeout=timeout)
        self.max_seconds = self.statuses.max_seconds

    def post(self, token: str, repository: str, sha: str, status: Status) -> None:
        self.statuses.post(
            token, repository, sha, state=status.state, context=status.context,
            description=status.description, url=status.url,
        )  # fmt: skip

    def posted(self, token: str, repository: str, sha: str, status: Status) -> bool:
        return self.statuses.posted(
            token, repository, sha, state=status.state, context=status.context,
            description=status.description, url=status.url,
        )  # fmt: skip

    def comment(self, token: str, repository: str, number: int, body: str) -> None:
        post_comment(self.api_url, token, repository, number, body)


class GitHubSource:
    """github.com or GitHub Enterprise Server (`api_url`)."""

    name = "github"
    title = "GitHub"
    event_header = "X-GitHub-Event"
    delivery_header = "X-GitHub-Delivery"
    proof = "X-Hub-Signature-256"
    name_field = "repository.full_name"
    events = frozenset(
        {"ping", "push", "pull_request", "issue_comment", "check_run", "check_suite"}
        | {"installation", "installation_repositories"}  # App mode (middleware.intake.app_events)
    )
    ping_event: str | None = "ping"

    def __init__(self, api_url: str, *, write_interval: float = 1.0, timeout: int = 10) -> None:
        self.api_url = api_url
        self._write_interval = write_interval
        self._timeout = timeout

    def read(self, headers: HeaderMap, body: bytes, content_type: str) -> Delivery:
        event, delivery_id = delivery_headers(headers, self.event_header, self.delivery_header)
        if content_type.startswith("application/x-www-form-urlencoded"):
            try:
                values = parse_qs(body.decode("utf-8"), strict_parsing=False).get("payload")
            except UnicodeDecodeError:
                values = None
            if not values:
                raise Refusal(400, "form-encoded delivery without a `payload` field", "malformed")
            text = values[0]
            try:
                payload = json.loads(text)
            except (ValueError, RecursionError) as error:
                raise Refusal(
                    400, f"the body is not valid JSON ({type(error).__name__})", "malformed"
                ) from None
            may_hold_nul = "\\u0000" in text
        else:
            payload, may_hold_nul = json_body(body)
        return Delivery(event, delivery_id, events.repository_full_name(payload), payload, may_hold_nul)

    def verify(self, headers: HeaderMap, body: bytes, secret: str) -> bool:
        return signature.verify(secret, body, headers.get("X-Hub-Signature-256"))

    def parse(self, delivery: Delivery) -> Sequence[Event]:
        return [events.parse_event(delivery.event, delivery.payload)]

    def complete(self, event: Event, token: str) -> Event:
        return event  # GitHub's payloads carry full SHAs

    def pin(self, event: CommentEvent, token: str) -> CommentEvent:
        return pin_pull_request(event, self.api_url, token)

    def fetch_spec(
        self, ref: str, sha: str, pr_number: int | None, repository: str, clone_url: str, token: str
    ) -> FetchSpec:
        if pr_number is not None:
            return FetchSpec(f"refs/pull/{pr_number}/head", sha)
        if ref.startswith("refs/tags/"):
            return FetchSpec(ref, sha)
        if is_sha(ref):
            return FetchSpec(None, ref)
        return FetchSpec(f"refs/heads/{ref}", sha)

    def reporter(self) -> GitHubReporter:
        return GitHubReporter(self.api_url, write_interval=self._write_interval, timeout=self._timeout)
