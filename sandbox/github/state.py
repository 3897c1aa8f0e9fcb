"""What the GitHub stand-in knows, and the operations tests drive on it.

Tests change the world the way a person on github.com would (register an App, install it,
click "Re-run", rename a repository, grant a role) with the methods here; the REST routes
read and write the same data. Everything is guarded by one re-entrant lock, and webhooks
are sent outside it, so a receiver may call the API back while it handles a delivery.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from sandbox.github import hookshot, render
from sandbox.github.records import (
    DEFAULT_APP_EVENTS,
    DEFAULT_APP_PERMISSIONS,
    LEVELS,
    ROLES,
    App,
    CheckRun,
    CheckSuite,
    Delivery,
    FineGrainedToken,
    Installation,
    InstallationToken,
    OAuthApp,
    OAuthCode,
    UserToken,
    iso,
)

#: Events an App gets whatever it subscribed to, as on GitHub.
ALWAYS_DELIVERED = ("installation", "installation_repositories", "github_app_authorization", "ping")
NOT_IN_INSTALLATION = (
    "There is at least one repository that does not exist or is not accessible to the parent installation."
)


class Refused(Exception):
    """A request GitHub would refuse: the status and the `message` of its error body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _public_key(pem: str | bytes) -> RSAPublicKey:
    """The App's public key from its PEM private key (as GitHub hands it out) or a public key."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        # Only the public half is kept, so the (slow) consistency check of the private key is skipped.
        private = serialization.load_pem_private_key(data, password=None, unsafe_skip_rsa_key_validation=True)
        if not isinstance(private, RSAPrivateKey):
            raise ValueError("GitHub Apps sign with RSA keys")
        return private.public_key()
    public = serialization.load_pem_public_key(data)
    if not isinstance(public, RSAPublicKey):
        raise ValueError("GitHub Apps sign with RSA keys")
    return public


@dataclass
class GitHubState:
    """Users, tokens, repositories, PRs, Apps, checks, deliveries and what was posted; thread-safe."""

    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Personal (classic) tokens and their user's login.
    tokens: dict[str, str] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    statuses: list[dict[str, Any]] = field(default_factory=list)
    comments: list[dict[str, Any]] = field(default_factory=list)
    requests: list[dict[str, Any]] = field(default_factory=list)
    down_until: float = 0.0
    #: Seconds every API answer waits before it is sent (a slow or hanging GitHub).
    delay: float = 0.0
    #: The next N commit statuses are recorded, then answered 502 (an answer lost on the way).
    lose_status_answers: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1000))

    #: The API root links in webhook payloads point to; start_github sets the real one.
    api_url: str = "https://api.github.com"
    #: Unknown classic-looking tokens get 401 everywhere, as on GitHub. Off by default: older
    #: tests read public repositories with tokens the stand-in was never told about.
    strict_tokens: bool = False
    #: Scopes of classic tokens; a token not listed has `repo`.
    token_scopes: dict[str, list[str]] = field(default_factory=dict)
    fine_grained: dict[str, FineGrainedToken] = field(default_factory=dict)
    #: Old full names (lower case) of renamed or transferred repositories, to their id.
    redirects: dict[str, int] = field(default_factory=dict)

    apps: dict[int, App] = field(default_factory=dict)
    oauth_apps: dict[str, OAuthApp] = field(default_factory=dict)
    installations: dict[int, Installation] = field(default_factory=dict)
    installation_tokens: dict[str, InstallationToken] = field(default_factory=dict)
    #: Lifetime of installation tokens (GitHub: one hour); lower it to test expiry.
    installation_token_ttl: float = 3600.0

    user_tokens: dict[str, UserToken] = field(default_factory=dict)
    refresh_tokens: dict[str, UserToken] = field(default_factory=dict)
    oauth_codes: dict[str, OAuthCode] = field(default_factory=dict)
    #: Someone already signed in on the authorize page: it redirects at once, no form to fill.
    oauth_login: str | None = None
    #: Lifetime of a GitHub App's user tokens (GitHub: eight hours).
    user_token_ttl: float = 8 * 3600.0

    check_suites: dict[int, CheckSuite] = field(default_factory=dict)
    check_runs: dict[int, CheckRun] = field(default_factory=dict)

    deliveries: list[Delivery] = field(default_factory=list)
    #: GitHub's webhook sending is down: events are not sent, only kept in `undelivered`.
    deliveries_down: bool = False
    undelivered: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    #: How long a receiver may take to answer (GitHub gives 10 s).
    hook_timeout: float = 10.0

    # -- accounts, tokens and repositories ----------------------------------------------

    def add_user(self, login: str, token: str | None = None) -> int:
        """Add (or find) a user; returns its numeric id."""
        with self.lock:
            user = self.users.setdefault(
                login.lower(), {"login": login, "id": next(self.ids), "type": "User"}
            )
            if token:
                self.tokens[token] = login.lower()
            return int(user["id"])

    def add_org(self, login: str) -> int:
        """Add (or find) an organization account; returns its numeric id."""
        with self.lock:
            user_id = self.add_user(login)
            self.users[login.lower()]["type"] = "Organization"
            return user_id

    def set_token_scopes(self, token: str, scopes: Iterable[str]) -> None:
        """The scopes a classic token was created with (answered in `X-OAuth-Scopes`)."""
        with self.lock:
            self.token_scopes[token] = list(scopes)

    def add_fine_grained_token(
        self, login: str, token: str, repositories: Mapping[str, Mapping[str, str]]
    ) -> None:
        """A `github_pat_` token of `login` for these repositories, e.g. {"o/r": {"statuses": "write"}}."""
        self.add_user(login)
        with self.lock:
            granted: dict[int, dict[str, str]] = {}
            for full_name, permissions in repositories.items():
                repo = self._repo_or_raise(full_name)
                granted[repo["id"]] = {"metadata": "read", **dict(permissions)}
            self.fine_grained[token] = FineGrainedToken(token, login.lower(), granted)

    def add_repo(self, full_name: str, **fields: Any) -> int:
        """Add a repository (again: same id, fields reset); returns its numeric id."""
        owner = full_name.split("/")[0]
        if owner.lower() not in self.users:
            self.add_user(owner)
        with self.lock:
            known = self.repos.get(full_name.lower())
            repo_id = known["id"] if known else next(self.ids)
            self.redirects.pop(full_name.lower(), None)
            self.repos[full_name.lower()] = {
                "full_name": full_name,
                "id": repo_id,
                "private": bool(fields.get("private", False)),
                "default_branch": fields.get("default_branch", "main"),
                "clone_url": fields.get("clone_url", f"https://github.com/{full_name}.git"),
                "description": fields.get("description"),
                "collaborators": {k.lower(): v for k, v in dict(fields.get("collaborators", {})).items()},
            }
            return int(repo_id)

    def add_pull(self, full_name: str, number: int, **fields: Any) -> None:
        with self.lock:
            self.pulls[(full_name.lower(), number)] = {"number": number, **fields}

    def find_repo(self, full_name: str) -> dict[str, Any] | None:
        return self.repos.get(full_name.lower())

    def repo_by_id(self, repo_id: int) -> dict[str, Any] | None:
        with self.lock:
            return next((r for r in self.repos.values() if r["id"] == repo_id), None)

    def _repo_or_raise(self, full_name: str) -> dict[str, Any]:
        repo = self.find_repo(full_name)
        if repo is None:
            raise KeyError(f"no repository {full_name} in the GitHub stand-in")
        return repo

    def set_role(self, full_name: str, login: str, role: str | None) -> None:
        """Give `login` a role on the repository (read, triage, write, maintain, admin; None removes)."""
        if role is not None and role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        self.add_user(login)
        with self.lock:
            collaborators = self._repo_or_raise(full_name)["collaborators"]
            if role is None:
                collaborators.pop(login.lower(), None)
            else:
                collaborators[login.lower()] = role

    def role_of(self, repo: dict[str, Any], login: str | None) -> str | None:
        """The user's role on the repository; the owning user is admin."""
        if login is None:
            return None
        if repo["full_name"].split("/")[0].lower() == login.lower():
            return "admin"
        role = repo["collaborators"].get(login.lower())
        return str(role) if role else None

    def rename_repo(self, full_name: str, new_full_name: str) -> None:
        """Rename or transfer (new owner) a repository; the old name redirects to the id, as on GitHub."""
        new_owner = new_full_name.split("/")[0]
        if new_owner.lower() not in self.users:
            self.add_user(new_owner)
        with self.lock:
            repo = self.repos.pop(full_name.lower(), None)
            if repo is None:
                raise KeyError(f"no repository {full_name} in the GitHub stand-in")
            old = repo["full_name"]
            repo["full_name"] = new_full_name
            if repo["clone_url"] == f"https://github.com/{old}.git":
                repo["clone_url"] = f"https://github.com/{new_full_name}.git"
            self.repos[new_full_name.lower()] = repo
            self.redirects[old.lower()] = repo["id"]
            self.redirects.pop(new_full_name.lower(), None)
            for (name, number), pull in list(self.pulls.items()):
                if name == old.lower():
                    self.pulls[(new_full_name.lower(), number)] = self.pulls.pop((name, number))
                    if pull.get("head_repo") == old:
                        pull["head_repo"] = new_full_name
            for status in self.statuses:
                if status["repository"] == old:
                    status["repository"] = new_full_name
            if old.split("/")[0].lower() != new_owner.lower():
                # A transfer takes the repository out of the old account's installations.
                for inst in self.installations.values():
                    inst.repo_ids.discard(repo["id"])

    # -- GitHub Apps and their installations ---------------------------------------------

    def register_app(
        self,
        slug: str,
        private_key: str | bytes,
        *,
        app_id: int | None = None,
        name: str | None = None,
        owner: str = "octo-org",
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        callback_url: str | None = None,
        permissions: Mapping[str, str] | None = None,
        events: Iterable[str] | None = None,
    ) -> App:
        """Register a GitHub App; only the public half of `private_key` (PEM) is kept, to check JWTs."""
        self.add_user(owner)
        with self.lock:
            number = app_id if app_id is not None else next(self.ids)
            app = App(
                id=number,
                slug=slug,
                name=name or slug,
                owner=owner.lower(),
                public_key=_public_key(private_key),
                client_id=client_id or f"Iv23li{secrets.token_hex(7)}",
                client_secret=client_secret or secrets.token_hex(20),
                webhook_url=webhook_url,
                webhook_secret=webhook_secret,
                callback_url=callback_url,
                permissions=dict(permissions or DEFAULT_APP_PERMISSIONS),
                events=list(DEFAULT_APP_EVENTS if events is None else events),
                hook_id=next(self.ids),
                created_at=iso(time.time()),
            )
            self.apps[number] = app
            return app

    def register_oauth_app(
        self, client_id: str, client_secret: str, *, name: str = "OAuth App", callback_url: str | None = None
    ) -> OAuthApp:
        """Register a classic OAuth App, for the web flow's `gho_` tokens."""
        with self.lock:
            oauth_app = OAuthApp(client_id, client_secret, name, callback_url)
            self.oauth_apps[client_id] = oauth_app
            return oauth_app

    def app_by_client_id(self, client_id: str) -> App | None:
        return next((a for a in self.apps.values() if a.client_id == client_id), None)

    def install_app(
        self,
        app_id: int,
        account: str,
        repositories: Iterable[str] | None = None,
        *,
        sender: str | None = None,
    ) -> Installation:
        """Install the App on `account`: on all its repositories (None) or on these full names.

        Sends the `installation` `created` webhook, as GitHub does.
        """
        if account.lower() not in self.users:
            self.add_user(account)
        with self.lock:
            app = self.apps[app_id]
            now = iso(time.time())
            inst = Installation(
                id=next(self.ids),
                app_id=app_id,
                account=account.lower(),
                repository_selection="all" if repositories is None else "selected",
                repo_ids={self._repo_or_raise(r)["id"] for r in repositories or ()},
                permissions=dict(app.permissions),
                events=list(app.events),
                created_at=now,
                updated_at=now,
            )
            self.installations[inst.id] = inst
            payload = self._installation_payload("created", inst, sender or account)
            payload["repositories"] = [render.repo_brief(r) for r in self.installation_repos(inst)]
        self.deliver("installation", payload, app_id=app_id)
        return inst

    def add_installation_repos(
        self, installation_id: int, repositories: Iterable[str], *, sender: str | None = None
    ) -> None:
        """Add repositories to a `selected` installation; sends `installation_repositories` `added`."""
        with self.lock:
            inst = self.installations[installation_id]
            if inst.repository_selection == "all":
                return
            added = [self._repo_or_raise(r) for r in repositories]
            added = [r for r in added if r["id"] not in inst.repo_ids]
            inst.repo_ids.update(r["id"] for r in added)
            inst.updated_at = iso(time.time())
            payload = self._repositories_payload("added", inst, sender, added, [])
        if added:
            self.deliver("installation_repositories", payload, app_id=inst.app_id)

    def remove_installation_repos(
        self, installation_id: int, repositories: Iterable[str], *, sender: str | None = None
    ) -> None:
        """Remove repositories (an `all` installation becomes `selected`); sends `removed`."""
        with self.lock:
            inst = self.installations[installation_id]
            current = {r["id"]: r for r in self.installation_repos(inst)}
            removed = [current[r["id"]] for r in map(self._repo_or_raise, repositories) if r["id"] in current]
            inst.repository_selection = "selected"
            inst.repo_ids = set(current) - {r["id"] for r in removed}
            inst.updated_at = iso(time.time())
            payload = self._repositories_payload("removed", inst, sender, [], removed)
        if removed:
            self.deliver("installation_repositories", payload, app_id=inst.app_id)

    def suspend_installation(self, installation_id: int, *, sender: str | None = None) -> None:
        """Suspend: the installation's tokens stop working; sends `installation` `suspend`."""
        with self.lock:
            inst = self.installations[installation_id]
            login = (sender or inst.account).lower()
            self.add_user(login)
            inst.suspended_at = inst.updated_at = iso(time.time())
            inst.suspended_by = login
            payload = self._installation_payload("suspend", inst, login)
        self.deliver("installation", payload, app_id=inst.app_id)

    def unsuspend_installation(self, installation_id: int, *, sender: str | None = None) -> None:
        with self.lock:
            inst = self.installations[installation_id]
            inst.suspended_at = inst.suspended_by = None
            inst.updated_at = iso(time.time())
            payload = self._installation_payload("unsuspend", inst, sender or inst.account)
        self.deliver("installation", payload, app_id=inst.app_id)

    def uninstall_app(self, installation_id: int, *, sender: str | None = None) -> None:
        """Uninstall: the installation and its tokens are gone; sends `installation` `deleted`."""
        with self.lock:
            inst = self.installations[installation_id]
            payload = self._installation_payload("deleted", inst, sender or inst.account)
            payload["repositories"] = [render.repo_brief(r) for r in self.installation_repos(inst)]
            del self.installations[installation_id]
            for token in [t for t, v in self.installation_tokens.items() if v.installation_id == inst.id]:
                del self.installation_tokens[token]
        self.deliver("installation", payload, app_id=inst.app_id)

    def installation_repos(self, inst: Installation) -> list[dict[str, Any]]:
        """The repositories the installation covers now, by name."""
        with self.lock:
            if inst.repository_selection == "all":
                found = [
                    r for r in self.repos.values() if r["full_name"].split("/")[0].lower() == inst.account
                ]
            else:
                found = [r for r in self.repos.values() if r["id"] in inst.repo_ids]
            return sorted(found, key=lambda r: str(r["full_name"]).lower())

    def installation_for(self, app_id: int, repo: dict[str, Any]) -> Installation | None:
        """The App's installation that covers the repository, if any."""
        with self.lock:
            for inst in self.installations.values():
                if inst.app_id == app_id and any(
                    r["id"] == repo["id"] for r in self.installation_repos(inst)
                ):
                    return inst
            return None

    def issue_installation_token(
        self,
        installation_id: int,
        *,
        permissions: Mapping[str, str] | None = None,
        repositories: Iterable[str] | None = None,
        repository_ids: Iterable[int] | None = None,
    ) -> InstallationToken:
        """A `ghs_` token for the installation, optionally narrowed (repository names, ids, permissions).

        Raises Refused as GitHub answers: 404 unknown, 403 suspended, 422 more than granted.
        """
        with self.lock:
            inst = self.installations.get(installation_id)
            if inst is None:
                raise Refused(404, "Not Found")
            if inst.suspended_at:
                raise Refused(403, "This installation has been suspended")
            covered = {r["id"]: r for r in self.installation_repos(inst)}
            by_name = {r["full_name"].split("/", 1)[1].lower(): r["id"] for r in covered.values()}
            wanted: set[int] | None = None
            if repositories is not None or repository_ids is not None:
                wanted = set()
                for name in repositories or ():
                    if name.lower() not in by_name:
                        raise Refused(422, NOT_IN_INSTALLATION)
                    wanted.add(by_name[name.lower()])
                for number in repository_ids or ():
                    if number not in covered:
                        raise Refused(422, NOT_IN_INSTALLATION)
                    wanted.add(number)
            granted = dict(inst.permissions)
            for name, level in dict(permissions or {}).items():
                if LEVELS.get(level, 99) > LEVELS.get(granted.get(name, ""), 0):
                    raise Refused(422, "The permissions requested are not granted to this installation.")
            narrowed = {**({} if permissions else granted), **dict(permissions or {})}
            if permissions:
                narrowed.setdefault("metadata", "read")
            token = InstallationToken(
                token=f"ghs_{secrets.token_urlsafe(27)[:36]}",
                installation_id=inst.id,
                expires_at=time.time() + self.installation_token_ttl,
                permissions=narrowed,
                repo_ids=wanted,
            )
            self.installation_tokens[token.token] = token
            return token

    def _installation_payload(self, action: str, inst: Installation, sender: str) -> dict[str, Any]:
        return {
            "action": action,
            "installation": render.installation_json(self, self.api_url, inst),
            "sender": render.account_json(self, self.api_url, sender),
        }

    def _repositories_payload(
        self,
        action: str,
        inst: Installation,
        sender: str | None,
        added: list[dict[str, Any]],
        removed: list[dict[str, Any]],
    ) -> dict[str, Any]:
        return {
            "action": action,
            "installation": render.installation_json(self, self.api_url, inst),
            "repository_selection": inst.repository_selection,
            "repositories_added": [render.repo_brief(r) for r in added],
            "repositories_removed": [render.repo_brief(r) for r in removed],
            "requester": None,
            "sender": render.account_json(self, self.api_url, sender or inst.account),
        }

    # -- checks ---------------------------------------------------------------------------

    def check_runs_for(self, full_name: str, head_sha: str | None = None) -> list[CheckRun]:
        """Check runs written on the repository (on one commit if given), oldest first."""
        with self.lock:
            repo = self._repo_or_raise(full_name)
            return [
                r
                for r in self.check_runs.values()
                if r.repo_id == repo["id"] and head_sha in (None, r.head_sha)
            ]

    def rerequest_check_run(self, check_run_id: int, *, sender: str) -> Delivery | None:
        """Someone clicked "Re-run" on the check run: the App gets `check_run` `rerequested`."""
        return self._check_run_event("rerequested", check_run_id, sender)

    def request_check_run_action(self, check_run_id: int, identifier: str, *, sender: str) -> Delivery | None:
        """Someone clicked one of the run's action buttons: `check_run` `requested_action`."""
        return self._check_run_event("requested_action", check_run_id, sender, {"identifier": identifier})

    def rerequest_check_suite(self, check_suite_id: int, *, sender: str) -> Delivery | None:
        """Someone clicked "Re-run all checks": the App gets `check_suite` `rerequested`."""
        with self.lock:
            suite = self.check_suites[check_suite_id]
            repo = self.repo_by_id(suite.repo_id)
            assert repo is not None
            body = render.check_suite_json(self, self.api_url, suite)
            body.pop("repository")
            payload = self._repo_event("rerequested", repo, sender, suite.app_id)
            payload["check_suite"] = body
        return self.deliver("check_suite", payload, app_id=suite.app_id)

    def _check_run_event(
        self, action: str, check_run_id: int, sender: str, requested: dict[str, str] | None = None
    ) -> Delivery | None:
        with self.lock:
            run = self.check_runs[check_run_id]
            repo = self.repo_by_id(run.repo_id)
            assert repo is not None
            body = render.check_run_json(self, self.api_url, run)
            suite = render.check_suite_json(self, self.api_url, self.check_suites[run.suite_id])
            suite.pop("repository")
            body["check_suite"] = suite
            payload = self._repo_event(action, repo, sender, run.app_id)
            payload["check_run"] = body
            if requested is not None:
                payload["requested_action"] = requested
        return self.deliver("check_run", payload, app_id=run.app_id)

    def _repo_event(self, action: str, repo: dict[str, Any], sender: str, app_id: int) -> dict[str, Any]:
        """The common part of repository events: repository, organization, sender, installation."""
        if not sender.endswith("[bot]"):
            self.add_user(sender)
        payload: dict[str, Any] = {
            "action": action,
            "repository": render.repo_json(self, self.api_url, repo),
        }
        owner = self.users[repo["full_name"].split("/")[0].lower()]
        if owner.get("type") == "Organization":
            payload["organization"] = {
                "login": owner["login"],
                "id": owner["id"],
                "node_id": f"O_{owner['id']}",
                "url": f"{self.api_url}/orgs/{owner['login']}",
            }
        payload["sender"] = render.account_json(self, self.api_url, sender)
        inst = self.installation_for(app_id, repo)
        if inst is not None:
            payload["installation"] = {"id": inst.id, "node_id": render.node_id("Installation", inst.id)}
        return payload

    # -- webhooks the App receives ----------------------------------------------------------

    def deliver(self, event: str, payload: dict[str, Any], *, app_id: int | None = None) -> Delivery | None:
        """Send a webhook to the App (the only one, unless `app_id`), as GitHub's hookshot would.

        A payload naming a repository the App is installed on gets its `installation`. Nothing
        is sent without a webhook URL, for an event the App did not subscribe to, or while
        `deliveries_down` (then the event is kept in `undelivered`). Returns the delivery.
        """
        with self.lock:
            if not self.apps:
                raise LookupError("no GitHub App is registered with the stand-in")
            app = self.apps[app_id] if app_id is not None else next(iter(self.apps.values()))
            if not app.webhook_url or (event not in app.events and event not in ALWAYS_DELIVERED):
                return None
            payload = dict(payload)
            repository = payload.get("repository")
            if "installation" not in payload and isinstance(repository, dict):
                repo = self.find_repo(str(repository.get("full_name", "")))
                inst = self.installation_for(app.id, repo) if repo else None
                if inst is not None:
                    payload["installation"] = {
                        "id": inst.id,
                        "node_id": render.node_id("Installation", inst.id),
                    }
            if self.deliveries_down:
                self.undelivered.append((event, payload))
                return None
        return hookshot.send(self, app, event, payload)

    def redeliver(self, delivery_id: int) -> Delivery:
        """Send a recorded delivery again: same guid and payload, a new delivery id."""
        with self.lock:
            old = next((d for d in self.deliveries if d.id == delivery_id), None)
            if old is None:
                raise Refused(404, "Not Found")
            app = self.apps[old.app_id]
        return hookshot.send(self, app, old.event, old.payload, guid=old.guid, redelivery=True)

    def deliveries_for(self, app_id: int | None = None, event: str | None = None) -> list[Delivery]:
        """Recorded deliveries, newest first, for one App and/or one event if given."""
        with self.lock:
            return [
                d
                for d in reversed(self.deliveries)
                if app_id in (None, d.app_id) and event in (None, d.event)
            ]
