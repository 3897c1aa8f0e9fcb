"""`make demo`: one CI job end to end on the local FirecREST sandbox.

It starts the sandbox (a stand-in for an HPC centre's FirecREST v2), makes a
small sample repository with a batch script, then runs the real runner twice:
as the CLI a laptop or GitLab job would use, and through the Action's own
container entrypoint with the environment GitHub gives it, printing the
step's outputs and summary.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.firecrest.config import SandboxConfig
from sandbox.firecrest.server import run_sandbox

ROOT = Path(__file__).resolve().parent.parent

JOB_SCRIPT = """#!/bin/bash
#SBATCH --job-name=demo
#SBATCH --time=00:02:00
echo "running on $(hostname) as Slurm job $SLURM_JOB_ID in $PWD"
echo "commit under test: $(git rev-parse --short HEAD 2>/dev/null || echo uploaded)"
for step in 1 2 3 4; do
  echo "step $step/4: solving..."
  sleep 0.5
done
python3 -c 'import sys; assert sum(range(10)) == 45; print("tests passed")'
"""


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=demo", "-c", "user.email=demo@example.org", *args],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def make_sample_repository(root: Path) -> tuple[Path, str]:
    repo = root / "sample-code"
    (repo / "ci").mkdir(parents=True)
    (repo / "ci" / "hpc-job.sh").write_text(JOB_SCRIPT)
    (repo / "README.md").write_text("A sample research code tested on HPC through FirecREST.\n")
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "sample code")
    return repo, _git(repo, "rev-parse", "HEAD")


def banner(text: str) -> None:
    print(f"\n\033[1m== {text} ==\033[0m", flush=True)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-demo-") as tmp:
        root = Path(tmp)
        repo, sha = make_sample_repository(root)
        config = SandboxConfig(root=root / "hpc", systems=("cluster",))
        with run_sandbox(config) as sandbox:
            env = {**os.environ, **sandbox.env()}
            banner(f"local FirecREST sandbox at {sandbox.url} (a stand-in for an HPC centre)")
            banner("1. the CLI: ci-runner run --system cluster --script ci/hpc-job.sh --staging git")
            cli = subprocess.run(
                [
                    sys.executable, "-m", "ci_runner", "run",
                    "--system", "cluster",
                    "--script", "ci/hpc-job.sh",
                    "--staging", "git",
                    "--repo-url", str(repo),
                    "--sha", sha,
                    "--repository", "demo/sample-code",
                ],
                cwd=repo,
                env=env,
                check=False,
            )  # fmt: skip
            banner("2. the GitHub Action's container entrypoint, with the environment GitHub gives it")
            github = root / "github"
            github.mkdir()
            files = {n: github / n.lower() for n in ("GITHUB_OUTPUT", "GITHUB_STEP_SUMMARY", "GITHUB_STATE")}
            for path in files.values():
                path.touch()
            action_env = {
                **{k: v for k, v in os.environ.items() if not k.startswith("INPUT_")},
                # In the container, `python` is the image's venv; here it is this one.
                "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                "INPUT_SYSTEM": "cluster",
                "INPUT_SCRIPT": "ci/hpc-job.sh",
                "INPUT_STAGING": "upload",
                "INPUT_CLEANUP": "on-success",
                "INPUT_FIRECREST_URL": sandbox.url,
                "INPUT_TOKEN_URL": sandbox.token_url,
                "INPUT_CLIENT_ID": sandbox.client_id,
                "INPUT_CLIENT_SECRET": sandbox.client_secret,
                "GITHUB_WORKSPACE": str(repo),
                "GITHUB_REPOSITORY": "demo/sample-code",
                "GITHUB_SHA": sha,
                "GITHUB_RUN_ID": "1",
                "GITHUB_RUN_ATTEMPT": "1",
                **{name: str(path) for name, path in files.items()},
            }
            action = subprocess.run(
                ["sh", str(ROOT / "docker" / "entrypoint.sh")], cwd=repo, env=action_env, check=False
            )
            banner("GITHUB_OUTPUT")
            print(files["GITHUB_OUTPUT"].read_text())
            banner("GITHUB_STEP_SUMMARY")
            print(files["GITHUB_STEP_SUMMARY"].read_text())
        ok = cli.returncode == 0 and action.returncode == 0
        banner("demo passed" if ok else f"demo FAILED (cli {cli.returncode}, action {action.returncode})")
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
