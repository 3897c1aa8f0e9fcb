"""The GitLab source's API calls against the GitLab stand-in (served in-process on loopback, as
the other stand-in tests do): pinning a merge request, commit statuses and their look-up, notes,
user ids, retries and their bounds, the CA bundle of a self-managed instance, and what the
mirror is told to fetch (checked with the real git binary over smart HTTP)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import gitlab
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from werkzeug.serving import make_server

from middleware.domain import CommentEvent
from middleware.sources.base import FetchSpec, PinUnavailable, PullRequestGone, ReportFailed, Status
from middleware.sources.github.users import UnknownUser, UsersUnavailable
from middleware.sources.gitlab import api
from middleware.sources.gitlab.provider import GitLabSource
from sandbox.firecrest.server import QuietHandler
from sandbox.gitlab.app import Fault, GitLabState, create_app
from sandbox.gitlab.server import GitLabHandle, run_gitlab
from tests.gitops import git

REPO = "team/app"


@pytest.fixture
def handle(tmp_path: Path) -> Iterator[GitLabHandle]:
    with run_gitlab(tmp_path / "gitlab") as running:
        yield running


def commit(work: Path, name: str) -> str:
    (work / name).write_text(name)
    git(work, "add", ".")
    git(work, "commit", "-qm", name)
    return git(work, "rev-parse", "HEAD")


def push(handle: GitLabHandle, work: Path, url: str, *refspecs: str) -> None:
    git(work, "push", "-q", "--force", url.replace("http://", f"http://oauth2:{handle.token}@"), *refspecs)


@pytest.fixture
def world(tmp_path: Path, handle: GitLabHandle) -> dict:
    """`team/app` (public, so git fetches need no credentials) with `main`, `feature` one commit
    ahead and tag `v1`, and merge request !1 of `feature` into `main` by alice."""
    client = gitlab.Gitlab(handle.url, private_token=handle.token)
    group = client.groups.create({"name": "team", "path": "team"})
    project = client.projects.create(
        {"name": "app", "path": "app", "namespace_id": group.id, "visibility": "public"}
    )
    work = tmp_path / "work"
    work.mkdir()
    git(work, "init", "-q", "-b", "main")
    main = commit(work, "a")
    git(work, "tag", "v1")
    git(work, "checkout", "-q", "-b", "feature")
    feature = commit(work, "b")
    push(handle, work, project.http_url_to_repo, "main:main", "feature:feature", "refs/tags/v1:refs/tags/v1")
    alice = handle.state.add_user("alice", user_id=51)
    handle.state.open_merge_request(REPO, "feature", "main", author=alice)
    return {"client": client, "project": project, "work": work, "main": main, "feature": feature}


def api_requests(handle: GitLabHandle, method: str, fragment: str) -> list[dict]:
    return [r for r in handle.state.requests if r["method"] == method and fragment in r["path"]]


def project_path(handle: GitLabHandle) -> str:
    return rf"/api/v4/projects/{handle.state.project(REPO)['id']}"


# -- instance URLs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("clone_url", "instance"),
    [
        ("https://gitlab.com/group/sub/project.git", "https://gitlab.com"),
        ("https://oauth2:tok@GitLab.Example.org:8443/g/p.git", "https://gitlab.example.org:8443"),
        ("HTTP://127.0.0.1:8080/g/p", "http://127.0.0.1:8080"),
        ("http://[::1]:8080/g/p.git", "http://[::1]:8080"),
    ],
)
def test_instance_url_is_scheme_host_and_port(clone_url, instance):
    assert api.instance_url(clone_url) == instance


@pytest.mark.parametrize(
    ("clone_url", "message"),
    [
        ("git@gitlab.com:g/p.git", "not an http(s) clone URL"),
        ("ssh://git@gitlab.com/g/p.git", "not an http(s) clone URL"),
        ("https:///g/p.git", "names no host"),
        ("https://gitlab.com:99999/g/p.git", "is not a URL GitLab could serve"),
    ],
)
def test_instance_url_refuses_what_is_no_http_url(clone_url, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        api.instance_url(clone_url)


# -- pinning ----------------------------------------------------------------------------------------


def test_pin_reads_the_merge_requests_head_and_target_now(handle, world):
    assert api.pin(handle.url, handle.token, REPO, 1) == (world["feature"], "main")
    assert len(api_requests(handle, "GET", "/merge_requests/1")) == 1
    newer = commit(world["work"], "c")
    push(handle, world["work"], world["project"].http_url_to_repo, "feature:feature")
    handle.state.update_merge_request(REPO, 1)
    assert api.pin(handle.url, handle.token, REPO, 1) == (newer, "main")


def test_pin_of_a_missing_merge_request_or_project_is_final(handle, world):
    with pytest.raises(PullRequestGone, match=r"merge request !7 not found in team/app"):
        api.pin(handle.url, handle.token, REPO, 7)
    with pytest.raises(PullRequestGone, match="not found in team/gone"):
        api.pin(handle.url, handle.token, "team/gone", 1)


def test_pin_retries_a_5xx_once_then_gives_up(handle, world):
    handle.state.inject(Fault("GET", project_path(handle) + "/merge_requests/1", 502, times=5))
    with pytest.raises(
        PinUnavailable, match=r"^GitLab answered 502 \(502 Bad Gateway\) for merge request !1$"
    ):
        api.pin(handle.url, handle.token, REPO, 1)
    assert len(api_requests(handle, "GET", "/merge_requests/1")) == api.PIN_TRIES == 2


def test_pin_gets_through_after_one_5xx(handle, world):
    handle.state.inject(Fault("GET", project_path(handle) + "/merge_requests/1", 503))
    assert api.pin(handle.url, handle.token, REPO, 1) == (world["feature"], "main")
    assert len(api_requests(handle, "GET", "/merge_requests/1")) == 2


def test_pin_never_waits_for_retry_after(handle, world):
    for status in (503, 429):
        handle.state.inject(
            Fault(
                "GET",
                project_path(handle) + "/merge_requests/1",
                status,
                times=2,
                headers={"Retry-After": "30"},
            )
        )
        started = time.monotonic()
        with pytest.raises(PinUnavailable, match=f"GitLab answered {status}"):
            api.pin(handle.url, handle.token, REPO, 1)
        assert time.monotonic() - started < 5
        handle.state.injected.clear()


def test_pin_with_a_refused_token_is_unavailable_and_says_no_token(handle, world):
    bad = "glpat-not-a-known-token-0000"
    with pytest.raises(PinUnavailable) as refused:
        api.pin(handle.url, bad, REPO, 1)
    assert "GitLab answered 401" in str(refused.value)
    assert bad not in str(refused.value) and handle.token not in str(refused.value)


def test_pin_of_an_unreachable_gitlab_is_unavailable():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(PinUnavailable, match=r"^GitLab unreachable \(ConnectionError\)$"):
        api.pin(f"http://127.0.0.1:{port}", "token", REPO, 1)


# -- commit statuses ---------------------------------------------------------------------------------


def reporter(handle: GitLabHandle, **kwargs) -> api.GitLabReporter:
    return api.GitLabReporter(handle.url, **kwargs)


def stored(handle: GitLabHandle, sha: str) -> list[dict]:
    return [s for s in handle.state.statuses if s["sha"] == sha]


PENDING = Status("pending", "firecrest-ci/cpu", "queued", "https://ci.example.org/runs/1")


def test_a_status_is_posted_and_found(handle, world):
    sha = world["feature"]
    report = reporter(handle)
    report.post(handle.token, REPO, sha, PENDING)
    (status,) = stored(handle, sha)
    assert (status["status"], status["name"], status["description"], status["target_url"], status["ref"]) == (
        "pending",
        "firecrest-ci/cpu",
        "queued",
        "https://ci.example.org/runs/1",
        "feature",
    )
    assert report.posted(handle.token, REPO, sha, PENDING)
    for other in (
        Status("success", PENDING.context, PENDING.description, PENDING.url),
        Status("pending", "firecrest-ci/gpu", PENDING.description, PENDING.url),
        Status("pending", PENDING.context, "running", PENDING.url),
        Status("pending", PENDING.context, PENDING.description, None),
    ):
        assert not report.posted(handle.token, REPO, sha, other)
    assert not report.posted(handle.token, REPO, world["main"], PENDING)


def test_states_map_to_gitlabs_and_an_error_says_so(handle, world):
    sha, report = world["feature"], reporter(handle)
    report.post(handle.token, REPO, sha, Status("error", "ctx/a", "FirecREST refused the job", None))
    report.post(handle.token, REPO, sha, Status("failure", "ctx/b", "exit 1", None))
    report.post(handle.token, REPO, sha, Status("success", "ctx/c", "  all\n  good ", None))
    seen = {s["name"]: (s["status"], s["description"]) for s in stored(handle, sha)}
    assert seen == {
        "ctx/a": ("failed", "error: FirecREST refused the job"),
        "ctx/b": ("failed", "exit 1"),
        "ctx/c": ("success", "all good"),
    }
    assert report.posted(handle.token, REPO, sha, Status("error", "ctx/a", "FirecREST refused the job", None))
    assert not report.posted(
        handle.token, REPO, sha, Status("failure", "ctx/a", "FirecREST refused the job", None)
    )


def test_a_long_description_is_cut_to_gitlabs_255_characters(handle, world):
    sha, report = world["feature"], reporter(handle)
    long = Status("failure", "ctx", "x" * 400, None)
    report.post(handle.token, REPO, sha, long)
    (status,) = stored(handle, sha)
    assert len(status["description"]) == 255 and status["description"].endswith("x…")
    assert report.posted(handle.token, REPO, sha, long)


def test_bad_input_is_refused_before_any_request(handle, world):
    report = reporter(handle)
    before = len(handle.state.requests)
    with pytest.raises(ValueError, match="unknown status state 'running'"):
        report.post(handle.token, REPO, world["feature"], Status("running", "c", "d", None))
    with pytest.raises(ValueError, match="is not a full commit SHA"):
        report.post(handle.token, REPO, "../../users", PENDING)
    with pytest.raises(ValueError, match="is not a merge request number"):
        report.comment(handle.token, REPO, True, "x")
    assert len(handle.state.requests) == before


def test_posting_the_state_a_status_holds_is_settled_by_a_look_up(handle, world):
    """GitLab refuses pending -> pending (400) after taking the new description and URL."""
    sha, report = world["feature"], reporter(handle)
    report.post(handle.token, REPO, sha, PENDING)
    report.post(handle.token, REPO, sha, PENDING)  # the same again: refused by GitLab, found by the look-up
    moved = Status("pending", PENDING.context, "waiting for a node", PENDING.url)
    report.post(handle.token, REPO, sha, moved)
    (status,) = stored(handle, sha)
    assert (status["status"], status["description"]) == ("pending", "waiting for a node")
    assert len(api_requests(handle, "POST", "/statuses/")) == 3
    assert len(api_requests(handle, "GET", "/statuses")) == 2  # one look-up per refusal


def test_a_refused_transition_that_did_not_land_fails_with_gitlabs_reason(handle, world):
    sha, report = world["feature"], reporter(handle)
    project = world["client"].projects.get(REPO, lazy=True)
    project.commits.get(sha, lazy=True).statuses.create({"state": "running", "name": PENDING.context})
    with pytest.raises(ReportFailed) as refused:
        report.post(handle.token, REPO, sha, PENDING)
    assert str(refused.value) == (
        f"GitLab answered 400 (Cannot transition status via :enqueue from :running (Reason(s): Status "
        f'cannot transition via "enqueue")) to the pending status for {sha[:12]}'
    )


def test_a_post_is_never_retried_on_a_5xx(handle, world):
    sha = world["feature"]
    handle.state.inject(Fault("POST", project_path(handle) + f"/statuses/{sha}", 502))
    with pytest.raises(
        ReportFailed, match=rf"^GitLab answered 502 \(502 Bad Gateway\) to the pending status for {sha[:12]}$"
    ):
        reporter(handle).post(handle.token, REPO, sha, PENDING)
    assert len(api_requests(handle, "POST", "/statuses/")) == 1
    assert stored(handle, sha) == []


def test_a_lost_answer_is_settled_by_posted(handle, world):
    sha, report = world["feature"], reporter(handle)
    handle.state.inject(Fault("POST", project_path(handle) + f"/statuses/{sha}", 502, after=True))
    with pytest.raises(ReportFailed, match="GitLab answered 502"):
        report.post(handle.token, REPO, sha, PENDING)
    assert report.posted(handle.token, REPO, sha, PENDING)


def test_look_ups_are_retried_on_5xx_and_429_within_their_tries(handle, world):
    sha, report = world["feature"], reporter(handle)
    report.post(handle.token, REPO, sha, PENDING)
    listing = project_path(handle) + f"/repository/commits/{sha}/statuses"
    handle.state.inject(Fault("GET", listing, 503, times=1))
    handle.state.inject(Fault("GET", listing, 429, times=1, headers={"Retry-After": "60"}))
    started = time.monotonic()
    assert report.posted(handle.token, REPO, sha, PENDING)
    assert time.monotonic() - started < 10  # Retry-After is not waited for: max_seconds holds
    assert len(api_requests(handle, "GET", "/statuses")) == api.REPORT_TRIES
    handle.state.inject(Fault("GET", listing, 500, times=api.REPORT_TRIES))
    with pytest.raises(ReportFailed, match=r"GitLab answered 500 .* to the status look-up"):
        report.posted(handle.token, REPO, sha, PENDING)


def test_a_status_on_a_forks_head_is_refused_as_gitlab_refuses_it(handle, world):
    """A fork's head is in the target project under refs/merge-requests only, and a status without
    a ref needs a branch holding the commit: GitLab answers 404 (see the report)."""
    client = world["client"]
    fork_group = client.groups.create({"name": "outsider", "path": "outsider"})
    fork = client.projects.create({"name": "app", "path": "app", "namespace_id": fork_group.id})
    work = world["work"]
    git(work, "checkout", "-q", "-b", "fix", "main")
    sha = commit(work, "fix")
    push(handle, work, fork.http_url_to_repo, "fix:fix")
    handle.state.open_merge_request(REPO, "fix", "main", source_project="outsider/app")
    with pytest.raises(ReportFailed, match=r"GitLab answered 404 \(404 References for commit Not Found\)"):
        reporter(handle).post(handle.token, REPO, sha, PENDING)


# -- notes and users ---------------------------------------------------------------------------------


def test_a_note_lands_on_the_merge_request(handle, world):
    reporter(handle).comment(handle.token, REPO, 1, "Run 7 of cpu failed: see https://ci.example.org/7")
    (note,) = handle.state.notes
    assert (note["noteable_iid"], note["noteable_type"], note["body"]) == (
        1,
        "MergeRequest",
        "Run 7 of cpu failed: see https://ci.example.org/7",
    )


def test_a_note_on_a_missing_merge_request_fails_readably_and_once(handle, world):
    with pytest.raises(ReportFailed) as refused:
        reporter(handle).comment(handle.token, REPO, 9, "x")
    assert str(refused.value) == "GitLab answered 404 (404 Not found) to a note on !9"
    handle.state.inject(Fault("POST", project_path(handle) + "/merge_requests/1/notes", 503))
    with pytest.raises(ReportFailed, match="GitLab answered 503"):
        reporter(handle).comment(handle.token, REPO, 1, "x")
    assert len(api_requests(handle, "POST", "/notes")) == 2 and handle.state.notes == []


def test_usernames_resolve_to_gitlabs_ids(handle, world):
    bob = handle.state.add_user("Bob.Smith")
    assert api.resolve_users(handle.url, handle.token, ["alice", "bob.smith"]) == {
        "alice": 51,
        "bob.smith": bob["id"],
    }
    with pytest.raises(UnknownUser, match="GitLab has no user 'mallory'"):
        api.resolve_users(handle.url, handle.token, ["alice", "mallory"])
    before = len(handle.state.requests)
    for odd in ["", "a b", "../admin", "-x", "x" * 256]:
        with pytest.raises(UnknownUser, match="is not a GitLab username"):
            api.resolve_users(handle.url, handle.token, [odd])
    assert len(handle.state.requests) == before
    handle.state.inject(Fault("GET", r"/api/v4/users", 502, times=2))
    with pytest.raises(UsersUnavailable, match=r"GitLab answered 502 .* when looking up 'alice'"):
        api.resolve_users(handle.url, handle.token, ["alice"])


# -- the provider ------------------------------------------------------------------------------------


def note_event(number: int = 1, *, is_pull_request: bool = True) -> CommentEvent:
    return CommentEvent(REPO, "created", number, is_pull_request, "alice", "firecrest-ci run", author_id=51)


def test_the_source_pins_through_the_instance_of_the_repository(handle, world):
    asked: list[str] = []

    def instance_for(repository: str) -> str:
        asked.append(repository)
        return handle.url

    source = GitLabSource(instance_for=instance_for)
    pinned = source.pin(note_event(), handle.token)
    assert (pinned.head_sha, pinned.base_ref, pinned.author_id) == (world["feature"], "main", 51)
    assert asked == [REPO]
    before = len(handle.state.requests)
    with pytest.raises(PullRequestGone, match="is not a merge request"):
        source.pin(note_event(4, is_pull_request=False), handle.token)
    assert len(handle.state.requests) == before
    report = source.reporter()
    report.post(handle.token, REPO, world["feature"], PENDING)
    assert report.posted(handle.token, REPO, world["feature"], PENDING) and asked == [REPO, REPO, REPO]


def test_the_source_wants_an_existing_ca_bundle(tmp_path):
    with pytest.raises(ValueError, match="is not a readable file"):
        GitLabSource(str(tmp_path / "missing.pem"), instance_for="https://gitlab.example.org")
    with pytest.raises(ValueError, match="is not a readable file"):
        api.GitLabReporter("https://gitlab.example.org", str(tmp_path / "missing.pem"))


def test_fetch_specs(tmp_path):
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    source = GitLabSource(str(ca), instance_for="https://gitlab.example.org")
    spec = lambda ref, pr=None: source.fetch_spec(ref, "a" * 40, pr, REPO, "https://x/team/app.git", "t")  # noqa: E731
    assert spec("pr-12", 12) == FetchSpec("refs/merge-requests/12/head", "a" * 40, None, str(ca))
    assert spec("pr-12") == FetchSpec("refs/merge-requests/12/head", "a" * 40, None, str(ca))
    assert spec("refs/tags/v1") == FetchSpec("refs/tags/v1", "a" * 40, None, str(ca))
    assert spec("b" * 40) == FetchSpec(None, "b" * 40, None, str(ca))
    assert spec("release/2.x") == FetchSpec("refs/heads/release/2.x", "a" * 40, None, str(ca))
    assert spec("pr-x") == FetchSpec("refs/heads/pr-x", "a" * 40, None, str(ca))
    with pytest.raises(ValueError, match=r"names merge request !12, the run says !13"):
        spec("pr-12", 13)
    plain = GitLabSource(instance_for="https://gitlab.example.org")
    assert plain.fetch_spec("main", "a" * 40, None, REPO, "u", "t").ca_file is None


def test_what_fetch_spec_names_is_fetchable_with_git(tmp_path, handle, world):
    """The mirror's fetch, done by hand: every spec's ref exists at the registered clone URL."""
    source = GitLabSource(instance_for=handle.url)
    clone_url = world["project"].http_url_to_repo
    cache = tmp_path / "cache"
    cache.mkdir()
    git(cache, "init", "-q", "--bare")
    for ref, expected in (
        ("pr-1", world["feature"]),
        ("main", world["main"]),
        ("refs/tags/v1", world["main"]),
    ):
        spec = source.fetch_spec(ref, expected, None, REPO, clone_url, handle.token)
        git(cache, "fetch", "-q", "--no-tags", clone_url, f"+{spec.ref}:refs/sources/x")
        assert git(cache, "rev-parse", "refs/sources/x^{commit}") == expected == spec.sha


# -- a self-managed instance with its own CA ---------------------------------------------------------


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signed for 127.0.0.1: (CA bundle, certificate, key)."""
    now = dt.datetime.now(dt.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Stand-in GitLab CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "server.pem", directory / "server.key"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return paths


@pytest.fixture
def tls_gitlab(tmp_path: Path) -> Iterator[tuple[str, str, GitLabState, Path]]:
    """The stand-in served over HTTPS with a certificate of its own CA: (url, token, state, CA)."""
    ca, cert, key = _certificates(tmp_path)
    state = GitLabState(root=tmp_path / "tls-gitlab")
    token = "glpat-tls-token-0123456789"
    state.tokens.add(token)
    server = make_server(
        "127.0.0.1", 0, create_app(state), threaded=True, ssl_context=(str(cert), str(key)),
        request_handler=QuietHandler,
    )  # fmt: skip
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_port}", token, state, ca
    finally:
        server.shutdown()
        thread.join(timeout=5)
        server.server_close()


def test_a_self_managed_instances_ca_is_trusted_only_when_given(tls_gitlab):
    url, token, state, ca = tls_gitlab
    state.add_user("alice", user_id=51)
    assert api.resolve_users(url, token, ["alice"], str(ca)) == {"alice": 51}
    with pytest.raises(UsersUnavailable, match=r"GitLab unreachable \(SSLError\)"):
        api.resolve_users(url, token, ["alice"])
    with pytest.raises(PinUnavailable, match=r"GitLab unreachable \(SSLError\)"):
        api.pin(url, token, REPO, 1)
    # with the CA the instance answers: here that there is no such project
    with pytest.raises(PullRequestGone):
        api.pin(url, token, REPO, 1, str(ca))
    with pytest.raises(ReportFailed, match=r"GitLab answered 404"):
        api.GitLabReporter(url, str(ca)).post(token, REPO, "a" * 40, PENDING)
    with pytest.raises(ReportFailed, match=r"GitLab unreachable \(SSLError\)"):
        api.GitLabReporter(url).post(token, REPO, "a" * 40, PENDING)
    source = GitLabSource(str(ca), instance_for=url)
    with pytest.raises(PullRequestGone):
        source.pin(note_event(), token)
    assert source.fetch_spec("main", "a" * 40, None, REPO, f"{url}/{REPO}.git", token).ca_file == str(ca)
