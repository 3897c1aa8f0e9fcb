"""The managed GitLab side of a registration: one mirror project per (repository, pipeline).

Projects live at `<group>/<repository id>/<pipeline>`, created if missing with
the pipeline's entrypoint as `ci_config_path`, the source's visibility,
trigger variables allowed (`ci_pipeline_variables_minimum_override_role`;
new gitlab.com namespaces default to `no_one_allowed`) and every branch
protected by a `*` rule that allows force pushes. Because every branch is
protected, the FirecREST credentials are stored as masked *and protected*
project variables, so `pr-<n>` pipelines still get them; they never travel as
pipeline variables, and are updated whenever the registration changes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import gitlab
from gitlab.v4.objects import Group, Project

#: GitLab masks only values of 8+ characters from a limited alphabet.
_MASKABLE = re.compile(r"^[A-Za-z0-9@:.~+/=_-]{8,}$")


@dataclass(frozen=True)
class MirrorProjectSpec:
    repository_id: int
    pipeline: str
    entrypoint: str
    visibility: str = "private"
    #: Project CI variables: the FirecREST credentials, account, system and the pipeline's secrets.
    variables: dict[str, str] = field(default_factory=dict)
    #: This project's own X-Gitlab-Token for its pipeline hook, and whether it was just made
    #: (an existing hook then gets it: GitLab never shows a hook's token back).
    hook_token: str | None = None
    hook_token_new: bool = False


#: python-gitlab's retries of one request (0.1 s doubling: about 6 s in all). Its default of 10
#: holds a worker for 100 s per request in an outage; the run's own backoff takes over sooner.
MAX_RETRIES = 6


class BoundedGitlab(gitlab.Gitlab):
    """python-gitlab with a shorter retry budget per request."""

    def http_request(self, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("max_retries", MAX_RETRIES)
        return super().http_request(*args, **kwargs)


def client(url: str, token: str) -> gitlab.Gitlab:
    """python-gitlab with its own retries for 5xx, 429 and timeouts."""
    return BoundedGitlab(url, private_token=token, retry_transient_errors=True, timeout=30)


def project_path(group: str, repository_id: int, pipeline: str) -> str:
    return f"{group.strip('/')}/{repository_id}/{pipeline}"


class GitLabProjects:
    def __init__(
        self,
        gl: gitlab.Gitlab,
        group: str,
        hook_url: str | None = None,
        *,
        legacy_hook_urls: tuple[str, ...] = (),
    ) -> None:
        self._gl = gl
        self._group = group.strip("/")
        self._hook_url = hook_url
        #: Where the service's hooks pointed before: such a hook is moved, not doubled.
        self._legacy_hook_urls = legacy_hook_urls

    def ensure_group(self, full_path: str) -> Group:
        try:
            return self._gl.groups.get(full_path)
        except gitlab.exceptions.GitlabGetError as error:
            if error.response_code != 404:
                raise
        parent_path, _, name = full_path.rpartition("/")
        data: dict[str, Any] = {"name": name, "path": name, "visibility": "public"}
        if parent_path:
            data["parent_id"] = self.ensure_group(parent_path).id
        return self._gl.groups.create(data)

    def ensure_project(self, spec: MirrorProjectSpec) -> Project:
        """Create or update the mirror project and its variables; idempotent."""
        path = project_path(self._group, spec.repository_id, spec.pipeline)
        settings = {
            "ci_config_path": spec.entrypoint,
            "visibility": spec.visibility,
            "ci_pipeline_variables_minimum_override_role": "developer",
        }
        try:
            project = self._gl.projects.get(path)
        except gitlab.exceptions.GitlabGetError as error:
            if error.response_code != 404:
                raise
            namespace = self.ensure_group(path.rpartition("/")[0])
            project = self._gl.projects.create(
                {"name": spec.pipeline, "path": spec.pipeline, "namespace_id": namespace.id, **settings}
            )
        else:
            changed = {k: v for k, v in settings.items() if getattr(project, k, None) != v}
            if changed:
                for key, value in changed.items():
                    setattr(project, key, value)
                project.save()
        if not any(b.name == "*" for b in project.protectedbranches.list(get_all=True)):
            project.protectedbranches.create({"name": "*", "allow_force_push": True})
        self.sync_variables(project, spec.variables)
        if self._hook_url and spec.hook_token:
            self._ensure_hook(project, spec)
        return project

    def _ensure_hook(self, project: Project, spec: MirrorProjectSpec) -> None:
        hooks = project.hooks.list(get_all=True)
        hook = next((h for h in hooks if h.url == self._hook_url), None)
        old = next((h for h in hooks if h.url in self._legacy_hook_urls), None)
        if hook is None and old is not None:
            old.url, old.token = self._hook_url, spec.hook_token  # GitLab's edit needs the url too
            old.save()
        elif hook is None:
            project.hooks.create(
                {
                    "url": self._hook_url,
                    "pipeline_events": True,
                    "push_events": False,
                    "token": spec.hook_token,
                }
            )
        elif spec.hook_token_new:
            hook.url, hook.token = self._hook_url, spec.hook_token  # GitLab's edit needs the url too
            hook.save()

    def sync_variables(self, project: Project, variables: dict[str, str]) -> None:
        existing = {v.key: v for v in project.variables.list(get_all=True)}
        for key, value in variables.items():
            masked = bool(_MASKABLE.fullmatch(value))
            current = existing.get(key)
            if current is None:
                project.variables.create({"key": key, "value": value, "masked": masked, "protected": True})
            elif current.value != value or current.masked != masked or not current.protected:
                current.value, current.masked, current.protected = value, masked, True
                current.save()
