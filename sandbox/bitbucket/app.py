"""A stand-in for the parts of Bitbucket Cloud's REST API 2.0 the middleware uses, and (when given a
root directory) git smart HTTP through the real `git http-backend`.

No Bitbucket is reachable here, so tests and the demo point the unmodified provider at this. It
answers under `/2.0` with Bitbucket's paths, field names, status codes and error bodies
(`{"type": "error", "error": {"message": ..., "fields": ...}}`) for: repositories, commits (full
SHAs from any unique prefix of 4 or more hex digits), pull requests (their source commit as a
12-character hash, as Bitbucket sends it, and their source repository: a fork when it differs),
build statuses (one per key, a second post with the same key replaces the first) and pull request
comments. Bearer tokens stand for repository access tokens (scope `workspace/slug`) or workspace
access tokens (scope `workspace`).

It is not Bitbucket: no users beyond the ones added, no permissions beyond a token's scope, no
webhooks sent, no rate limits, no pipelines, no OAuth. Without a root, repositories hold
registered commit hashes only and git is not served; with one they are real bare repositories
served at `/<workspace>/<slug>.git` (HTTP Basic, any user name, the token as the password), and
a fork starts as a real clone of its parent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import itertools
import os
import re
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request

STATES = ("INPROGRESS", "SUCCESSFUL", "FAILED", "STOPPED")
MAX_KEY = 40
_HEX = re.compile(r"[0-9a-f]{4,40}")
_NAMESPACE = uuid.UUID("5f1c2b1e-8d7a-4c1e-9a55-2b6f3e0d9c11")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def _braced(value: uuid.UUID) -> str:
    return "{" + str(value) + "}"


class StandInError(Exception):
    """An answer in Bitbucket's error shape, raised from anywhere in a handler."""

    def __init__(self, status: int, message: str, fields: dict[str, list[str]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.fields = fields


@dataclass
class BitbucketState:
    """Tokens, users, repositories, pull requests and what was posted; thread-safe.

    Tests build their world with the `add_*` methods and read `statuses`, `comments` and
    `requests` back; `fail_next` and `delay` inject faults.
    """

    #: Where git-backed repositories live; None: commit hashes only, and no git served.
    root: Path | None = None
    #: token -> {"scope": "workspace" or "workspace/slug", "user": the token's bot user}.
    tokens: dict[str, dict[str, Any]] = field(default_factory=dict)
    users: dict[str, dict[str, Any]] = field(default_factory=dict)
    repos: dict[str, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    #: (repository, full SHA, key) -> the build status as Bitbucket returns it.
    statuses: dict[tuple[str, str, str], dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    #: Every API request: method, path and whether it carried a known token (never the token).
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: The next `failures` API requests are answered `failure_status`, before any work is done.
    failures: int = 0
    failure_status: int = 503
    #: Seconds every API answer waits before it is sent (a slow or hanging Bitbucket).
    delay: float = 0.0
    #: The next N build statuses are stored, then answered 502 (an answer lost on the way).
    lose_status_answers: int = 0
    lock: threading.RLock = field(default_factory=threading.RLock)
    ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # -- building the world --------------------------------------------------------------------

    def add_user(self, display_name: str, nickname: str | None = None) -> str:
        """Add (or find) a user by nickname; returns its account UUID (`{...}`), stable per nickname."""
        nick = nickname or display_name.lower().replace(" ", "")
        account = _braced(uuid.uuid5(_NAMESPACE, nick))
        with self.lock:
            self.users.setdefault(
                account,
                {
                    "type": "user",
                    "display_name": display_name,
                    "nickname": nick,
                    "uuid": account,
                    "account_id": hashlib.sha256(nick.encode()).hexdigest()[:24],
                },
            )
        return account

    def add_token(self, token: str, scope: str) -> None:
        """A repository (`workspace/slug`) or workspace (`workspace`) access token."""
        kind = "Repository" if "/" in scope else "Workspace"
        bot = self.add_user(f"{kind} access token for {scope}", f"bot-{scope.replace('/', '-')}")
        with self.lock:
            self.tokens[token] = {"scope": scope.lower(), "user": self.users[bot]}

    def add_repo(
        self, full_name: str, *, private: bool = True, mainbranch: str = "main", fork_of: str | None = None
    ) -> dict[str, Any]:
        """A repository; a fork starts with its parent's commits and branches."""
        key = full_name.lower()
        workspace, slug = key.split("/")
        parent = self.repo(fork_of) if fork_of is not None else None
        with self.lock:
            if key in self.repos:
                raise ValueError(f"repository {full_name} exists")
            repo: dict[str, Any] = {
                "full_name": full_name,
                "workspace": workspace,
                "slug": slug,
                "uuid": _braced(uuid.uuid5(_NAMESPACE, f"repo:{key}")),
                "private": private,
                "mainbranch": mainbranch,
                "parent": parent["full_name"] if parent else None,
                "commits": list(parent["commits"]) if parent else [],
                "branches": dict(parent["branches"]) if parent else {},
            }
            self.repos[key] = repo
        if self.root is not None:
            path = self.git_dir(repo)
            path.parent.mkdir(parents=True, exist_ok=True)
            if parent is not None:
                _git(None, "clone", "--quiet", "--bare", "--", str(self.git_dir(parent)), str(path))
            else:
                _git(None, "init", "--quiet", "--bare", str(path))
                _git(path, "symbolic-ref", "HEAD", f"refs/heads/{mainbranch}")
        return repo

    def add_commit(
        self, full_name: str, *, branch: str | None = None, message: str = "a commit", sha: str | None = None
    ) -> str:
        """A new commit on `branch` (the main branch by default; a new branch starts from the main
        branch's head); returns its full SHA.

        Git-backed: a real commit whose README holds `message` and a serial number (two commits
        made alike in the same second would otherwise be one). Otherwise `sha`, or a made-up one.
        """
        repo = self.repo(full_name)
        branch = branch or repo["mainbranch"]
        if self.root is not None:
            if sha is not None:
                raise ValueError("a git-backed repository makes its own SHAs")
            path = self.git_dir(repo)
            readme = f"{message}\n\n(stand-in commit {next(self.ids)})\n"
            blob = _git(path, "hash-object", "-w", "--stdin", stdin=readme)
            tree = _git(path, "mktree", stdin=f"100644 blob {blob}\tREADME\n")
            parent = self.head(full_name, branch) or self.head(full_name, repo["mainbranch"])
            parents = ["-p", parent] if parent else []
            sha = _git(path, "commit-tree", tree, *parents, "-m", message)
            _git(path, "update-ref", f"refs/heads/{branch}", sha)
        elif sha is None:
            sha = hashlib.sha1(f"{full_name}:{branch}:{next(self.ids)}".encode()).hexdigest()  # noqa: S324 - a name
        if not re.fullmatch(r"[0-9a-f]{40}", sha):
            raise ValueError(f"{sha!r} is not a full SHA")
        with self.lock:
            repo["commits"].append(sha)
            repo["branches"][branch] = sha
        return sha

    def add_pull(
        self,
        full_name: str,
        pr_id: int,
        *,
        source_branch: str,
        source_commit: str | None = None,
        source_repo: str | None = "",
        destination_branch: str | None = None,
        author: str = "Emma",
        state: str = "OPEN",
        title: str = "",
    ) -> dict[str, Any]:
        """A pull request into `full_name`. `source_repo`: "" for the same repository, a fork's
        name, or None for a deleted fork; `source_commit`: the source branch's head by default."""
        repo = self.repo(full_name)
        source_name = full_name if source_repo == "" else source_repo
        commit = source_commit
        if commit is None and source_name is not None:
            commit = self.head(source_name, source_branch)
        if commit is None:
            raise ValueError("the pull request needs a source commit")
        record = {
            "id": pr_id,
            "title": title or f"Pull request {pr_id}",
            "state": state,
            "author": self.add_user(author),
            "source_branch": source_branch,
            "source_commit": commit,
            "source_repo": source_name,
            "destination_branch": destination_branch or repo["mainbranch"],
            "created_on": _now(),
        }
        with self.lock:
            self.pulls[(full_name.lower(), pr_id)] = record
        return record

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` API requests answer `status` (5xx, 429, ...) without doing anything."""
        with self.lock:
            self.failures, self.failure_status = count, status

    # -- reading it --------------------------------------------------------------------------

    def repo(self, full_name: str) -> dict[str, Any]:
        with self.lock:
            found = self.repos.get(full_name.lower())
        if found is None:
            raise KeyError(f"no repository {full_name} in the stand-in")
        return found

    def git_dir(self, repo: dict[str, Any]) -> Path:
        assert self.root is not None
        return self.root / str(repo["workspace"]) / f"{repo['slug']}.git"

    def head(self, full_name: str, branch: str) -> str | None:
        repo = self.repo(full_name)
        if self.root is not None:
            try:
                return _git(self.git_dir(repo), "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}")
            except subprocess.CalledProcessError:
                return None
        with self.lock:
            found = repo["branches"].get(branch)
        return str(found) if found is not None else None

    def find_commit(self, repo: dict[str, Any], node: str) -> str | None:
        """The full SHA a unique hex prefix names in `repo`, or None (unknown or ambiguous)."""
        if not _HEX.fullmatch(node):
            return None
        if self.root is not None:
            try:
                return _git(self.git_dir(repo), "rev-parse", "--verify", "--quiet", f"{node}^{{commit}}")
            except subprocess.CalledProcessError:
                return None
        with self.lock:
            matches = {sha for sha in repo["commits"] if sha.startswith(node)}
        return matches.pop() if len(matches) == 1 else None


def _git(path: Path | None, *args: str, stdin: str | None = None) -> str:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "Stand-in",
        "GIT_AUTHOR_EMAIL": "stand-in@example.invalid",
        "GIT_COMMITTER_NAME": "Stand-in",
        "GIT_COMMITTER_EMAIL": "stand-in@example.invalid",
    }
    where = ["-C", str(path)] if path is not None else []
    done = subprocess.run(
        ["git", *where, *args], input=stdin, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def create_app(state: BitbucketState | None = None) -> Flask:
    app = Flask("sandbox.bitbucket")
    bb = state or BitbucketState()
    app.extensions["bitbucket_state"] = bb

    def api_base() -> str:
        return request.host_url.rstrip("/") + "/2.0"

    def web_base() -> str:
        return request.host_url.rstrip("/")

    def error(status: int, message: str, fields: dict[str, list[str]] | None = None) -> Response:
        detail: dict[str, Any] = {"message": message}
        if fields:
            detail["fields"] = fields
        response = jsonify({"type": "error", "error": detail})
        response.status_code = status
        return response

    @app.errorhandler(StandInError)
    def _stand_in_error(failure: StandInError) -> Response:
        return error(failure.status, failure.message, failure.fields)

    def token() -> dict[str, Any] | None:
        """The bearer token's record; None without one; 401 for one Bitbucket does not know."""
        header = request.headers.get("Authorization", "")
        if not header:
            return None
        scheme, _, value = header.partition(" ")
        found = bb.tokens.get(value.strip()) if scheme.lower() == "bearer" else None
        if found is None:
            raise StandInError(401, "Token is invalid, expired, or not supported for this endpoint.")
        return found

    def repo_for(workspace: str, slug: str, *, write: bool = False) -> dict[str, Any]:
        """The repository if the caller may read it (or write to it); Bitbucket's errors otherwise."""
        caller = token()
        repo = bb.repos.get(f"{workspace}/{slug}".lower())
        if repo is None or (repo["private"] and caller is None):
            raise StandInError(404, f"Repository {workspace}/{slug} not found")
        if caller is None and write:
            raise StandInError(401, "Authentication required")
        outside = caller is not None and caller["scope"] not in (repo["workspace"], repo["full_name"].lower())
        if outside and (repo["private"] or write):
            raise StandInError(403, "Your credentials lack one or more required privilege scopes.")
        return repo

    def commit_for(repo: dict[str, Any], node: str) -> str:
        full = bb.find_commit(repo, node)
        if full is None:
            raise StandInError(404, f"Commit not found: {node[:40]}")
        return full

    def status_commit_for(repo: dict[str, Any], node: str) -> str:
        """A commit a build status may name: the repository's own, or the head of one of its pull
        requests from a fork (its build status goes on the destination, whose token the service
        holds). That Bitbucket Cloud takes a fork's commit there is this stand-in's assumption."""
        full = bb.find_commit(repo, node)
        if full is not None:
            return full
        with bb.lock:
            pulls = [p for (name, _), p in bb.pulls.items() if name == repo["full_name"].lower()]
        for pull in pulls:
            source = pull.get("source_repo")
            if source and source.lower() != repo["full_name"].lower() and source.lower() in bb.repos:
                found = bb.find_commit(bb.repo(source), node)
                if found is not None:
                    return found
        raise StandInError(404, f"Commit not found: {node[:40]}")

    def user_json(user: dict[str, Any]) -> dict[str, Any]:
        return {
            **user,
            "links": {"html": {"href": f"{web_base()}/{user['uuid']}/"}},
        }

    def repo_json(repo: dict[str, Any]) -> dict[str, Any]:
        full = repo["full_name"]
        return {
            "type": "repository",
            "full_name": full,
            "name": repo["slug"],
            "slug": repo["slug"],
            "uuid": repo["uuid"],
            "is_private": repo["private"],
            "scm": "git",
            "mainbranch": {"type": "branch", "name": repo["mainbranch"]},
            "parent": {"type": "repository", "full_name": repo["parent"]} if repo["parent"] else None,
            "workspace": {"type": "workspace", "slug": repo["workspace"]},
            "links": {
                "self": {"href": f"{api_base()}/repositories/{full}"},
                "html": {"href": f"{web_base()}/{full}"},
                "clone": [{"name": "https", "href": f"{web_base()}/{full}.git"}],
            },
        }

    def page(values: list[dict[str, Any]]) -> Response:
        """Bitbucket's paginated list: `values`, `page`, `pagelen`, `size` and a `next` link."""
        pagelen = max(1, min(int(request.args.get("pagelen", 10)), 100))
        number = max(1, int(request.args.get("page", 1)))
        chunk = values[(number - 1) * pagelen : number * pagelen]
        body: dict[str, Any] = {"pagelen": pagelen, "page": number, "size": len(values), "values": chunk}
        if number * pagelen < len(values):
            body["next"] = f"{api_base()}{request.path}?pagelen={pagelen}&page={number + 1}"
        return jsonify(body)

    @app.before_request
    def _faults() -> Response | None:
        if not request.path.startswith("/2.0/"):
            return None
        known = request.headers.get("Authorization", "").partition(" ")[2].strip() in bb.tokens
        with bb.lock:
            bb.requests.append(
                {"method": request.method, "path": request.path, "authorized": known, "time": time.time()}
            )
            failing = bb.failures > 0
            bb.failures -= int(failing)
            status = bb.failure_status
        if bb.delay > 0:
            time.sleep(bb.delay)
        if failing:
            return error(status, "Something went wrong" if status >= 500 else "Rate limit for this resource")
        return None

    # -- repositories and commits --------------------------------------------------------------

    @app.get("/2.0/repositories/<workspace>/<slug>")
    def get_repo(workspace: str, slug: str) -> Response:
        return jsonify(repo_json(repo_for(workspace, slug)))

    @app.get("/2.0/repositories/<workspace>/<slug>/commit/<node>")
    def get_commit(workspace: str, slug: str, node: str) -> Response:
        repo = repo_for(workspace, slug)
        full = commit_for(repo, node)
        name = repo["full_name"]
        return jsonify(
            {
                "type": "commit",
                "hash": full,
                "message": "",
                "date": _now(),
                "author": {"type": "author", "raw": "Stand-in <stand-in@example.invalid>"},
                "parents": [],
                "repository": {"type": "repository", "full_name": name},
                "links": {
                    "self": {"href": f"{api_base()}/repositories/{name}/commit/{full}"},
                    "html": {"href": f"{web_base()}/{name}/commits/{full}"},
                    "statuses": {"href": f"{api_base()}/repositories/{name}/commit/{full}/statuses"},
                },
            }
        )

    # -- pull requests and their comments ------------------------------------------------------

    def pull_for(repo: dict[str, Any], pr_id: int) -> dict[str, Any]:
        pull = bb.pulls.get((repo["full_name"].lower(), pr_id))
        if pull is None:
            raise StandInError(404, f"Pull request {pr_id} not found")
        return pull

    def side(repo_name: str | None, branch: str, commit: str | None) -> dict[str, Any]:
        source_repo = bb.repos.get(repo_name.lower()) if repo_name else None
        return {
            "branch": {"name": branch},
            "commit": {"type": "commit", "hash": commit[:12]} if commit else None,
            "repository": {
                "type": "repository",
                "full_name": source_repo["full_name"],
                "name": source_repo["slug"],
                "uuid": source_repo["uuid"],
            }
            if source_repo
            else None,
        }

    def pull_json(repo: dict[str, Any], pull: dict[str, Any]) -> dict[str, Any]:
        name, pr_id = repo["full_name"], pull["id"]
        return {
            "type": "pullrequest",
            "id": pr_id,
            "title": pull["title"],
            "description": "",
            "state": pull["state"],
            "author": user_json(bb.users[pull["author"]]),
            "source": side(pull["source_repo"], pull["source_branch"], pull["source_commit"]),
            "destination": side(name, pull["destination_branch"], bb.head(name, pull["destination_branch"])),
            "merge_commit": None,
            "close_source_branch": False,
            "created_on": pull["created_on"],
            "updated_on": pull["created_on"],
            "links": {
                "self": {"href": f"{api_base()}/repositories/{name}/pullrequests/{pr_id}"},
                "html": {"href": f"{web_base()}/{name}/pull-requests/{pr_id}"},
            },
        }

    @app.get("/2.0/repositories/<workspace>/<slug>/pullrequests/<int:pr_id>")
    def get_pull(workspace: str, slug: str, pr_id: int) -> Response:
        repo = repo_for(workspace, slug)
        return jsonify(pull_json(repo, pull_for(repo, pr_id)))

    @app.get("/2.0/repositories/<workspace>/<slug>/pullrequests/<int:pr_id>/comments")
    def list_comments(workspace: str, slug: str, pr_id: int) -> Response:
        repo = repo_for(workspace, slug)
        pull_for(repo, pr_id)
        with bb.lock:
            found = [
                {k: v for k, v in c.items() if k != "repository"}
                for c in bb.comments
                if c["repository"] == repo["full_name"] and c["pullrequest"]["id"] == pr_id
            ]
        return page(found)

    @app.post("/2.0/repositories/<workspace>/<slug>/pullrequests/<int:pr_id>/comments")
    def create_comment(workspace: str, slug: str, pr_id: int) -> Response:
        repo = repo_for(workspace, slug, write=True)
        pull = pull_for(repo, pr_id)
        body = request.get_json(silent=True)
        content = body.get("content") if isinstance(body, dict) else None
        raw = content.get("raw") if isinstance(content, dict) else None
        if not isinstance(raw, str) or not raw:
            raise StandInError(400, "content.raw: This field is required.", {"content.raw": ["required"]})
        caller = token()
        assert caller is not None
        name = repo["full_name"]
        with bb.lock:
            comment_id = next(bb.ids)
            record = {
                "type": "pullrequest_comment",
                "id": comment_id,
                "content": {"type": "rendered", "raw": raw, "markup": "markdown", "html": html.escape(raw)},
                "user": user_json(caller["user"]),
                "created_on": _now(),
                "updated_on": _now(),
                "deleted": False,
                "pullrequest": {"type": "pullrequest", "id": pr_id, "title": pull["title"]},
                "links": {
                    "self": {
                        "href": f"{api_base()}/repositories/{name}/pullrequests/{pr_id}/comments/{comment_id}"
                    },
                    "html": {"href": f"{web_base()}/{name}/pull-requests/{pr_id}#comment-{comment_id}"},
                },
                "repository": name,
            }
            bb.comments.append(record)
        response = jsonify({k: v for k, v in record.items() if k != "repository"})
        response.status_code = 201
        return response

    # -- build statuses ------------------------------------------------------------------------

    def status_json(status: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in status.items() if k != "repository"}

    @app.post("/2.0/repositories/<workspace>/<slug>/commit/<node>/statuses/build")
    def create_status(workspace: str, slug: str, node: str) -> Response:
        repo = repo_for(workspace, slug, write=True)
        full = status_commit_for(repo, node)
        body = request.get_json(silent=True)
        if not isinstance(body, dict):
            raise StandInError(400, "Bad request")
        problems: dict[str, list[str]] = {}
        key = body.get("key")
        if not isinstance(key, str) or not key:
            problems["key"] = ["This field is required."]
        elif len(key) > MAX_KEY:
            problems["key"] = [f"Ensure this value has at most {MAX_KEY} characters (it has {len(key)})."]
        if body.get("state") not in STATES:
            problems["state"] = [
                f"Select a valid choice. {body.get('state')!r} is not one of the available choices."
            ]
        if not isinstance(body.get("url"), str) or not body["url"]:
            problems["url"] = ["This field is required."]
        for optional in ("name", "description", "refname"):
            if body.get(optional) is not None and not isinstance(body[optional], str):
                problems[optional] = ["Not a valid string."]
        if problems:
            first = next(iter(problems))
            raise StandInError(400, f"{first}: {problems[first][0]}", problems)
        name = repo["full_name"]
        with bb.lock:
            slot = (name.lower(), full, str(key))
            earlier = bb.statuses.get(slot)
            record = {
                "type": "build",
                "key": key,
                "state": body["state"],
                "name": body.get("name") or key,
                "description": body.get("description") or "",
                "url": body["url"],
                "refname": body.get("refname"),
                "uuid": earlier["uuid"] if earlier else _braced(uuid.uuid4()),
                "created_on": earlier["created_on"] if earlier else _now(),
                "updated_on": _now(),
                "commit": {"type": "commit", "hash": full},
                "links": {
                    "self": {"href": f"{api_base()}/repositories/{name}/commit/{full}/statuses/build/{key}"},
                    "commit": {"href": f"{api_base()}/repositories/{name}/commit/{full}"},
                },
                "repository": name,
            }
            bb.statuses[slot] = record
            lose = bb.lose_status_answers > 0
            bb.lose_status_answers -= int(lose)
        if lose:
            return error(502, "Something went wrong")
        response = jsonify(status_json(record))
        response.status_code = 201
        return response

    @app.get("/2.0/repositories/<workspace>/<slug>/commit/<node>/statuses/build/<path:key>")
    def get_status(workspace: str, slug: str, node: str, key: str) -> Response:
        repo = repo_for(workspace, slug)
        full = status_commit_for(repo, node)
        with bb.lock:
            found = bb.statuses.get((repo["full_name"].lower(), full, key))
        if found is None:
            raise StandInError(404, f"No build status found with key {key[:60]!r}")
        return jsonify(status_json(found))

    @app.get("/2.0/repositories/<workspace>/<slug>/commit/<node>/statuses")
    def list_statuses(workspace: str, slug: str, node: str) -> Response:
        repo = repo_for(workspace, slug)
        full = status_commit_for(repo, node)
        with bb.lock:
            found = [
                status_json(s)
                for (name, sha, _), s in bb.statuses.items()
                if name == repo["full_name"].lower() and sha == full
            ]
        found.sort(key=lambda s: str(s["updated_on"]), reverse=True)
        return page(found)

    # -- git smart HTTP through the real git http-backend --------------------------------------

    @app.route("/<workspace>/<slug>.git/<path:rest>", methods=["GET", "POST"])
    def git_http(workspace: str, slug: str, rest: str) -> Response:
        repo = bb.repos.get(f"{workspace}/{slug}".lower())
        if bb.root is None or repo is None:
            return Response("Repository not found\n", status=404)
        writing = rest == "git-receive-pack" or request.args.get("service") == "git-receive-pack"
        auth = request.authorization
        scope = bb.tokens.get(auth.password or "", {}).get("scope") if auth is not None else None
        allowed = scope in (repo["workspace"], repo["full_name"].lower())
        if (writing or repo["private"]) and not allowed:
            return Response(
                "Authentication failed\n", status=401, headers={"WWW-Authenticate": 'Basic realm="Bitbucket"'}
            )
        body = request.get_data()
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_PROJECT_ROOT": str(bb.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": f"/{repo['workspace']}/{repo['slug']}.git/{rest}",
            "REQUEST_METHOD": request.method,
            "QUERY_STRING": request.query_string.decode(),
            "CONTENT_TYPE": request.content_type or "",
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": (auth.username or "x-token-auth") if allowed and auth is not None else "",
            "REMOTE_ADDR": request.remote_addr or "127.0.0.1",
            "GIT_PROTOCOL": request.headers.get("Git-Protocol", ""),
            "HTTP_CONTENT_ENCODING": request.headers.get("Content-Encoding", ""),
        }
        done = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        head, separator, payload = done.stdout.partition(b"\r\n\r\n")
        if not separator:
            head, _, payload = done.stdout.partition(b"\n\n")
        status, headers = 200, {}
        for line in head.decode("latin-1").splitlines():
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = int(value.strip().split()[0])
            elif name:
                headers[name.strip()] = value.strip()
        return Response(payload, status=status, headers=headers)

    return app
