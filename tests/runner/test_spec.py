import pytest

from ci_runner.errors import UsageError
from ci_runner.spec import RawInputs, build_spec, parse_env


def raw(tmp_path, **kw):
    base = dict(system="cluster", command="echo hi", staging="none", workspace=str(tmp_path))
    base.update(kw)
    return RawInputs(**base)


def test_command_becomes_a_bash_script(tmp_path):
    spec = build_spec(raw(tmp_path))
    assert spec.script_text == "#!/bin/bash\necho hi\n"
    assert spec.cleanup == "on-success"
    assert spec.job_name.startswith("fci-")


def test_each_run_gets_a_unique_job_name(tmp_path):
    names = {build_spec(raw(tmp_path, run_id="42-1")).job_name for _ in range(20)}
    assert len(names) == 20
    assert all(name.startswith("fci-42-1-") for name in names)


def test_script_is_read_relative_to_the_workspace(tmp_path):
    (tmp_path / "ci").mkdir()
    (tmp_path / "ci" / "job.sh").write_text("#!/bin/bash\n#SBATCH --time=1\necho x\n")
    spec = build_spec(raw(tmp_path, command="", script="ci/job.sh"))
    assert "#SBATCH --time=1" in spec.script_text


@pytest.mark.parametrize(
    ("kw", "needle"),
    [
        ({"system": ""}, "no system"),
        ({"system": "bad name;rm"}, "system name"),
        ({"command": ""}, "nothing to run"),
        ({"script": "x.sh"}, "not both"),
        ({"command": "", "script": "missing.sh"}, "not found"),
        ({"staging": "rsync"}, "staging"),
        ({"cleanup": "sometimes"}, "cleanup"),
        ({"timeout": "soon"}, "timeout"),
        ({"working_dir": "relative/dir"}, "absolute"),
        ({"env": ("1BAD=x",)}, "env entry"),
        ({"staging": "git"}, "repository URL"),
        ({"staging": "git", "repo_url": "https://h/o/r.git", "sha": "main"}, "SHA"),
        ({"staging": "git", "repo_url": "--upload-pack=x", "sha": "a" * 40}, "cannot start"),
    ],
)
def test_bad_input_gets_a_clear_error(tmp_path, kw, needle):
    with pytest.raises(UsageError) as info:
        build_spec(raw(tmp_path, **kw))
    assert needle in info.value.message


def test_env_lines_parse_and_skip_comments():
    assert parse_env(("A=1", "", "# note", "B = two=2", "C=")) == {"A": "1", "B": " two=2", "C": ""}


@pytest.mark.parametrize(
    ("url", "owner_repo"),
    [
        ("git://host:9419/proj.git", ("host", "proj")),
        ("ssh://git@host:2222/o/r.git", ("o", "r")),
        ("https://host:8443/group/sub/proj/", ("sub", "proj")),
        ("git@github.com:o/r.git", ("o", "r")),
        ("http://127.0.0.1:5000/proj.git", ("127.0.0.1", "proj")),
    ],
)
def test_a_port_in_the_repository_url_never_becomes_the_owner(tmp_path, url, owner_repo):
    spec = build_spec(raw(tmp_path, repo_url=url))
    assert (spec.owner, spec.repo) == owner_repo


def test_owner_and_repo_come_from_the_repository_or_url(tmp_path):
    spec = build_spec(raw(tmp_path, repository="eth-cscs/firecrest"))
    assert (spec.owner, spec.repo) == ("eth-cscs", "firecrest")
    spec = build_spec(raw(tmp_path, staging="git", repo_url="https://github.com/o/r.git", sha="a" * 40))
    assert (spec.owner, spec.repo) == ("o", "r")


def test_a_missing_script_says_to_check_out_the_repository(tmp_path):
    with pytest.raises(UsageError) as info:
        build_spec(raw(tmp_path, command="", script="ci/job.sh"))
    assert "check out the repository first" in info.value.message


def test_git_staging_without_sha_takes_head_and_names_the_problem_elsewhere(tmp_path):
    import subprocess

    with pytest.raises(UsageError) as info:
        build_spec(raw(tmp_path, staging="git", repo_url="https://h/o/r.git"))
    assert "pass --sha" in info.value.message and "None" not in info.value.message
    git = ["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert build_spec(raw(tmp_path, staging="git", repo_url="https://h/o/r.git")).sha == head


def test_repository_credentials_leave_the_url():
    from pathlib import Path

    url = "https://gitlab-ci-token:tok-123456@gitlab.example.org/g/p.git"
    spec = build_spec(raw(Path("."), staging="git", repo_url=url, sha="a" * 40))
    assert spec.repo_url == "https://gitlab.example.org/g/p.git"
    assert (spec.repo_username, spec.repo_password) == ("gitlab-ci-token", "tok-123456")
    assert "tok-123456" not in repr(spec)
    ssh = build_spec(raw(Path("."), staging="git", repo_url="ssh://git:pw@host/r.git", sha="a" * 40))
    assert (ssh.repo_url, ssh.repo_password) == ("ssh://git@host/r.git", None)
