"""The OpenAPI 3.1 description of the JSON API, served at `/openapi.json`.

Request schemas come from the same pydantic models that validate requests,
so the description cannot drift from what the API accepts; a test checks
that every route is described and every described path is routed.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify
from pydantic import BaseModel

from middleware.registry.schemas import PipelineCreate, PipelineUpdate, RepositoryCreate, RepositoryUpdate

bp = Blueprint("openapi", __name__)

_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "string"}, "details": {"type": "array", "items": {"type": "object"}}},
    "required": ["error"],
}
_PIPELINE = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "name": {"type": "string"},
        "entrypoint": {"type": "string"},
        "system": {"type": "string"},
        "trusted_users": {"type": ["array", "null"], "items": {"type": "string"}},
        "branches": {"type": ["array", "null"], "items": {"type": "string"}},
        "tags": {"type": "array", "items": {"type": "string"}},
        "cancel_superseded": {"type": "boolean"},
        "variables": {"type": "array", "items": {"type": "string"}, "description": "names only"},
        "allowed_variables": {
            "type": ["array", "null"],
            "items": {"type": "string"},
            "description": "the only variable names a comment or API trigger may set; null: any not reserved",
        },
    },
    "required": ["id", "name", "entrypoint", "system"],
}
_REPOSITORY = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "provider": {"type": "string"},
        "full_name": {"type": "string"},
        "clone_url": {"type": "string"},
        "firecrest_client_id": {"type": "string"},
        "default_account": {"type": ["string", "null"]},
        "trusted_users": {"type": "array", "items": {"type": "string"}},
        "branches": {"type": "array", "items": {"type": "string"}},
        "private": {"type": "boolean", "description": "the source's visibility, read from GitHub"},
        "webhook_url": {"type": "string"},
        "webhook_secret": {"type": "string", "description": "only when generated: create, rotate"},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
        "pipelines": {"type": "array", "items": {"$ref": "#/components/schemas/Pipeline"}},
    },
    "required": ["id", "full_name", "clone_url", "webhook_url", "pipelines"],
}
_RUN = {
    "type": "object",
    "properties": {
        "id": {"type": "integer"},
        "pipeline": {"type": "string"},
        "sha": {"type": "string"},
        "ref": {"type": "string"},
        "trigger": {"type": "string"},
        "pr_number": {"type": ["integer", "null"]},
        "state": {"type": "string"},
        "reason": {"type": "string"},
        "variables": {"type": "array", "items": {"type": "string"}},
        "gitlab_pipeline_id": {"type": ["integer", "null"]},
        "gitlab_pipeline_url": {"type": ["string", "null"]},
        "error": {"type": ["string", "null"]},
        "created_at": {"type": "string"},
        "updated_at": {"type": "string"},
    },
    "required": ["id", "pipeline", "sha", "state"],
}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {
        "required": True,
        "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}},
    }


def _errors(*codes: int) -> dict[str, Any]:
    texts = {
        400: "Bad request",
        401: "Unauthorized",
        404: "Not found",
        409: "Conflict",
        422: "Invalid fields",
        502: "Source unavailable",
        503: "Unavailable",
    }
    return {str(c): _json({"$ref": "#/components/schemas/Error"}, texts[c]) for c in codes}


REPO_ID = {"name": "repo_id", "in": "path", "required": True, "schema": {"type": "integer"}}
PIPELINE_NAME = {
    "name": "name",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": r"^[^\s/]+$"},
}


def build_spec() -> dict[str, Any]:
    repo_ref = {"$ref": "#/components/schemas/Repository"}
    pipe_ref = {"$ref": "#/components/schemas/Pipeline"}
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "firecrest-ci middleware",
            "version": "0.1.0",
            "description": "Registrations, webhook intake and API triggers of the CI/CD Ext middleware.",
        },
        "components": {
            "securitySchemes": {
                "admin": {"type": "http", "scheme": "bearer"},
                "repository": {
                    "type": "http",
                    "scheme": "basic",
                    "description": "repository_id:webhook_secret",
                },
            },
            "schemas": {
                "Error": _ERROR,
                "Pipeline": _PIPELINE,
                "Repository": _REPOSITORY,
                "Run": _RUN,
                **{
                    m.__name__: m.model_json_schema(ref_template="#/components/schemas/{model}")
                    for m in (RepositoryCreate, RepositoryUpdate, PipelineCreate, PipelineUpdate)
                },
            },
        },
        "security": [{"admin": []}],
        "paths": {
            "/api/repositories": {
                "get": {
                    "summary": "List registered repositories",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"repositories": {"type": "array", "items": repo_ref}},
                            }
                        ),
                        **_errors(401),
                    },
                },
                "post": {
                    "summary": "Register a repository; the answer shows its webhook secret once",
                    "requestBody": _body(RepositoryCreate),
                    "responses": {"201": _json(repo_ref, "Created"), **_errors(400, 401, 409, 422)},
                },
            },
            "/api/repositories/{repo_id}": {
                "parameters": [REPO_ID],
                "get": {
                    "summary": "Read a repository",
                    "responses": {"200": _json(repo_ref), **_errors(401, 404)},
                },
                "patch": {
                    "summary": "Update a repository (secrets are replaced, never shown)",
                    "requestBody": _body(RepositoryUpdate),
                    "responses": {"200": _json(repo_ref), **_errors(400, 401, 404, 422)},
                },
                "delete": {
                    "summary": "Delete a repository and its pipelines",
                    "responses": {"204": {"description": "Deleted"}, **_errors(401, 404)},
                },
            },
            "/api/repositories/{repo_id}/pipelines": {
                "parameters": [REPO_ID],
                "get": {
                    "summary": "List a repository's pipelines",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {"pipelines": {"type": "array", "items": pipe_ref}},
                            }
                        ),
                        **_errors(401, 404),
                    },
                },
                "post": {
                    "summary": "Add a pipeline",
                    "requestBody": _body(PipelineCreate),
                    "responses": {"201": _json(pipe_ref, "Created"), **_errors(400, 401, 404, 409, 422)},
                },
            },
            "/api/repositories/{repo_id}/pipelines/{name}": {
                "parameters": [REPO_ID, PIPELINE_NAME],
                "get": {
                    "summary": "Read a pipeline",
                    "responses": {"200": _json(pipe_ref), **_errors(401, 404)},
                },
                "patch": {
                    "summary": "Update a pipeline",
                    "requestBody": _body(PipelineUpdate),
                    "responses": {"200": _json(pipe_ref), **_errors(400, 401, 404, 422)},
                },
                "delete": {
                    "summary": "Delete a pipeline",
                    "responses": {"204": {"description": "Deleted"}, **_errors(401, 404)},
                },
            },
            "/api/repositories/{repo_id}/runs": {
                "parameters": [REPO_ID],
                "get": {
                    "summary": "The repository's newest runs",
                    "responses": {
                        "200": _json(
                            {
                                "type": "object",
                                "properties": {
                                    "runs": {"type": "array", "items": {"$ref": "#/components/schemas/Run"}}
                                },
                            }
                        ),
                        **_errors(401, 404),
                    },
                },
            },
            "/api/runs/{run_id}/cancel": _run_action("Cancel the run's pipeline; the run ends canceled"),
            "/api/runs/{run_id}/retry": _run_action("Retry the failed jobs of an ended run's pipeline"),
            "/api/runs/{run_id}/restart": _run_action("Start the next attempt of an ended run", created=True),
            "/api/trigger": {
                "post": {
                    "summary": "Trigger a pipeline (ref: main | pr:N | tag:T | sha:S)",
                    "security": [{"repository": []}],
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "properties": {
                                        "ref": {"type": "string"},
                                        "pipeline": {"type": "string"},
                                        "variables": {
                                            "type": "object",
                                            "additionalProperties": {"type": "string"},
                                        },
                                    },
                                    "required": ["ref"],
                                }
                            },
                            "application/yaml": {"schema": {"type": "string"}},
                        },
                    },
                    "responses": {"202": _json({"type": "object"}, "Queued"), **_errors(400, 401, 422, 502)},
                }
            },
            "/webhooks/github": _source_webhook(
                "GitHub webhook deliveries (X-Hub-Signature-256 with the repository's secret); "
                "GitHub's path from before the other providers, the same as /webhooks/source/github"
            ),
            "/webhooks/source/{provider}": _source_webhook(
                "Source webhook deliveries: github (X-Hub-Signature-256), gitlab (X-Gitlab-Token), "
                "bitbucket (X-Hub-Signature, HMAC-SHA256), each with the registration's secret",
                provider=True,
            ),
            "/webhooks/managed-gitlab/pipeline": _pipeline_hook("The managed GitLab's pipeline hooks"),
            "/webhooks/gitlab": _pipeline_hook(
                "The managed GitLab's pipeline hooks, at the path mirror projects had before"
            ),
            "/healthz": {
                "get": {
                    "summary": "Liveness",
                    "security": [],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
            "/readyz": {
                "get": {
                    "summary": "Readiness: database and broker reachable",
                    "security": [],
                    "responses": {
                        "200": _json({"type": "object"}),
                        "503": _json({"type": "object"}, "Not ready"),
                    },
                }
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "security": [],
                    "responses": {"200": {"description": "OK", **text}},
                }
            },
            "/openapi.json": {
                "get": {
                    "summary": "This document",
                    "security": [],
                    "responses": {"200": _json({"type": "object"})},
                }
            },
        },
    }


@bp.get("/openapi.json")
def openapi_json() -> Response:
    return jsonify(build_spec())


def _source_webhook(summary: str, *, provider: bool = False) -> dict[str, Any]:
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    operation: dict[str, Any] = {
        "summary": summary,
        "security": [],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}},
                "application/x-www-form-urlencoded": {
                    "schema": {"type": "object", "properties": {"payload": {"type": "string"}}}
                },
            },
        },
        "responses": {
            code: {"description": d, **text}
            for code, d in {
                "200": "pong or duplicate",
                "202": "queued or nothing to run",
                "400": "malformed",
                "401": "bad signature or token",
                "404": "unregistered, or no such provider",
                "413": "too large",
                "503": "could not store, or the source could not be asked; redeliver",
            }.items()
        },
    }
    if provider:
        operation["parameters"] = [
            {
                "name": "provider",
                "in": "path",
                "required": True,
                "schema": {"type": "string", "enum": ["github", "gitlab", "bitbucket"]},
            }
        ]
    return {"post": operation}


def _run_action(summary: str, *, created: bool = False) -> dict[str, Any]:
    """A run action (middleware.registry.runs_api), recorded as done by `operator`."""
    outcome = {
        "type": "object",
        "properties": {
            "run_id": {"type": "integer"},
            "action": {"type": "string", "enum": ["cancel", "retry", "restart"]},
            "message": {"type": "string"},
            "run_url": {"type": "string"},
            "new_run_id": {"type": "integer", "description": "restart: the new attempt's run"},
            "new_run_url": {"type": "string"},
        },
        "required": ["run_id", "action", "message"],
    }
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    answer = {"201": _json(outcome, "Created")} if created else {"200": _json(outcome)}
    return {
        "post": {
            "summary": summary,
            "parameters": [run_id],
            "responses": {**answer, **_errors(401, 404, 409, 502, 503)},
        }
    }


def _pipeline_hook(summary: str) -> dict[str, Any]:
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    return {
        "post": {
            "summary": f"{summary} (X-Gitlab-Token: the mirror project's own)",
            "security": [],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
            "responses": {
                code: {"description": d, **text}
                for code, d in {
                    "202": "accepted",
                    "400": "malformed",
                    "401": "bad token",
                    "503": "queue down",
                }.items()
            },
        }
    }
