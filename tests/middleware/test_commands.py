import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from middleware.commands import CommandError, RunCommand, check_variable_name, parse_command


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("firecrest-ci run", RunCommand()),
        ("firecrest-ci run cpu,gpu", RunCommand(("cpu", "gpu"))),
        ("firecrest-ci run cpu;DEBUG=1;N=4", RunCommand(("cpu",), {"DEBUG": "1", "N": "4"})),
        ("firecrest-ci run;X=1", RunCommand((), {"X": "1"})),
        ("firecrest-ci run ;X=", RunCommand((), {"X": ""})),
        ("  firecrest-ci run cpu  \r\nsecond line;Y=2", RunCommand(("cpu",))),
    ],
)
def test_valid_commands(body, expected):
    assert parse_command(body) == expected


@pytest.mark.parametrize(
    "body",
    [
        None,
        "",
        "hello",
        "please firecrest-ci run",
        "firecrest-ci runner",
        "firecrest-ci",
        "x\nfirecrest-ci run",
    ],
)
def test_not_a_command(body):
    assert parse_command(body) is None


def test_custom_prefix():
    assert parse_command("hpc run a", prefix="hpc") == RunCommand(("a",))
    assert parse_command("firecrest-ci run a", prefix="hpc") is None


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ("firecrest-ci run cpu;A=b=c", "without ',;=' in it"),
        ("firecrest-ci run cpu;A=b,c", "','"),
        ("firecrest-ci run cpu;CI_JOB_TOKEN=x", "reserved"),
        ("firecrest-ci run cpu;FIRECREST_CLIENT_SECRET=x", "reserved"),
        ("firecrest-ci run cpu;LD_PRELOAD=/tmp/x.so", "reserved"),
        ("firecrest-ci run cpu;PATH=/tmp", "reserved"),
        ("firecrest-ci run cpu;1BAD=x", "variable name"),
        ("firecrest-ci run cpu;NOVALUE", "NAME=value"),
        ("firecrest-ci run cpu,,gpu", "invalid pipeline name"),
        ("firecrest-ci run cpu,cpu", "named twice"),
        ("firecrest-ci run cpu;A=1;A=2", "set twice"),
        ("firecrest-ci run c=pu", "invalid pipeline name"),
    ],
)
def test_invalid_commands_explain_the_syntax(body, needle):
    with pytest.raises(CommandError) as error:
        parse_command(body)
    assert needle in str(error.value)
    assert "expected: `firecrest-ci run" in str(error.value)


def test_variable_name_rule_is_shared():
    assert check_variable_name("OMP_NUM_THREADS") is None
    assert check_variable_name("ci_token")  # case-insensitive prefixes
    assert check_variable_name("GITLAB_TOKEN")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80).map(lambda s: "firecrest-ci run" + s) | st.text(max_size=80))
def test_arbitrary_comments_never_smuggle_separators_or_reserved_names(body):
    try:
        command = parse_command(body)
    except CommandError:
        return
    if command is None:
        return
    for name in command.pipelines:
        assert not set(name) & set(",;= \t\n")
    for name, value in command.variables.items():
        assert check_variable_name(name) is None
        assert not set(value) & set(",;=")


@pytest.mark.parametrize(
    "name",
    [
        # these slipped through the old list of single names
        "GIT_CONFIG_COUNT",
        "GIT_CONFIG_KEY_0",
        "GIT_CONFIG_VALUE_0",
        "GIT_PROXY_COMMAND",
        "HTTPS_PROXY",
        "REQUESTS_CA_BUNDLE",
        "SSL_CERT_FILE",
        "PYTHONHOME",
        "PYTHONWARNINGS",
        # one of each other family
        "FIRECREST_URL",
        "AUTH_TOKEN_URL",
        "CI_JOB_TOKEN",
        "GITLAB_TOKEN",
        "FF_USE_FASTZIP",
        "DOCKER_AUTH_CONFIG",
        "GITHUB_TOKEN",
        "INPUT_SCRIPT",
        "SLURM_ACCOUNT",
        "SBATCH_ACCOUNT",
        "SSH_ASKPASS",
        "CURL_CA_BUNDLE",
        "OPENSSL_CONF",
        "NO_PROXY",
        "ALL_PROXY",
        "PIP_INDEX_URL",
        "LD_PRELOAD",
        "DYLD_INSERT_LIBRARIES",
        "GCONV_PATH",
        "BASH_ENV",
        "BASH_FUNC_X",
        "ENV",
        "IFS",
        "PS4",
        "PATH",
        "HOME",
        "XDG_CONFIG_HOME",
        "PAGER",
        "PERL5OPT",
        "RUBYOPT",
        "NODE_OPTIONS",
        "JAVA_TOOL_OPTIONS",
    ],
)
def test_reserved_families_are_refused_with_the_family_named(name):
    problem = check_variable_name(name)
    assert problem and problem.startswith(f"{name} is reserved (")
    with pytest.raises(CommandError, match="reserved"):
        parse_command(f"firecrest-ci run cpu;{name}=x")


@pytest.mark.parametrize(
    "name", ["X\n", "DEBUG\n", "ci_token", "Debug", "_JAVA_OPTIONS", "1BAD", "A-B", "", "É", "A" * 65]
)
def test_variable_names_must_fully_match_the_strict_pattern(name):
    assert "is not a variable name" in (check_variable_name(name) or "")


@pytest.mark.parametrize("name", ["OMP_NUM_THREADS", "DEBUG", "N", "A" * 64, "MY_PROXY_HOST", "LEVEL_2"])
def test_ordinary_names_stay_allowed(name):
    assert check_variable_name(name) is None
