"""The served OpenAPI description matches the routes, and the API holds up against it."""

from __future__ import annotations

import re

import schemathesis
from hypothesis import HealthCheck, given, settings
from openapi_spec_validator import validate

from middleware.openapi import build_spec
from tests.middleware.conftest import admin


def flask_paths(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        blueprint = app.blueprints.get(rule.endpoint.split(".")[0])
        if blueprint is not None and blueprint.import_name.startswith("middleware.web"):
            continue  # the pages (HTML), not the JSON API
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def spec_paths(spec) -> set[tuple[str, str]]:
    return {
        (path, method)
        for path, item in spec["paths"].items()
        for method in item
        if method in ("get", "post", "put", "patch", "delete")
    }


def test_spec_is_valid_openapi(client):
    spec = client.get("/openapi.json").get_json()
    validate(spec)


def test_every_route_is_described_and_every_description_routed(app):
    assert flask_paths(app) == spec_paths(build_spec())


def test_schemathesis_finds_no_server_errors(app, registered):
    schema = schemathesis.openapi.from_dict(build_spec())
    failures = []
    statuses: list[int] = []

    def exercise(op) -> None:
        @settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
        @given(case=op.as_strategy())
        def run(case):
            if "repo_id" in case.path_parameters:
                case.path_parameters["repo_id"] = registered["id"]
            response = case.call(app=app, headers=admin())
            statuses.append(response.status_code)
            if response.status_code >= 500:
                failures.append((op.method, op.path, response.status_code))

        run()

    for operation in schema.get_all_operations():
        op = operation.ok()
        if op.path.startswith("/api/repositories"):
            exercise(op)
    assert failures == []
    assert len(statuses) >= 30, statuses  # the API really was exercised
    assert {200, 201, 204} & set(statuses)  # including successful calls
    assert {400, 404, 422} & set(statuses)
