"""Mirror one source ref into the managed GitLab with the real `git` binary.

One cached bare repository per source repository; each event fetches exactly
the ref or SHA it needs (incremental), and pushes it to the mirror project
with `-o ci.skip` (pipelines start only through the API). PR heads come from
`refs/pull/<n>/head`, so forks need no URL of their own.

Credentials never touch a URL, the repository config, argv or an error
message: the GitLab token travels as an `http.extraHeader` set through
GIT_CONFIG_* environment variables, and git's output is redacted. Every ref
is validated and passed after `--`, so a name like `--upload-pack=…` is data.
"""

from __future__ import annotations

import base64
import functools
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from middleware.refs import is_sha, safe_full_ref

GIT_TIMEOUT = 600


class MirrorError(RuntimeError):
    """A git step failed; the message is safe to log and to show as a status."""


@dataclass(frozen=True)
class SourceRef:
    """What to take from the source: a full ref (`refs/...`) or a commit SHA."""

    ref: str | None
    sha: str | None

    @classmethod
    def for_trigger(cls, ref: str, sha: str) -> SourceRef:
        """Map a trigger's ref (`main`, `pr-12`, `refs/tags/v1`, or an API sha) to the source ref."""
        if ref.startswith("pr-") and ref[3:].isdigit():
            return cls(f"refs/pull/{int(ref[3:])}/head", sha)
        if ref.startswith("refs/tags/"):
            return cls(ref, sha)
        if is_sha(ref):
            return cls(None, ref)
        return cls(f"refs/heads/{ref}", sha)


def mirror_ref(ref: str) -> str:
    """Where a trigger's ref lands in the mirror: branches 1:1, PRs as `pr-<n>`, tags as tags."""
    if ref.startswith("refs/tags/"):
        return ref
    if is_sha(ref):
        return f"refs/heads/sha-{ref[:12]}"
    return f"refs/heads/{ref}"


def _check_ref(ref: str) -> None:
    if not safe_full_ref(ref):
        raise MirrorError(f"refusing ref {ref!r}: not a valid ref name")


class Git:
    """Runs git with a credential header from the environment and redacted errors."""

    def __init__(self, token: str | None, timeout: float = GIT_TIMEOUT) -> None:
        self._token = token
        self._timeout = timeout

    def env(self) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),  # noqa: S108 - git wants a HOME; nothing is written
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "/bin/false",
            "LANG": "C",
        }
        if self._token:
            header = base64.b64encode(f"oauth2:{self._token}".encode()).decode()
            env.update(
                GIT_CONFIG_COUNT="1",
                GIT_CONFIG_KEY_0="http.extraHeader",
                GIT_CONFIG_VALUE_0=f"Authorization: Basic {header}",
            )
        return env

    def redact(self, text: str) -> str:
        if self._token:
            text = text.replace(self._token, "***")
            text = text.replace(base64.b64encode(f"oauth2:{self._token}".encode()).decode(), "***")
        return text

    def __call__(self, repo: Path, *args: str, what: str, ca_file: str | None = None) -> str:
        """Run git in `repo`; `ca_file` is a CA bundle to trust (a self-managed source's own CA)."""
        env = self.env()
        if ca_file:
            env["GIT_SSL_CAINFO"] = ca_file
        try:
            done = subprocess.run(
                ["git", "-C", str(repo), *args],
                capture_output=True,
                text=True,
                timeout=self._timeout,
                env=env,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise MirrorError(f"{what} timed out after {self._timeout:g} s") from None
        if done.returncode != 0:
            lines = (done.stderr or done.stdout).strip().splitlines()
            raise MirrorError(f"{what} failed: {self.redact(lines[-1]) if lines else 'no output'}")
        return done.stdout.strip()


class Mirror:
    """The cache of source repositories and the pushes into GitLab."""

    def __init__(self, cache_root: Path, gitlab_token: str | None) -> None:
        self.cache_root = cache_root
        self._source_git = Git(None)
        self._gitlab_git = Git(gitlab_token)

    def cache(self, repository_id: int) -> Path:
        path = self.cache_root / f"source-{repository_id}.git"
        if not (path / "HEAD").exists():
            path.mkdir(parents=True, exist_ok=True)
            self._source_git(path, "init", "--quiet", "--bare", what="creating the mirror cache")
        return path

    def fetch(
        self, repository_id: int, source_url: str, source: SourceRef, *, ca_file: str | None = None
    ) -> str:
        """Fetch exactly what is needed into the cache; returns the commit SHA."""
        repo = self.cache(repository_id)
        git = functools.partial(self._source_git, ca_file=ca_file)
        if source.ref is not None:
            _check_ref(source.ref)
            local = f"refs/sources/{source.ref.removeprefix('refs/')}"
            git(
                repo, "fetch", "--quiet", "--no-tags", "--", source_url, f"+{source.ref}:{local}",
                what=f"fetching {source.ref}",
            )  # fmt: skip
            fetched = git(repo, "rev-parse", "--verify", f"{local}^{{commit}}", what="reading the ref")
            if source.sha and fetched != source.sha:
                # The ref moved on since the event: the event's commit is what runs. It is usually
                # reachable from the new head; after a force push it is fetched by SHA.
                try:
                    git(repo, "cat-file", "-e", f"{source.sha}^{{commit}}", what="finding the commit")
                except MirrorError:
                    git(
                        repo, "fetch", "--quiet", "--no-tags", "--", source_url, source.sha,
                        what=f"fetching {source.sha}",
                    )  # fmt: skip
                return source.sha
            return fetched
        if source.sha is None or not is_sha(source.sha):
            raise MirrorError("nothing to fetch: neither a ref nor a commit SHA")
        git(
            repo, "fetch", "--quiet", "--no-tags", "--", source_url, source.sha, what=f"fetching {source.sha}"
        )
        return source.sha

    def push(self, repository_id: int, project_url: str, sha: str, target: str) -> None:
        """Force the mirror's `target` ref to `sha`, without starting a pipeline."""
        _check_ref(target)
        if not is_sha(sha):
            raise MirrorError(f"refusing to push {sha!r}: not a commit SHA")
        self._gitlab_git(
            self.cache(repository_id), "push", "--quiet", "--force", "-o", "ci.skip", "--", project_url,
            f"{sha}:{target}", what=f"pushing {target} to the mirror",
        )  # fmt: skip

    def delete(self, repository_id: int, project_url: str, target: str) -> None:
        """Remove a mirror branch whose source branch or PR went away."""
        _check_ref(target)
        self._gitlab_git(
            self.cache(repository_id), "push", "--quiet", "-o", "ci.skip", "--", project_url, f":{target}",
            what=f"deleting {target} from the mirror",
        )  # fmt: skip
