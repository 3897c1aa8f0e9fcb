"""Who is signed in to the pages, and what they may see and do.

Operators sign in with the admin credential and may do everything. Anyone else signs in with
GitHub: they manage the registered GitHub repositories where GitHub grants them admin or
maintain rights (read at sign-in and again after RIGHTS_TTL, with their token kept sealed by
the SecretBox in the session), and they see and operate the runs of repositories (or
pipelines) whose trusted users include their numeric GitHub id. Repositories of other
providers are managed by operators only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any, Literal, TypeVar

from flask import g, redirect, request, session, url_for

from middleware.logs import logger
from middleware.models import Repository

F = TypeVar("F", bound=Callable[..., Any])

#: Seconds a GitHub user's repository rights are trusted before they are read again.
RIGHTS_TTL = 300
#: The roles on a GitHub repository that make its manager here.
MANAGING_ROLES = ("admin", "maintain")

_VIEWER = "viewer"
_MANAGED = "managed"
_RIGHTS_AT = "rights_at"
_TOKEN = "github_token"  # noqa: S105 - the session key, not a token


@dataclass(frozen=True)
class Viewer:
    """Whoever is signed in: an operator (login `operator`) or a GitHub user (numeric id)."""

    kind: Literal["operator", "github"]
    login: str
    user_id: int | None

    @property
    def actor(self) -> str:
        """The name written into audit entries and run actions."""
        return "operator" if self.kind == "operator" else self.login


#: Reads a GitHub user's managed repository ids with their token; set by the pages' blueprint
#: (middleware.web.rights), so this module stays free of HTTP clients.
RightsReader = Callable[[str], list[int]]


def _rights_reader() -> RightsReader | None:
    from flask import current_app

    reader: RightsReader | None = current_app.extensions.get("firecrest_ci_rights")
    return reader


def start_session(
    viewer: Viewer, *, token_sealed: str | None = None, managed: list[int] | None = None
) -> None:
    """Sign `viewer` in: a fresh session (no fixation), permanent so that it expires."""
    session.clear()
    session.permanent = True
    session[_VIEWER] = {"kind": viewer.kind, "login": viewer.login, "user_id": viewer.user_id}
    if viewer.kind == "github":
        session[_MANAGED] = sorted(set(managed or []))
        session[_RIGHTS_AT] = time.time()
        if token_sealed:
            session[_TOKEN] = token_sealed
    g.pop("viewer", None)


def end_session() -> None:
    session.clear()
    g.pop("viewer", None)


def sealed_token() -> str | None:
    """The signed-in GitHub user's token, sealed (open it with the SecretBox)."""
    value = session.get(_TOKEN)
    return value if isinstance(value, str) else None


def current_viewer() -> Viewer | None:
    """The signed-in viewer of this request, or None."""
    if "viewer" in g:
        cached: Viewer | None = g.viewer
        return cached
    raw = session.get(_VIEWER)
    viewer: Viewer | None = None
    if (
        isinstance(raw, dict)
        and raw.get("kind") in ("operator", "github")
        and isinstance(raw.get("login"), str)
    ):
        user_id = raw.get("user_id")
        viewer = Viewer(raw["kind"], raw["login"], user_id if isinstance(user_id, int) else None)
        if viewer.kind == "github" and viewer.user_id is None:
            viewer = None
    g.viewer = viewer
    return viewer


def managed_ids() -> set[int]:
    """The repository ids the signed-in GitHub user manages, read again once RIGHTS_TTL passed.

    When they cannot be read again (GitHub unreachable), stale rights are not used: none."""
    if "managed_ids" in g:
        cached: set[int] = g.managed_ids
        return cached
    ids: set[int] = set()
    stored = session.get(_MANAGED)
    fresh = time.time() - float(session.get(_RIGHTS_AT) or 0) < RIGHTS_TTL
    if fresh and isinstance(stored, list):
        ids = {i for i in stored if isinstance(i, int)}
    elif sealed_token() is not None:
        reader = _rights_reader()
        try:
            if reader is not None:
                ids = set(reader(sealed_token() or ""))
                session[_MANAGED] = sorted(ids)
                session[_RIGHTS_AT] = time.time()
        except Exception as error:  # noqa: BLE001 - any failure to read rights grants none
            logger().warning("repository rights not read again", extra={"error": type(error).__name__})
            ids = set()
    g.managed_ids = ids
    return ids


def refresh_rights() -> None:
    """Read the rights again on the next look (after the user registered a repository)."""
    session[_RIGHTS_AT] = 0
    g.pop("managed_ids", None)


def may_manage(viewer: Viewer, repository: Repository) -> bool:
    """Operators: all. GitHub users: the GitHub repositories where they have admin or maintain."""
    if viewer.kind == "operator":
        return True
    if repository.provider != "github" or viewer.user_id is None:
        return False
    return repository.id in managed_ids()


def _trusts(users: list[dict[str, Any]] | None, user_id: int) -> bool:
    return any(isinstance(u, dict) and u.get("id") == user_id and not u.get("unknown") for u in users or [])


def may_operate_runs(viewer: Viewer, repository: Repository, pipeline: str | None = None) -> bool:
    """Whether `viewer` sees and cancels or restarts runs of `repository` (of `pipeline`, if given).

    Managers and operators may; so may the trusted users, by numeric GitHub id: of the pipeline
    when one is given (its own list, or the repository's when it has none), else of the
    repository or of any of its pipelines (to see the list; act on a run with its pipeline)."""
    if may_manage(viewer, repository):
        return True
    if repository.provider != "github" or viewer.kind != "github" or viewer.user_id is None:
        return False
    uid = viewer.user_id
    if pipeline is not None:
        for item in repository.pipelines:
            if item.name == pipeline:
                users = item.trusted_users if item.trusted_users is not None else repository.trusted_users
                return _trusts(users, uid)
        return _trusts(repository.trusted_users, uid)
    return _trusts(repository.trusted_users, uid) or any(
        _trusts(p.trusted_users, uid) for p in repository.pipelines
    )


def require_viewer(view: F) -> F:
    """Redirect to the sign-in page when nobody is signed in (back here afterwards)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if current_viewer() is None:
            return redirect(url_for("web_auth.sign_in", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def require_operator(view: F) -> F:
    """Pages for operators only: others get 403, nobody signed in goes to the sign-in page."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        viewer = current_viewer()
        if viewer is None:
            return redirect(url_for("web_auth.sign_in", next=request.full_path.rstrip("?")))
        if viewer.kind != "operator":
            from flask import abort

            abort(403)
        return view(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
