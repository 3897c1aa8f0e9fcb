"""The GitLab CI/CD component as a catalogue project: workflows/gitlab/ holds templates/, a README
whose inputs table is the spec's, and a .gitlab-ci.yml that tests the component at its own commit and
releases semver tags. The inputs are the Action's, checked by `options`/`regex` the way GitLab checks
them, and each reaches its `ci-runner run` flag: the job script is rendered the two ways GitLab
interpolates inputs and run with bash against a recording `ci-runner`, and, for real, in the GitLab
stand-in against the FirecREST sandbox."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gitlab
import pytest
import yaml

from ci_runner.cli import run_command
from ci_runner.durations import parse_duration
from ci_runner.errors import UsageError
from ci_runner.spec import parse_env
from middleware.managed_gitlab import templates_project
from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox
from sandbox.gitlab.pipelines import interpolate, load_jobs, split_documents
from sandbox.gitlab.server import run_gitlab
from scripts import component_docs
from tests.gitops import git

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "workflows" / "gitlab"
COMPONENT = PROJECT / "templates" / "firecrest-job.yml"
CATALOGUE_CI = PROJECT / ".gitlab-ci.yml"
README = PROJECT / "README.md"
SELF = "$CI_SERVER_FQDN/$CI_PROJECT_PATH/firecrest-job@$CI_COMMIT_SHA"
#: The Action's inputs the component has no use for: GitLab jobs take credentials from CI/CD variables.
CREDENTIAL_INPUTS = {"firecrest_url", "token_url", "client_id", "client_secret"}
DURATION = r"^([0-9]+(\.[0-9]+)?|[0-9]+(:[0-9]{1,2}){1,2}|([0-9]+(\.[0-9]+)?[dhms])+)?$"
EXPECTED_RULES: dict[str, dict[str, Any]] = {
    "system": {"regex": r"^([A-Za-z0-9][A-Za-z0-9._-]*)?$"},
    "working_dir": {"regex": r"^(/[^\n]*)?$"},
    "env": {"regex": r"^[ \t\n]*([A-Za-z_][A-Za-z0-9_]*=[^\n]*(\n[ \t\n]*|$))*$"},
    "staging": {"options": ["git", "upload", "none"]},
    "timeout": {"regex": DURATION},
    "time": {"regex": DURATION},
    "pending_timeout": {"regex": DURATION},
    "cleanup": {"options": ["on-success", "always", "never"]},
}
#: A recording ci-runner: its arguments, NUL-separated, into $FAKE_CI_RUNNER_ARGS.
FAKE_CI_RUNNER = '#!/bin/sh\nprintf \'%s\\0\' "$@" > "$FAKE_CI_RUNNER_ARGS"\n'


def spec() -> dict[str, dict[str, Any]]:
    return component_docs.spec_inputs(COMPONENT.read_text())


def gitlab_matches(pattern: str, value: str) -> bool:
    """GitLab's check: RE2, unanchored, `$` only at the very end (RE2 without (?m)); since
    gitlab-org/gitlab!192082 an empty value passes when the pattern matches the empty string."""
    assert not re.search(r"\(\?[=!<]|\\[1-9]|\\[Zz]", pattern), f"not RE2-safe and simple: {pattern}"
    return re.search(pattern.replace("$", r"\Z"), value) is not None


def validation_errors(given: dict[str, str]) -> list[str]:
    """What GitLab would refuse in an include's inputs: unknown names, options, regex."""
    inputs, errors = spec(), []
    for name, value in given.items():
        rules = inputs.get(name)
        if rules is None:
            errors.append(f"{name}: unknown input")
        elif "options" in rules and value not in rules["options"]:
            errors.append(f"{name}: {value!r} is not one of {rules['options']}")
        elif "regex" in rules and not gitlab_matches(rules["regex"], str(value)):
            errors.append(f"{name}: {value!r} does not match {rules['regex']}")
    return errors


def render_text_mode(given: dict[str, Any]) -> dict[str, Any]:
    """The job as GitLab's text interpolation (and the stand-in) makes it: values pasted into the
    YAML text before it is parsed."""
    text = COMPONENT.read_text()
    header, _ = split_documents(text)
    (job,) = split_documents(interpolate(text, header, given))[1].values()
    return dict(job)


def render_hash_mode(given: dict[str, Any]) -> dict[str, Any]:
    """The job as GitLab's older interpolation makes it: the YAML parsed first, then each string
    interpolated (a string that is one block becomes the value itself)."""
    block = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")
    header, body = split_documents(COMPONENT.read_text())
    values = {name: given.get(name, rules.get("default")) for name, rules in header["inputs"].items()}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        if isinstance(node, str):
            whole = block.fullmatch(node.strip())
            if whole:
                return values[whole.group(1)]
            return block.sub(lambda m: str(values[m.group(1)]), node)
        return node

    (job,) = walk(body).values()
    return dict(job)


RENDERERS = {"text": render_text_mode, "hash": render_hash_mode}


def run_job(
    job: dict[str, Any], workdir: Path, tmp_path: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], list[str] | None]:
    """Run the job's before_script and script with bash (as GitLab's shell runner does, `set -eo
    pipefail`) in `workdir`, with a recording ci-runner first on PATH; the arguments it recorded."""
    fake = tmp_path / "fake-bin"
    fake.mkdir(exist_ok=True)
    (fake / "ci-runner").write_text(FAKE_CI_RUNNER)
    (fake / "ci-runner").chmod(0o755)
    script = "\n".join([*job.get("before_script", []), *job["script"]])
    record = tmp_path / "ci-runner-args"
    done = subprocess.run(
        ["bash", "-c", "set -eo pipefail\n" + script],
        cwd=workdir,
        env={
            "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}",
            "HOME": str(tmp_path),
            "CI_PROJECT_DIR": str(workdir),
            "CI_PROJECT_PATH": "science/hpc-code",
            "CI_REPOSITORY_URL": "https://gitlab-ci-token:job-token@gitlab.example.org/science/hpc-code.git",
            "CI_COMMIT_SHA": "a" * 40,
            "FAKE_CI_RUNNER_ARGS": str(record),
            **{str(k): str(v) for k, v in (job.get("variables") or {}).items()},
            **(env or {}),
        },
        capture_output=True,
        text=True,
        check=False,
    )
    return done, (record.read_text().split("\0")[:-1] if record.exists() else None)


def flags_given(args: list[str]) -> list[tuple[str, str]]:
    assert args[0] == "run", args
    rest = args[1:]
    assert len(rest) % 2 == 0 and all(flag.startswith("--") for flag in rest[::2]), rest
    return list(zip(rest[::2], rest[1::2], strict=True))


def ci_runner_flags() -> set[str]:
    return {opt for param in run_command.params for opt in param.opts if opt.startswith("--")}


# ------------------------------------------------------------------------------------ the layout


def test_the_project_has_the_catalogue_layout_and_the_templates_project_still_finds_the_component():
    assert COMPONENT.is_file() and README.is_file() and CATALOGUE_CI.is_file()
    assert [p.name for p in (PROJECT / "templates").iterdir()] == ["firecrest-job.yml"]
    link = ROOT / "middleware" / "managed_gitlab" / "firecrest-job.yml"
    assert link.resolve() == COMPONENT.resolve()
    assert templates_project.COMPONENT.read_text() == COMPONENT.read_text()


def test_the_published_render_keeps_every_input_and_only_changes_the_image():
    published = component_docs.spec_inputs(templates_project.render("registry.example.org/ci:9"))
    assert published.pop("image")["default"] == "registry.example.org/ci:9"
    original = spec()
    original.pop("image")
    assert published == original


def test_the_job_keeps_its_artifacts_always_with_the_junit_report():
    artifacts = render_text_mode({})["artifacts"]
    assert artifacts == {
        "when": "always",
        "paths": ["firecrest-artifacts/"],
        "reports": {"junit": "firecrest-artifacts/junit/**/*.xml"},
    }


# ------------------------------------------------------------------------------------ the inputs


def test_the_inputs_are_the_actions_without_the_credentials_plus_the_jobs_own():
    action = yaml.safe_load((ROOT / "action.yml").read_text())["inputs"]
    inputs = spec()
    assert set(action) - CREDENTIAL_INPUTS <= set(inputs)
    assert {
        "command",
        "timeout",
        "pending_timeout",
        "artifacts",
        "junit",
        "env",
        "reservation",
        "cleanup",
    } <= set(inputs)
    assert set(inputs) - set(action) == {"time", "stage", "job_name", "image"}
    for name in set(action) & set(inputs) - {"system", "script"}:  # those two fall back differently
        assert inputs[name]["default"] == action[name].get("default", ""), name


def test_each_shaped_input_has_its_options_or_regex_and_the_rest_none():
    inputs = spec()
    for name, rules in inputs.items():
        declared = {key: rules[key] for key in ("options", "regex") if key in rules}
        assert declared == EXPECTED_RULES.get(name, {}), name


def test_every_default_passes_its_own_validation():
    for name, rules in spec().items():
        assert validation_errors({name: rules["default"]}) == [], name


def test_time_is_documented_as_the_deprecated_alias_of_timeout():
    inputs = spec()
    assert inputs["time"]["description"].startswith("Deprecated: use timeout.")
    assert "time input" in inputs["timeout"]["description"]


GOOD_DURATIONS = ["", "90", "1.5", "30m", "1h30m", "2d", "1h30m15s", "01:30:00", "90:00", "0.5h"]
BAD_DURATIONS = ["soon", "30min", "-5m", "1:2:3:4", "1.5.5", "5m; rm -rf /", "5m\nx", "30 minutes"]


@pytest.mark.parametrize("value", GOOD_DURATIONS)
def test_durations_ci_runner_reads_are_accepted(value):
    assert gitlab_matches(DURATION, value)
    if value:
        assert parse_duration(value) > 0


@pytest.mark.parametrize("value", BAD_DURATIONS)
def test_durations_ci_runner_refuses_are_refused_before_the_pipeline_starts(value):
    assert not gitlab_matches(DURATION, value)
    with pytest.raises(UsageError):
        parse_duration(value)


GOOD_ENV = ["", "A=1", "A=1\nB=hello world\n", "  A=1\n\n\tB=2\n", "PATH_X=/a:/b", "A=", "X=a=b", "A=1 B=2"]
BAD_ENV = ["A", "1A=x", "A=1\nbad line", "# comment\nA=1", "A B=1", "-X=1", "A =1"]


@pytest.mark.parametrize("value", GOOD_ENV)
def test_env_accepts_name_value_lines(value):
    assert gitlab_matches(EXPECTED_RULES["env"]["regex"], value)
    parse_env(tuple(value.splitlines()))


@pytest.mark.parametrize("value", BAD_ENV)
def test_env_refuses_what_is_not_name_value_lines(value):
    assert not gitlab_matches(EXPECTED_RULES["env"]["regex"], value)


@pytest.mark.parametrize(
    ("name", "good", "bad"),
    [
        ("system", ["", "daint", "eiger-1", "a.b_c"], ["-x", "da int", "daint\n", "a/b"]),
        ("working_dir", ["", "/", "/scratch/ci run"], ["relative/dir", "~/x", "/a\n/b"]),
        ("staging", ["git", "upload", "none"], ["", "Git", "scp"]),
        ("cleanup", ["on-success", "always", "never"], ["", "on_success", "sometimes"]),
    ],
)
def test_the_other_shaped_inputs_accept_good_values_and_refuse_bad_ones(name, good, bad):
    for value in good:
        assert validation_errors({name: value}) == [], value
    for value in bad:
        assert validation_errors({name: value}) != [], value


def test_every_include_in_the_project_passes_the_validation():
    includes = []
    for path in [CATALOGUE_CI, *sorted((PROJECT / "examples").glob("*.yml"))]:
        for include in yaml.safe_load(path.read_text()).get("include", []):
            includes.append((path.name, include))
    for block in re.findall(r"```yaml\n(.*?)```", README.read_text(), re.S):
        includes.extend(("README.md", include) for include in yaml.safe_load(block).get("include", []))
    assert len(includes) >= 8
    for where, include in includes:
        assert include["component"].endswith(
            ("/firecrest-job@main", "/firecrest-job@1.0.0", "/firecrest-job@<version>", SELF)
        ), where
        assert validation_errors(include.get("inputs", {})) == [], (where, include)


# ------------------------------------------------------------------------- inputs to ci-runner flags


def test_each_input_names_a_ci_runner_run_flag_that_the_job_script_passes():
    script = render_text_mode({})["script"][0]
    for name in spec():
        flag = component_docs.flag(name)
        if flag is None:
            continue
        assert flag in ci_runner_flags(), name
        assert f" {flag} " in script, name


@pytest.mark.parametrize("mode", RENDERERS)
@pytest.mark.parametrize(
    ("given", "timeout"),
    [
        ({}, "1h"),
        ({"time": "45m"}, "45m"),
        ({"timeout": "", "time": "2h"}, "2h"),
        ({"timeout": "10m", "time": "45m"}, "10m"),
        ({"timeout": "90"}, "90"),
    ],
)
def test_time_still_sets_the_timeout_when_timeout_is_empty(mode, given, timeout, tmp_path):
    done, args = run_job(RENDERERS[mode](given), tmp_path, tmp_path)
    assert done.returncode == 0, done.stderr
    assert dict(flags_given(args))["--timeout"] == timeout


@pytest.mark.parametrize("mode", RENDERERS)
def test_every_input_reaches_its_flag(mode, tmp_path):
    given = {
        "system": "eiger",
        "command": """cd build && echo 'it said "hi"' # not a comment to the YAML""",
        "account": "proj42",
        "partition": "debug",
        "reservation": "maint",
        "working_dir": "/scratch/ci run",
        "env": "GREETING=hello world\nOMP_NUM_THREADS=4\n  PATHS=/a:/b\n",
        "staging": "upload",
        "timeout": "1h30m",
        "pending_timeout": "20m",
        "artifacts": "out/*.txt\nlogs/**",
        "junit": "reports/*.xml build/ctest.xml",
        "cleanup": "never",
    }
    assert validation_errors(given) == []
    done, args = run_job(RENDERERS[mode](given), tmp_path, tmp_path, {"FIRECREST_SYSTEM": "not-this-one"})
    assert done.returncode == 0, done.stderr
    flags = flags_given(args)
    assert sorted(flags) == sorted(
        [
            ("--system", "eiger"),
            ("--command", given["command"]),
            ("--account", "proj42"),
            ("--partition", "debug"),
            ("--reservation", "maint"),
            ("--working-dir", "/scratch/ci run"),
            ("--env", "GREETING=hello world"),
            ("--env", "OMP_NUM_THREADS=4"),
            ("--env", "PATHS=/a:/b"),
            ("--staging", "upload"),
            ("--cleanup", "never"),
            ("--timeout", "1h30m"),
            ("--pending-timeout", "20m"),
            ("--artifacts", "out/*.txt"),
            ("--artifacts", "logs/**"),
            ("--junit", "reports/*.xml\nbuild/ctest.xml"),
            ("--repo-url", "https://gitlab-ci-token:job-token@gitlab.example.org/science/hpc-code.git"),
            ("--sha", "a" * 40),
            ("--repository", "science/hpc-code"),
            ("--workspace", str(tmp_path)),
        ]
    )


@pytest.mark.parametrize("mode", RENDERERS)
def test_without_inputs_the_script_and_the_projects_variables_are_used(mode, tmp_path):
    done, args = run_job(
        RENDERERS[mode]({}), tmp_path, tmp_path, {"FIRECREST_SYSTEM": "daint", "FIRECREST_ACCOUNT": "p1"}
    )
    assert done.returncode == 0, done.stderr
    flags = dict(flags_given(args))
    assert flags["--system"] == "daint" and flags["--account"] == "p1"
    assert flags["--script"] == "ci/hpc-job.sh" and "--command" not in flags
    assert "--env" not in flags and "--artifacts" not in flags
    assert (flags["--staging"], flags["--cleanup"], flags["--pending-timeout"]) == ("git", "on-success", "")


# ---------------------------------------------------------------------------------- .gitlab-ci.yml


def catalogue_ci() -> dict[str, Any]:
    documents = [d for d in yaml.safe_load_all(CATALOGUE_CI.read_text()) if d is not None]
    assert len(documents) == 1
    return documents[0]


def test_the_catalogue_ci_tests_the_component_at_its_own_commit_and_releases_semver_tags():
    ci = catalogue_ci()
    assert ci["stages"].index("test") < ci["stages"].index("release")
    names = [include["inputs"]["job_name"] for include in ci["include"]]
    assert all(include["component"] == SELF for include in ci["include"])
    assert names == ["component-dry-run", "component-dry-run-time", "component-sandbox"]
    assert ci["component-sandbox"]["rules"][0]["if"].startswith("$FIRECREST_URL")
    release = ci["release"]
    assert release["stage"] == "release"
    assert release["release"]["tag_name"] == "$CI_COMMIT_TAG"
    (rule,) = release["rules"]
    assert rule == {"if": r"$CI_COMMIT_TAG =~ /^\d+\.\d+\.\d+$/"}
    semver = rule["if"].split("=~", 1)[1].strip().strip("/")
    assert [
        t for t in ["1.2.3", "10.0.1", "v1.2.3", "1.2", "1.2.3-rc1", "1.2.3.4"] if gitlab_matches(semver, t)
    ] == [
        "1.2.3",
        "10.0.1",
    ]
    assert (PROJECT / "tests" / "hpc-job.sh").is_file()


def dry_run_job(name: str, render: Any) -> dict[str, Any]:
    """A dry-run job of .gitlab-ci.yml as GitLab makes it: the component's job, rendered with the
    include's inputs, deep-merged with the job's local keys."""
    ci = catalogue_ci()
    (include,) = [i for i in ci["include"] if i["inputs"]["job_name"] == name]
    job = render(include["inputs"])
    for key, value in ci[name].items():
        job[key] = {**job[key], **value} if isinstance(value, dict) and key in job else value
    return job


@pytest.mark.parametrize("mode", RENDERERS)
@pytest.mark.parametrize("name", ["component-dry-run", "component-dry-run-time"])
def test_the_dry_runs_pass_with_the_stand_in_ci_runner_and_fail_when_a_flag_is_missing(name, mode, tmp_path):
    project = tmp_path / "project"
    shutil.copytree(PROJECT, project)
    job = dry_run_job(name, RENDERERS[mode])
    assert "FIRECREST_CI_DRY_RUN_EXPECT" in job["variables"] and "FIRECREST_CI_INPUT_TIME" in job["variables"]
    done, recorded = run_job(job, project, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert recorded is None  # the dry run's ci-runner ran, not the recording one
    assert "dry run: every expected flag was given" in done.stdout
    assert "job-token" not in done.stdout
    job["variables"]["FIRECREST_CI_DRY_RUN_EXPECT"] += "--timeout 99h\n"
    failed, _ = run_job(job, project, tmp_path)
    assert failed.returncode == 1
    assert "dry run: missing '--timeout 99h'" in failed.stderr


# ------------------------------------------------------------------------------------ the README


def test_the_readme_inputs_table_is_the_specs():
    readme = README.read_text()
    assert component_docs.render(readme, COMPONENT.read_text()) == readme
    assert component_docs.main(["--check"]) == 0
    rows = re.findall(r"^\| `([a-z_]+)` \|", readme, re.M)
    assert rows == list(spec())


def test_the_docs_script_finds_a_stale_table_and_rewrites_it(tmp_path):
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text().replace("| `pending_timeout` |", "| `pending` |"))
    assert component_docs.main(["--check", "--readme", str(stale)]) == 1
    assert component_docs.main(["--readme", str(stale)]) == 0
    assert stale.read_text() == README.read_text()
    broken = tmp_path / "broken.md"
    broken.write_text("no markers\n")
    assert component_docs.main(["--check", "--readme", str(broken)]) == 2


def test_the_readme_states_semver_releases_and_the_setup_without_the_middleware():
    readme = README.read_text()
    assert "Releases are semver tags" in readme
    section = readme.split("### A GitLab project of your own, without the middleware", 1)[1]
    for variable in ("FIRECREST_URL", "AUTH_TOKEN_URL", "FIRECREST_CLIENT_ID", "FIRECREST_CLIENT_SECRET"):
        assert variable in section
    assert "masked" in section and "component: $CI_SERVER_FQDN/" in section
    main_readme = (ROOT / "README.md").read_text()
    assert "(workflows/gitlab/README.md)" in main_readme


# ------------------------------------------------------------------- for real, in the GitLab stand-in


@pytest.fixture
def stand_in(tmp_path, monkeypatch):
    """The component published as firecrest-ci/templates, and a project with FirecREST credentials."""
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    with (
        run_sandbox(SandboxConfig(root=tmp_path / "hpc", pending_seconds=0.1)) as firecrest,
        run_gitlab(tmp_path / "gitlab") as handle,
    ):
        client = gitlab.Gitlab(handle.url, private_token=handle.token)
        group = client.groups.create({"name": "firecrest-ci", "path": "firecrest-ci"})

        def push(name: str, project: Any, files: dict[str, str]) -> str:
            work = tmp_path / name
            work.mkdir()
            git(work, "init", "-q", "-b", "main")
            for path, text in files.items():
                (work / path).parent.mkdir(parents=True, exist_ok=True)
                (work / path).write_text(text)
            git(work, "add", ".")
            git(work, "commit", "-qm", "update")
            url = project.http_url_to_repo.replace("http://", f"http://oauth2:{handle.token}@")
            git(work, "push", "-q", "--force", url, "HEAD:main")
            return git(work, "rev-parse", "HEAD")

        templates = client.projects.create(
            {"name": "templates", "path": "templates", "namespace_id": group.id}
        )
        push("templates", templates, {"templates/firecrest-job.yml": COMPONENT.read_text()})
        project = client.projects.create(
            {"name": "code", "path": "code", "namespace_id": group.id, "visibility": "public"}
        )
        for key, value in {**firecrest.env(), "FIRECREST_SYSTEM": "cluster"}.items():
            project.variables.create({"key": key, "value": value, "masked": len(value) >= 8})

        def pipeline(files: dict[str, str]) -> tuple[str, str]:
            push(f"code-{len(list(tmp_path.glob('code-*')))}", project, files)
            created = project.pipelines.create({"ref": "main"})
            deadline = time.monotonic() + 90
            while (created := project.pipelines.get(created.id)).status not in (
                "success",
                "failed",
                "canceled",
            ):
                assert time.monotonic() < deadline, created.status
                time.sleep(0.2)
            trace = project.jobs.get(created.jobs.list()[0].id, lazy=True).trace().decode()
            assert firecrest.client_secret not in trace
            return created.status, trace

        yield pipeline


def entrypoint(inputs: str) -> str:
    return (
        "stages: [test]\ninclude:\n  - component: $CI_SERVER_FQDN/firecrest-ci/templates/firecrest-job@main\n"
        "    inputs:\n" + "".join(f"      {line}\n" for line in inputs.splitlines())
    )


@pytest.mark.slow
def test_for_real_env_artifacts_and_the_limits_reach_the_hpc_job(stand_in):
    status, trace = stand_in(
        {
            ".gitlab-ci.yml": entrypoint(
                "script: ci/job.sh\nstaging: upload\ntimeout: 2m\npending_timeout: 1m\ncleanup: always\n"
                "env: |\n  GREETING=hello world\n  MODE=ci\nartifacts: |\n  out/*.txt\n  none/*"
            ),
            "ci/job.sh": '#!/bin/bash\nmkdir -p out\necho "$GREETING/$MODE" | tee out/said.txt\n',
        }
    )
    assert status == "success", trace
    assert "hello world/ci" in trace
    assert re.search(r"copied 1 of 1 matching artifact\(s\) to \S+/firecrest-artifacts", trace), trace


@pytest.mark.slow
def test_for_real_the_deprecated_time_still_limits_the_hpc_job(stand_in):
    status, trace = stand_in(
        {
            ".gitlab-ci.yml": entrypoint("script: ci/job.sh\nstaging: upload\ntime: 3s"),
            "ci/job.sh": "#!/bin/bash\nsleep 60\n",
        }
    )
    assert status == "failed", trace
    assert "exceeded the runner timeout of 00:00:03 and was cancelled" in trace


def test_the_stand_in_parses_the_component_like_gitlab_with_every_input_given():
    given = {name: rules["default"] for name, rules in spec().items()}
    text = entrypoint("\n".join(f"{name}: {value!r}" for name, value in given.items()))
    stages, (job,) = load_jobs(text, lambda _ref: COMPONENT.read_text(), itertools.count(1))
    assert (stages, job.name, job.stage) == (["test"], "hpc", "test")
