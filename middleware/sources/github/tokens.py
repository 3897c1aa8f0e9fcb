"""Check a notification token live with PyGithub when a registration is saved.

A token that GitHub refuses, that cannot see the repository, or that may not write commit
statuses there would make every status report fail later and silently; refusing it at once
is kinder. A classic token says what it may do (`X-OAuth-Scopes`): `repo` or `repo:status`,
or `public_repo` for a public repository (GitHub's scopes for OAuth apps). A fine-grained
token says nothing, so the check posts one clearly labelled test status on the head of the
default branch: GitHub's answer is the proof.
"""

from __future__ import annotations

from github import Auth, BadCredentialsException, Github, GithubException, UnknownObjectException
from urllib3.util.retry import Retry

TIMEOUT = 10
#: The test status a token without scopes (fine-grained) is checked with.
CHECK_CONTEXT = "firecrest-ci/token-check"
CHECK_DESCRIPTION = "Only checks that the CI service's token may post statuses here; not a CI result"
#: Classic scopes that let a token write commit statuses on any repository it can see.
STATUS_SCOPES = frozenset({"repo", "repo:status"})


class TokenRejected(ValueError):
    """The token cannot be used; the message says why, without the token."""


def github_client(api_url: str, token: str) -> Github:
    retry = Retry(total=3, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=None)
    return Github(base_url=api_url, auth=Auth.Token(token), timeout=TIMEOUT, retry=retry)


def make_token_checker(api_url: str) -> TokenChecker:
    return TokenChecker(api_url)


class TokenChecker:
    def __init__(self, api_url: str) -> None:
        self.api_url = api_url

    def __call__(self, token: str, full_name: str) -> bool:
        """Check the token can see the repository; returns whether the repository is private."""
        client = github_client(self.api_url, token)
        login = "the token's user"
        try:
            login = client.get_user().login
            scopes = client.oauth_scopes  # the header of the answer just read; None: fine-grained
            repo = client.get_repo(full_name)
            private = bool(repo.private)
            if scopes is not None:
                missing_status_scope(scopes, private=private, full_name=full_name)
            else:
                _post_test_status(client.withLazy(True), full_name, repo.default_branch)
            return private
        except BadCredentialsException:
            raise TokenRejected("GitHub refused the notification token (bad credentials)") from None
        except UnknownObjectException:
            raise TokenRejected(f"the notification token (user {login}) cannot see {full_name}") from None
        except GithubException as error:
            raise TokenRejected(f"GitHub answered {error.status} when checking the token") from None
        except OSError as error:
            raise TokenRejected(f"GitHub at {self.api_url} is unreachable ({type(error).__name__})") from None
        finally:
            client.close()


def missing_status_scope(scopes: list[str], *, private: bool, full_name: str) -> None:
    """Raise TokenRejected unless a classic token's scopes let it write statuses on the repository."""
    held = {scope.strip() for scope in scopes if scope.strip()}
    if held & STATUS_SCOPES or (not private and "public_repo" in held):
        return
    having = ", ".join(sorted(held)) or "no scopes"
    needed = "`repo:status` or `repo`" if private else "`repo:status`, `public_repo` or `repo`"
    raise TokenRejected(
        f"the notification token may not write commit statuses on {full_name} (its scopes: {having}); "
        f"give it {needed}, or use a fine-grained token with Commit statuses: write"
    )


def _post_test_status(lazy: Github, name: str, branch: str) -> None:
    """Post the labelled test status on the default branch's head; raises TokenRejected.

    The head is read from the branch's combined status, which needs only the permission being
    checked (Commit statuses), not read access to the code; `lazy` reads nothing else."""
    repo = lazy.get_repo(name)
    try:
        combined = repo.get_commit(branch).get_combined_status()  # one GET: .../commits/{branch}/status
        sha = combined.sha
    except GithubException as error:
        if error.status in (401, 403, 404):
            raise TokenRejected(
                f"the notification token may not read commit statuses on {name} (GitHub answered "
                f"{error.status}); grant it Commit statuses: Read and write on this repository"
            ) from None
        if error.status in (409, 422):  # an empty repository: no branch head yet
            raise TokenRejected(
                f"{name} has no commit on its default branch {branch!r} to check the token against; "
                "push one, then save again"
            ) from None
        raise
    try:
        repo.get_commit(sha).create_status(
            "success", target_url="", description=CHECK_DESCRIPTION, context=CHECK_CONTEXT
        )
    except GithubException as error:
        if error.status in (401, 403, 404):
            raise TokenRejected(
                f"the notification token may not write commit statuses on {name} (GitHub answered "
                f"{error.status} to a test status); grant it Commit statuses: Read and write on this "
                "repository"
            ) from None
        raise
