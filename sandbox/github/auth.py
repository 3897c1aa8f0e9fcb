"""Who is calling the GitHub stand-in, and may they touch this repository?

GitHub tells its token kinds apart by prefix: `ghp_` classic (scopes), `github_pat_`
fine-grained (per-repository permissions), `gho_` an OAuth App's user, `ghu_` a GitHub
App's user, `ghs_` an App installation; a signed JWT is the App itself. The refusals mimic
GitHub's: 404 where admitting the repository exists would leak it, 403 with the token
kind's own message where it may be seen but not written.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import jwt

from sandbox.github.records import LEVELS, App, FineGrainedToken, Installation, InstallationToken, UserToken
from sandbox.github.state import Refused

if TYPE_CHECKING:
    from typing import Any

    from sandbox.github.state import GitHubState

#: GitHub's longest accepted JWT lifetime, counted from now.
JWT_MAX_AHEAD = 600
#: How far in the future an `iat` may be (clock drift), in seconds.
JWT_IAT_LEEWAY = 60

UNDECODABLE = "A JSON web token could not be decoded"
BAD_EXP = (
    "'Expiration time' claim ('exp') must be a numeric value representing the future time at which "
    "the assertion expires"
)
FAR_EXP = "'Expiration time' claim ('exp') is too far in the future"
BAD_IAT = "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued"
BY_INTEGRATION = "Resource not accessible by integration"
BY_FINE_GRAINED = "Resource not accessible by personal access token"


@dataclass(frozen=True)
class Caller:
    """One request's credentials, resolved.

    kind: anonymous, unknown (a token the stand-in was never told about), classic,
    fine_grained, oauth, app_user, installation, or app (a JWT).
    """

    kind: str
    login: str | None = None
    scopes: tuple[str, ...] = ()
    app: App | None = None
    installation: Installation | None = None
    installation_token: InstallationToken | None = None
    fine_grained: FineGrainedToken | None = None
    user_token: UserToken | None = None

    @property
    def is_user(self) -> bool:
        return self.kind in ("classic", "fine_grained", "oauth", "app_user")

    @property
    def has_scopes(self) -> bool:
        """Classic and OAuth App tokens answer with `X-OAuth-Scopes`; the other kinds do not."""
        return self.kind in ("classic", "oauth")


ANONYMOUS = Caller("anonymous")


def looks_like_jwt(token: str) -> bool:
    return token.startswith("eyJ") and token.count(".") == 2


def identify(gh: GitHubState, authorization: str) -> Caller:
    """Resolve an `Authorization` header; raises Refused (401/403/404) as GitHub would."""
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if not token or scheme.lower() not in ("token", "bearer"):
        return ANONYMOUS
    if looks_like_jwt(token):
        return Caller("app", app=verify_jwt(gh, token))
    now = time.time()
    with gh.lock:
        if token.startswith("ghs_"):
            issued = gh.installation_tokens.get(token)
            inst = gh.installations.get(issued.installation_id) if issued else None
            if issued is None or inst is None or issued.expires_at <= now:
                raise Refused(401, "Bad credentials")
            if inst.suspended_at:
                raise Refused(403, "This installation has been suspended")
            return Caller(
                "installation", app=gh.apps[inst.app_id], installation=inst, installation_token=issued
            )
        if token.startswith(("ghu_", "gho_")):
            user_token = gh.user_tokens.get(token)
            if user_token is None or (user_token.expires_at is not None and user_token.expires_at <= now):
                raise Refused(401, "Bad credentials")
            if user_token.app_id is not None:
                app = gh.apps.get(user_token.app_id)
                return Caller("app_user", login=user_token.login, app=app, user_token=user_token)
            return Caller(
                "oauth", login=user_token.login, scopes=tuple(user_token.scopes), user_token=user_token
            )
        if token.startswith("github_pat_"):
            fine = gh.fine_grained.get(token)
            if fine is None:
                raise Refused(401, "Bad credentials")
            return Caller("fine_grained", login=fine.login, fine_grained=fine)
        login = gh.tokens.get(token)
        if login is None:
            if gh.strict_tokens:
                raise Refused(401, "Bad credentials")
            return Caller("unknown")
        return Caller("classic", login=login, scopes=tuple(gh.token_scopes.get(token, ["repo"])))


def verify_jwt(gh: GitHubState, token: str) -> App:
    """The App whose key signed this RS256 JWT, after GitHub's checks of `iss`, `iat` and `exp`."""
    try:
        header = jwt.get_unverified_header(token)
        claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Refused(401, UNDECODABLE) from None
    if header.get("alg") != "RS256":
        raise Refused(401, UNDECODABLE)
    issuer = claims.get("iss")
    with gh.lock:
        if isinstance(issuer, int) or (isinstance(issuer, str) and issuer.isdigit()):
            app = gh.apps.get(int(issuer))
        else:
            app = gh.app_by_client_id(str(issuer)) if isinstance(issuer, str) else None
    if app is None:
        raise Refused(404, "Integration not found")
    try:
        jwt.decode(
            token, app.public_key, algorithms=["RS256"], options={"verify_exp": False, "verify_iat": False}
        )
    except jwt.PyJWTError:
        raise Refused(401, UNDECODABLE) from None
    now = time.time()
    issued, expires = claims.get("iat"), claims.get("exp")
    if not isinstance(issued, int) or issued > now + JWT_IAT_LEEWAY:
        raise Refused(401, BAD_IAT)
    if not isinstance(expires, int) or expires <= now:
        raise Refused(401, BAD_EXP)
    if expires > now + JWT_MAX_AHEAD + 1:
        raise Refused(401, FAR_EXP)
    return app


def accepted_scopes(permissions: tuple[str, ...]) -> str:
    """What `X-Accepted-OAuth-Scopes` names for a repository endpoint needing `permissions`."""
    return "repo, repo:status" if "statuses" in permissions else "repo"


def check_repo(
    gh: GitHubState, caller: Caller, repo: dict[str, Any], permissions: tuple[str, ...], level: str
) -> None:
    """May the caller use the repository with one of `permissions` at `level`? Raises Refused if not.

    Classic and OAuth App tokens keep the stand-in's old leniency for writes to public
    repositories (any known user with the scope may post statuses and comments), so bots need
    not be made collaborators in older tests; private repositories need a role.
    """
    public = not repo["private"]
    write = LEVELS[level] >= LEVELS["write"]
    kind = caller.kind
    if kind in ("anonymous", "unknown", "app"):
        if public and not write:
            return
        if write:
            raise Refused(401, "Bad credentials" if kind == "unknown" else "Requires authentication")
        raise Refused(404, "Not Found")
    if kind in ("classic", "oauth"):
        role = gh.role_of(repo, caller.login)
        scopes = set(caller.scopes)
        allowed = (
            "repo" in scopes
            or ("statuses" in permissions and "repo:status" in scopes)
            or (public and (not write or "public_repo" in scopes))
        )
        if not allowed or (not public and role is None):
            raise Refused(404, "Not Found")
        return
    if kind == "fine_grained":
        assert caller.fine_grained is not None
        _check_granted(
            caller.fine_grained.repositories.get(repo["id"]), public, permissions, level, BY_FINE_GRAINED
        )
        return
    if kind == "installation":
        assert caller.installation is not None
        assert caller.installation_token is not None
        covered = {r["id"] for r in gh.installation_repos(caller.installation)}
        narrowed = caller.installation_token.repo_ids
        inside = repo["id"] in covered and (narrowed is None or repo["id"] in narrowed)
        grant = caller.installation_token.permissions if inside else None
        _check_granted(grant, public, permissions, level, BY_INTEGRATION)
        return
    if kind == "app_user":
        assert caller.app is not None
        inst = gh.installation_for(caller.app.id, repo)
        role = gh.role_of(repo, caller.login)
        grant = inst.permissions if inst is not None and (role is not None or public) else None
        _check_granted(grant, public, permissions, level, BY_INTEGRATION)
        if write and role not in ("write", "maintain", "admin"):
            raise Refused(403, BY_INTEGRATION)
        return
    raise Refused(401, "Bad credentials")


def _check_granted(
    grant: dict[str, str] | None, public: bool, permissions: tuple[str, ...], level: str, message: str
) -> None:
    """A token with per-repository permissions: outside its repositories only public reads pass."""
    if grant is None:
        if public and LEVELS[level] < LEVELS["write"]:
            return
        raise Refused(403 if public else 404, message if public else "Not Found")
    granted = {"metadata": "read", **grant}
    if not any(LEVELS.get(granted.get(p, ""), 0) >= LEVELS[level] for p in permissions):
        raise Refused(403, message)
