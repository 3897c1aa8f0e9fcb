"""deploy/compose.yaml is valid against the Compose specification's schema and has the shape the
operator documentation promises. No container engine runs here, so it is validated, not run."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.tools import tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
#: Settings that hold a secret: never a value in the environment, always a *_FILE.
SECRET_NAMES = re.compile(r"(TOKEN|SECRET|KEY|PASSWORD|DATABASE_URL)$")


def check_schema(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        env=tool_env(),
        timeout=60,
    )


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_is_valid_against_the_compose_specification():
    done = check_schema(COMPOSE)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_refuses_a_broken_file(tmp_path):
    broken = yaml.safe_load(COMPOSE.read_text())
    broken["services"]["web"]["healthcheck"]["interval"] = ["30s"]  # not a duration
    broken["services"]["redis"]["restart_policy"] = "always"  # no such key
    path = tmp_path / "compose.yaml"
    path.write_text(yaml.safe_dump(broken))
    done = check_schema(path)
    assert done.returncode != 0
    assert "restart_policy" in done.stdout + done.stderr


def test_every_service_is_health_checked_or_a_one_shot_the_others_wait_for(compose):
    services = compose["services"]
    assert set(services) == {"nginx", "migrate", "web", "worker", "redis", "postgres"}
    for name, service in services.items():
        check = service.get("healthcheck", {})
        if name == "migrate":
            assert service["restart"] == "no" and check == {"disable": True}
            continue
        assert check.get("test") and not check.get("disable"), name
    for name in ("web", "worker"):
        after = services[name]["depends_on"]
        assert after["migrate"] == {"condition": "service_completed_successfully"}
        assert after["postgres"] == after["redis"] == {"condition": "service_healthy"}
    assert services["nginx"]["depends_on"] == {"web": {"condition": "service_healthy"}}


def test_one_image_chosen_by_command(compose):
    services = compose["services"]
    middleware = {name: services[name] for name in ("migrate", "web", "worker")}
    assert {s["image"] for s in middleware.values()} == {"ghcr.io/firecrest-ci/firecrest-ci-middleware:0"}
    assert {s["build"]["dockerfile"] for s in middleware.values()} == {"Dockerfile.middleware"}
    assert (COMPOSE.parent / middleware["web"]["build"]["context"] / "Dockerfile.middleware").is_file()
    assert [s["command"][0] for s in middleware.values()] == ["migrate", "web", "worker"]
    assert "beat" not in services  # every worker runs the dispatcher


def test_redis_keeps_an_append_only_file_synced_every_second(compose):
    command = compose["services"]["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "everysec"
    assert compose["services"]["redis"]["volumes"] == ["redis-data:/data"]


def test_named_volumes_for_all_state(compose):
    assert set(compose["volumes"]) == {"middleware-data", "redis-data", "postgres-data"}
    for service in compose["services"].values():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            assert source in compose["volumes"] or source.startswith("./nginx/"), volume


def test_secrets_only_through_files(compose):
    declared = compose["secrets"]
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        given = set(service.get("secrets", []))
        for key, value in environment.items():
            if key.endswith("_FILE") or key.startswith("FIRECREST_CI_TLS_CERTIFICATE"):
                secret = str(value).removeprefix("/run/secrets/")
                assert str(value).startswith("/run/secrets/") and secret in given, (name, key)
            else:
                assert not SECRET_NAMES.search(key), f"{name}: {key} is a secret in the environment"
        assert given <= set(declared), name
    for secret in declared.values():
        assert secret["file"].startswith(("./secrets/", "./tls/"))
    # A deployment's secrets never reach an image build.
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {"deploy/secrets", "deploy/tls"} <= ignored


def test_nginx_runs_the_tested_configuration_with_tls(compose):
    nginx = compose["services"]["nginx"]
    mounts = {v.split(":")[1]: (COMPOSE.parent / v.split(":")[0]).resolve() for v in nginx["volumes"]}
    assert mounts == {
        "/etc/nginx/templates": DEPLOY / "nginx" / "templates",
        "/etc/nginx/snippets": DEPLOY / "nginx" / "snippets",
        # The image's welcome server on port 80 is replaced by a file that serves nothing.
        "/etc/nginx/conf.d/default.conf": DEPLOY / "nginx" / "compose" / "default.conf",
    }
    default = (DEPLOY / "nginx" / "compose" / "default.conf").read_text()
    assert all(line.startswith("#") for line in default.splitlines() if line.strip())
    placeholders = set()
    for template in (DEPLOY / "nginx" / "templates").glob("*.template"):
        placeholders |= set(re.findall(r"\$\{(FIRECREST_CI_\w+)\}", template.read_text()))
    assert placeholders == {k for k in nginx["environment"] if k.startswith("FIRECREST_CI_")}
    assert nginx["ports"] == ["443:443"] and nginx["environment"]["FIRECREST_CI_TLS_LISTEN"] == "443"
    # The plain-HTTP server is the container's own, for the health check only.
    listen = nginx["environment"]["FIRECREST_CI_LISTEN"]
    assert listen.startswith("127.0.0.1:") and listen.split(":")[1] in " ".join(nginx["healthcheck"]["test"])


def test_the_example_environment_fills_every_required_variable(compose):
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = dict(
        line.split("=", 1)
        for line in (DEPLOY / "compose.env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert required and required <= set(example)
    assert not any(SECRET_NAMES.search(key) for key in example)
