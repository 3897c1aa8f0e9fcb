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
    assert body[0] == "echo start"
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
