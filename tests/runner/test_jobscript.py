import os
import signal
import subprocess

from ci_runner.jobscript import build_batch_script, expand_output_pattern, split_header

USER = """#!/bin/bash -l
#SBATCH --job-name=mine
#SBATCH --time=00:05:00
#SBATCH --output=logs/%x-%j.log
# a comment
echo start
#SBATCH --ignored-after-first-command
"""


def test_unique_name_replaces_the_users_and_header_is_kept():
    script = build_batch_script(USER, job_name="fci-1-abc", staging="none")
    lines = script.text.splitlines()
    assert lines[0] == "#!/bin/bash -l"
    assert lines[1] == "#SBATCH --job-name=fci-1-abc"
    assert "#SBATCH --job-name=mine" not in script.text
    assert "#SBATCH --time=00:05:00" in lines
    assert script.output_pattern == "logs/%x-%j.log"
    _header, body = split_header(script.text)
    assert body[0] == 'chmod go= -- "logs/${SLURM_JOB_NAME}-${SLURM_JOB_ID}.log" 2>/dev/null || :'
    assert body[1] == "echo start"
    assert "#SBATCH --ignored-after-first-command" in body


def test_git_prologue_quotes_hostile_values_and_runs_before_the_body():
    script = build_batch_script(
        "echo body\n", job_name="n", staging="git", repo_url="https://x/$(touch pwned)", sha="a" * 40
    )
    assert "'https://x/$(touch pwned)'" in script.text
    assert script.text.index("git init") < script.text.index("echo body")
    subprocess.run(["bash", "-n"], input=script.text, text=True, check=True)


def test_git_staging_really_checks_out_the_commit(tmp_path):
    origin = tmp_path / "origin"
    origin.mkdir()
    git = ["git", "-C", str(origin), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    (origin / "f.txt").write_text("one\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "1"], check=True)
    sha = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    (origin / "f.txt").write_text("two\n")
    subprocess.run([*git, "commit", "-qam", "2"], check=True)
    script = build_batch_script("cat f.txt\n", job_name="n", staging="git", repo_url=str(origin), sha=sha)
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run(["bash", "-c", script.text], cwd=work, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "one"


def test_failed_fetch_exits_97(tmp_path):
    script = build_batch_script(
        "echo never\n", job_name="n", staging="git", repo_url=str(tmp_path / "nope"), sha="b" * 40
    )
    done = subprocess.run(["bash", "-c", script.text], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 97
    assert "never" not in done.stdout


def test_output_patterns_expand_like_slurm():
    assert expand_output_pattern("o-%x.%j%%", job_id="7", job_name="n", user="u") == "o-n.7%"


MARK = "firecrest-ci-end-" + "a" * 32


def run_script(text: str, cwd, shell: str = "bash") -> subprocess.CompletedProcess[str]:
    return subprocess.run([shell, "-c", text], cwd=cwd, capture_output=True, text=True)


def test_the_end_marker_is_the_last_line_on_the_jobs_stdout_whatever_the_script_does(tmp_path):
    user = "#!/bin/bash\ntrap 'echo user trap' EXIT\necho shown\nexec > own.log\necho hidden\nexit 4\n"
    script = build_batch_script(user, job_name="n", staging="none", end_marker=MARK)
    assert script.end_marker == MARK
    done = run_script(script.text, tmp_path)
    assert done.returncode == 4
    assert done.stdout == f"shown\n{MARK}\n"
    assert (tmp_path / "own.log").read_text() == "hidden\nuser trap\n"


def test_the_end_marker_survives_errexit_sh_and_sigterm(tmp_path):
    strict = build_batch_script(
        "#!/bin/bash -e\nfalse\necho never\n", job_name="n", staging="none", end_marker=MARK
    )
    done = subprocess.run(["bash", "-e", "-c", strict.text], cwd=tmp_path, capture_output=True, text=True)
    assert (done.returncode, done.stdout) == (1, f"{MARK}\n")
    posix = build_batch_script("#!/bin/sh\necho posix\n", job_name="n", staging="none", end_marker=MARK)
    assert run_script(posix.text, tmp_path, "sh").stdout == f"posix\n{MARK}\n"
    slow = build_batch_script("echo started\nsleep 30\n", job_name="n", staging="none", end_marker=MARK)
    proc = subprocess.Popen(
        ["bash", "-c", slow.text], cwd=tmp_path, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    assert proc.stdout is not None and proc.stdout.readline() == "started\n"
    os.killpg(proc.pid, signal.SIGTERM)  # Slurm's cancel and time limit: SIGTERM to all the job's processes
    assert proc.stdout.read() == f"{MARK}\n"
    proc.wait(timeout=5)


def test_no_end_marker_where_it_cannot_work():
    python = build_batch_script(
        "#!/usr/bin/env python3\nprint(1)\n", job_name="n", staging="none", end_marker=MARK
    )
    assert python.end_marker is None and MARK not in python.text
    odd = build_batch_script("echo x\n", job_name="n", staging="none", end_marker="not a 'token'")
    assert odd.end_marker is None
    env = build_batch_script("#!/usr/bin/env -S bash -l\n", job_name="n", staging="none", end_marker=MARK)
    assert env.end_marker == MARK
    subprocess.run(["bash", "-n"], input=env.text, text=True, check=True)  # no empty `( )`


def test_clone_credentials_travel_in_the_environment_and_are_unset_before_the_body():
    from ci_runner.jobscript import git_credential_env

    env = git_credential_env("gitlab-ci-token", "tok,with,commas")
    assert "tok,with,commas" not in "".join(env.values()) and "," not in "".join(env.values())
    script = build_batch_script(
        "echo body\n", job_name="n", staging="git", repo_url="https://h/r.git", sha="a" * 40, git_auth=True
    )
    assert "credential.helper= -c credential.helper=" in script.text
    assert script.text.index("unset -f fci_git; unset FCI_GIT_USERNAME") < script.text.index("echo body")
    subprocess.run(["bash", "-n"], input=script.text, text=True, check=True)


def test_output_files_are_made_private_before_anything_runs():
    script = build_batch_script(
        "#!/bin/bash\n#SBATCH -e err-%x-%5j.log\necho body\n", job_name="n", staging="none"
    )
    assert 'chmod go= -- "slurm-${SLURM_JOB_ID}.out" 2>/dev/null || :' in script.text
    chmods = [line for line in script.text.splitlines() if line.startswith("chmod ")]
    assert len(chmods) == 1  # a pattern with codes the shell cannot expand (%5j) is left alone


def test_a_python_batch_script_gets_no_shell_lines_when_nothing_is_staged():
    from ci_runner.jobscript import build_batch_script

    built = build_batch_script(
        "#!/usr/bin/env python3\n#SBATCH --time=00:01:00\nprint('hello')\n",
        job_name="fci-x",
        staging="none",
        end_marker="marker-0123",
    )
    body = [line for line in built.text.splitlines() if line and not line.startswith("#")]
    assert body == ["print('hello')"]
