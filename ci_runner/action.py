"""The GitHub Action's main and post steps, driven by `INPUT_*` and `GITHUB_*`.

Inputs map one to one onto the CLI's flags (see action.yml); the defaults
GitHub knows (repository URL, SHA, workspace, run id) fill the rest.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ci_runner.client import (
    ENV_CLIENT_ID,
    ENV_CLIENT_SECRET,
    ENV_TOKEN_URL,
    ENV_URL,
    ApiError,
    Credentials,
    Gateway,
)
from ci_runner.errors import EXIT_OK, Interrupted, RunnerError
from ci_runner.github import (
    GitHubReporter,
    annotate_tests,
    outputs_for,
    render_summary,
    save_state,
    write_outputs,
    write_summary,
)
from ci_runner.redact import Redactor
from ci_runner.runner import RunOptions, cancel, run
from ci_runner.spec import RawInputs, build_spec
from ci_runner.states import is_terminal

#: Every input action.yml declares; tests check the two lists agree.
ACTION_INPUTS = (
    "system",
    "script",
    "command",
    "account",
    "partition",
    "reservation",
    "working_dir",
    "env",
    "staging",
    "timeout",
    "pending_timeout",
    "artifacts",
    "junit",
    "firecrest_url",
    "token_url",
    "client_id",
    "client_secret",
    "cleanup",
)
ACTION_OUTPUTS = ("job_id", "state", "exit_code", "output_path", "working_dir", "tests")
_CREDENTIAL_INPUTS = {
    ENV_URL: "firecrest_url",
    ENV_TOKEN_URL: "token_url",
    ENV_CLIENT_ID: "client_id",
    ENV_CLIENT_SECRET: "client_secret",
}


def read_input(env: Mapping[str, str], name: str) -> str:
    return env.get(f"INPUT_{name.upper()}", "").strip()


def _lines(value: str) -> tuple[str, ...]:
    return tuple(line for line in value.splitlines() if line.strip())


def raw_inputs(env: Mapping[str, str]) -> RawInputs:
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    repository = env.get("GITHUB_REPOSITORY", "")
    run_id = "-".join(p for p in (env.get("GITHUB_RUN_ID", ""), env.get("GITHUB_RUN_ATTEMPT", "")) if p)
    return RawInputs(
        system=read_input(env, "system"),
        script=read_input(env, "script"),
        command=read_input(env, "command"),
        account=read_input(env, "account"),
        partition=read_input(env, "partition"),
        reservation=read_input(env, "reservation"),
        working_dir=read_input(env, "working_dir"),
        env=_lines(env.get("INPUT_ENV", "")),
        staging=read_input(env, "staging"),
        repo_url=f"{server}/{repository}.git" if repository else "",
        sha=env.get("GITHUB_SHA", ""),
        cleanup=read_input(env, "cleanup"),
        timeout=read_input(env, "timeout"),
        pending_timeout=read_input(env, "pending_timeout"),
        artifacts=_lines(env.get("INPUT_ARTIFACTS", "")),
        junit=_lines(env.get("INPUT_JUNIT", "")),
        workspace=env.get("GITHUB_WORKSPACE", "") or os.getcwd(),
        repository=repository,
        run_id=run_id,
    )


def credentials(env: Mapping[str, str]) -> Credentials:
    """Inputs first, then the FirecREST example variable names from the environment."""
    return Credentials.from_values(
        {name: read_input(env, inp) or env.get(name, "") for name, inp in _CREDENTIAL_INPUTS.items()}
    )


def options_from(env: Mapping[str, str]) -> RunOptions:
    return RunOptions(
        request_timeout=float(env.get("FIRECREST_CI_REQUEST_TIMEOUT") or 30),
        retry_timeout=float(env.get("FIRECREST_CI_RETRY_TIMEOUT") or 120),
    )


def main(env: Mapping[str, str] | None = None) -> int:
    """The Action's entrypoint: run, then outputs, summary and annotations."""
    env = os.environ if env is None else env
    redactor = Redactor()
    redactor.add(read_input(env, "client_secret") or env.get(ENV_CLIENT_SECRET))
    reporter = GitHubReporter(redactor)
    state_file = env.get("GITHUB_STATE")
    try:
        spec = build_spec(raw_inputs(env))
        creds = credentials(env)
        result = run(
            spec,
            creds,
            reporter,
            options=options_from(env),
            on_submitted=lambda job_id: save_state(state_file, {"job_id": job_id, "system": spec.system}),
            on_finished=lambda: save_state(state_file, {"job_finished": "true"}),
        )
    except RunnerError as error:
        reporter.error(error.message)
        return error.exit_code
    except Interrupted as interrupt:
        reporter.error("the run was interrupted; the HPC job was cancelled")
        return 128 + interrupt.signum
    outcome = result.outcome
    tests = result.tests
    if tests is not None:
        reporter.info(tests.tally_line())
        # Failing tests are shown, never judged: the job's state and exit code decide the step.
        annotate_tests(reporter, tests, reserve=0 if outcome.passed else 1)
    write_outputs(env.get("GITHUB_OUTPUT"), outputs_for(outcome, tests), redactor)
    write_summary(
        env.get("GITHUB_STEP_SUMMARY"), render_summary(outcome, result.log_tail, tests=tests), redactor
    )
    if outcome.passed:
        reporter.info(outcome.reason)
        return EXIT_OK
    reporter.error(outcome.reason)
    return 1


def post(env: Mapping[str, str] | None = None) -> int:
    """Post step: cancel a job the main step left running (killed before it could)."""
    env = os.environ if env is None else env
    job_id = env.get("STATE_job_id", "").strip()
    system = env.get("STATE_system", "").strip()
    if not job_id or not system or env.get("STATE_job_finished") == "true":
        return EXIT_OK
    redactor = Redactor()
    redactor.add(read_input(env, "client_secret") or env.get(ENV_CLIENT_SECRET))
    reporter = GitHubReporter(redactor)
    try:
        gateway = Gateway(credentials(env), request_timeout=10, retry_timeout=20, on_token=reporter.mask)
        jobs = gateway.job_info(system, job_id)
        state = (jobs[0] if jobs else {}).get("status", {}).get("state")
        if jobs and is_terminal(state):
            reporter.info(f"job {job_id} already ended ({state}); nothing to cancel")
            return EXIT_OK
        reporter.info(f"the main step ended while job {job_id} was {state}; cancelling it")
        cancel(gateway, system, job_id, reporter)
    except (RunnerError, ApiError) as error:
        reporter.error(f"could not check or cancel job {job_id}: {getattr(error, 'message', error)}")
    return EXIT_OK
