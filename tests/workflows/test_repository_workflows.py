"""The repository's own workflows (.github/workflows: CI, the self-test, the release) pass
actionlint (with shellcheck) and zizmor, hold least privilege, pin every action by commit,
and their shell steps do what they claim when run here against stand-ins for docker and gh."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.tools import VENV_BIN, tool, tool_env

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW_DIR = ROOT / ".github" / "workflows"
WORKFLOWS = sorted(WORKFLOW_DIR.glob("*.yml"))
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((WORKFLOW_DIR / name).read_text())
    return data


def step(workflow: str, job: str, name: str) -> dict[str, Any]:
    (found,) = [s for s in load(workflow)["jobs"][job]["steps"] if s.get("name") == name]
    return found


def executable(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def test_there_are_the_three_workflows():
    assert {p.name for p in WORKFLOWS} == {"ci.yml", "self-test.yml", "release.yml"}


def test_actionlint_with_shellcheck():
    tool("shellcheck")  # actionlint silently skips run: scripts without it
    done = subprocess.run(
        [tool("actionlint"), "-no-color", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert done.returncode == 0 and done.stdout == "", done.stdout + done.stderr


@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_finds_nothing(persona):
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", f"--persona={persona}", *map(str, WORKFLOWS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "No findings to report" in done.stdout + done.stderr


def test_zizmor_catches_what_these_workflows_avoid(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: push\npermissions: write-all\njobs:\n  a:\n    runs-on: ubuntu-latest\n    steps:\n"
        "      - uses: actions/checkout@v4\n"
    )
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--no-progress", str(bad)],
        capture_output=True,
        text=True,
        env=tool_env(),
    )
    assert done.returncode != 0
    for audit in ("artipacked", "unpinned-uses"):
        assert audit in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("schema", "paths"),
    [
        ("vendor.github-workflows", [str(p) for p in WORKFLOWS]),
        ("vendor.dependabot", [str(ROOT / ".github" / "dependabot.yml")]),
    ],
    ids=["workflows", "dependabot"],
)
def test_schemas(schema, paths):
    done = subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, *paths], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dependabot_watches_actions_docker_and_requirements_weekly():
    config = yaml.safe_load((ROOT / ".github" / "dependabot.yml").read_text())
    updates = {(u["package-ecosystem"], u["directory"]): u["schedule"]["interval"] for u in config["updates"]}
    assert updates == {
        ("github-actions", "/"): "weekly",
        ("docker", "/"): "weekly",
        ("pip", "/requirements"): "weekly",
    }


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_no_permission_by_default_and_each_job_names_its_own(path):
    workflow = yaml.safe_load(path.read_text())
    assert workflow["permissions"] == {}
    for name, job in workflow["jobs"].items():
        assert isinstance(job.get("permissions"), dict) and job["permissions"], name
        assert "write-all" not in str(job["permissions"]), name


def test_id_token_only_where_something_is_signed_or_published():
    jobs = load("release.yml")["jobs"]
    holders = {name for name, job in jobs.items() if job["permissions"].get("id-token") == "write"}
    assert holders == {"pypi", "attest-image"}
    assert jobs["pypi"]["permissions"] == {"id-token": "write"}
    assert jobs["pypi"]["environment"]["name"] == "pypi"
    for other in ("ci.yml", "self-test.yml"):
        assert all("id-token" not in job["permissions"] for job in load(other)["jobs"].values()), other


@pytest.mark.parametrize("path", WORKFLOWS, ids=lambda p: p.name)
def test_actions_pinned_by_commit_with_their_version_and_checkouts_keep_no_credentials(path):
    lines = path.read_text().splitlines()
    uses = [line for line in lines if re.match(r"\s*(- )?uses: ", line)]
    assert uses
    for line in uses:
        ref = line.split("uses:", 1)[1].split("#", 1)[0].strip()
        if ref.startswith("./"):
            continue
        assert PINNED.match(ref), line
        assert re.search(r"# v\d+(\.\d+)*$", line), f"no version comment: {line}"
    for job in yaml.safe_load(path.read_text())["jobs"].values():
        for s in job["steps"]:
            if s.get("uses", "").startswith("actions/checkout@"):
                assert s["with"]["persist-credentials"] is False


def test_ci_runs_the_readme_test_command():
    steps = load("ci.yml")["jobs"]["test"]["steps"]
    assert [s["run"] for s in steps if "run" in s] == ["make test"]
    assert "make test" in (ROOT / "README.md").read_text()


def test_release_runs_on_version_tags_and_pushes_the_version_and_major_tags():
    workflow = load("release.yml")
    trigger = workflow.get("on", workflow.get(True))
    assert trigger == {"push": {"tags": ["v*.*.*"]}}
    image = workflow["jobs"]["image"]["steps"]
    (push,) = [s for s in image if s.get("id") == "push"]
    tags = push["with"]["tags"].splitlines()
    assert tags == [
        "${{ needs.version.outputs.image }}:${{ needs.version.outputs.version }}",
        "${{ needs.version.outputs.image }}:${{ needs.version.outputs.major }}",
    ]
    assert push["with"]["sbom"] is True and push["with"]["push"] is True
    # The smoke test runs on the image before it is pushed.
    names = [s.get("name") for s in image]
    assert names.index("Smoke-test the image") < names.index("Push the image")
    # vX moves only after both the image and the package are out.
    needs = workflow["jobs"]["major-tag"]["needs"]
    assert "pypi" in needs and set(workflow["jobs"]["pypi"]["needs"]) >= {"package", "attest-image"}


def run_version_check(
    tag: str, tmp_path: Path, root: Path = ROOT
) -> tuple[subprocess.CompletedProcess[str], str]:
    script = step(
        "release.yml", "version", "Check the tag against pyproject.toml, action.yml and CHANGELOG.md"
    )
    output = tmp_path / "github_output"
    output.write_text("")
    env = {
        **tool_env(),
        "TAG": tag,
        "REPOSITORY": "firecrest-ci/firecrest-ci",
        "GITHUB_OUTPUT": str(output),
    }
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script["run"]],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
    )
    return done, output.read_text()


def test_release_gate_accepts_this_version_and_names_its_image(tmp_path):
    done, output = run_version_check(f"v{VERSION}", tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    major = VERSION.split(".")[0]
    assert output.split() == [
        f"version={VERSION}",
        f"major={major}",
        "image=ghcr.io/firecrest-ci/firecrest-ci",
    ]


@pytest.mark.parametrize("tag", ["v99.0.0", f"v{VERSION}-rc1", "release-1"])
def test_release_gate_refuses_a_tag_that_is_not_this_version(tag, tmp_path):
    done, output = run_version_check(tag, tmp_path)
    assert done.returncode != 0 and output == ""
    assert "::error" in done.stdout


def test_release_gate_refuses_an_action_yml_that_runs_another_image(tmp_path):
    copy = tmp_path / "repo"
    copy.mkdir()
    for name in ("pyproject.toml", "CHANGELOG.md"):
        (copy / name).write_text((ROOT / name).read_text())
    action = (ROOT / "action.yml").read_text()
    (copy / "action.yml").write_text(action.replace(f':{VERSION}"', ':0.0.1"'))
    done, _ = run_version_check(f"v{VERSION}", tmp_path, root=copy)
    assert done.returncode != 0 and "action.yml does not run" in done.stdout


def fake_docker(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """A `docker` that logs its arguments and succeeds: the steps' own logic, run here."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "docker.log"
    executable(bin_dir / "docker", f'#!/bin/sh\necho "$*" >> "{log}"\n')
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{VENV_BIN}{os.pathsep}{os.environ['PATH']}"}
    return env, log


@pytest.mark.parametrize(
    ("workflow", "job", "name", "image"),
    [
        (
            "self-test.yml",
            "self-test",
            "Build the image from this commit's Dockerfile",
            "firecrest-ci:self-test",
        ),
        ("release.yml", "image", "Smoke-test the image", "firecrest-ci:release"),
    ],
    ids=["self-test", "release"],
)
def test_smoke_tests_run_ci_runner_help_and_find_the_post_entrypoint(tmp_path, workflow, job, name, image):
    env, log = fake_docker(tmp_path)
    script = step(workflow, job, name)["run"]
    done = subprocess.run(["bash", "-e", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    post = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["post-entrypoint"]
    calls = log.read_text().splitlines()
    assert f"run --rm --entrypoint ci-runner {image} --help" in calls
    assert f"run --rm --entrypoint test {image} -x {post}" in calls


def test_self_test_generates_action_yml_with_only_the_image_changed(tmp_path):
    (tmp_path / "action.yml").write_text((ROOT / "action.yml").read_text())
    script = step("self-test.yml", "self-test", "Generate the local action that runs that image")["run"]
    done = subprocess.run(["bash", "-e", "-c", script], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    generated_path = tmp_path / ".github/.tmp/.generated-actions/run-firecrest-ci/action.yml"
    generated = yaml.safe_load(generated_path.read_text())
    original = yaml.safe_load((ROOT / "action.yml").read_text())
    assert generated["runs"]["image"] == "docker://firecrest-ci:self-test"
    generated["runs"]["image"] = original["runs"]["image"]
    assert generated == original
    uses = {s.get("uses", "").split(" ")[0] for s in load("self-test.yml")["jobs"]["self-test"]["steps"]}
    assert "./.github/.tmp/.generated-actions/run-firecrest-ci" in uses


def move_major_tag(tmp_path: Path, *, tag: str, refs: list[str], major_exists: bool) -> tuple[int, list[str]]:
    """Run the major-tag step with a `gh` that answers from `refs` and logs what it is asked to change."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "gh.log"
    listing = "\n".join(refs)
    executable(
        bin_dir / "gh",
        "#!/bin/sh\n"
        'case "$*" in\n'
        f"  *matching-refs*) printf '%s\\n' '{listing}' | tr ' ' '\\n' ;;\n"
        f"  *git/ref/tags/*) exit {0 if major_exists else 1} ;;\n"
        f'  *) echo "$*" >> "{log}" ;;\n'
        "esac\n",
    )
    executable(bin_dir / "git", "#!/bin/sh\necho 1111111111111111111111111111111111111111\n")
    script = step(
        "release.yml", "major-tag", "Point v${{ needs.version.outputs.major }} at the release commit"
    )
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "REPOSITORY": "firecrest-ci/firecrest-ci",
        "MAJOR": "v0",
        "TAG": tag,
    }
    done = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script["run"]], env=env, capture_output=True)
    return done.returncode, log.read_text().splitlines() if log.exists() else []


def test_major_tag_moves_to_the_newest_release(tmp_path):
    refs = ["refs/tags/v0.1.0", "refs/tags/v0.9.0", "refs/tags/v0.10.0"]
    code, calls = move_major_tag(tmp_path, tag="v0.10.0", refs=refs, major_exists=True)
    assert code == 0
    sha = "1" * 40
    assert calls == [
        f"api --method PATCH repos/firecrest-ci/firecrest-ci/git/refs/tags/v0 -f sha={sha} -F force=true"
    ]


def test_major_tag_is_created_by_the_first_release(tmp_path):
    code, calls = move_major_tag(tmp_path, tag="v0.1.0", refs=["refs/tags/v0.1.0"], major_exists=False)
    assert code == 0
    assert calls == [
        f"api --method POST repos/firecrest-ci/firecrest-ci/git/refs -f ref=refs/tags/v0 -f sha={'1' * 40}"
    ]


def test_major_tag_stays_when_an_older_line_gets_a_fix(tmp_path):
    refs = ["refs/tags/v0.9.0", "refs/tags/v0.10.0", "refs/tags/v0.9.1"]
    code, calls = move_major_tag(tmp_path, tag="v0.9.1", refs=refs, major_exists=True)
    assert code == 0 and calls == []
