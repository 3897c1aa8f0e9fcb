import io
import re

from ci_runner.github import GitHubReporter, outputs_for, render_summary, write_outputs
from ci_runner.redact import Redactor
from ci_runner.result import Outcome


def outcome(**kw):
    base = dict(
        system="c",
        job_id="7",
        state="COMPLETED",
        exit_code=0,
        elapsed=5.0,
        working_dir="/w",
        output_path="/w/slurm-7.out",
        passed=True,
        reason="job 7 COMPLETED with exit code 0 after 00:00:05",
    )
    base.update(kw)
    return Outcome(**base)


def parse_outputs(text):
    found = {}
    for match in re.finditer(r"^(\w+)<<(\S+)\n(.*?)\n\2\n", text, flags=re.S | re.M):
        found[match.group(1)] = match.group(3)
    return found


def test_outputs_are_multiline_safe(tmp_path):
    path = tmp_path / "out"
    values = outputs_for(outcome(state="x\ny"))
    write_outputs(str(path), values, Redactor())
    assert parse_outputs(path.read_text()) == values


def test_log_is_grouped_and_commands_stopped():
    out = io.StringIO()
    reporter = GitHubReporter(Redactor(), out=out, err=io.StringIO())
    reporter.start_log("job 7")
    reporter.log("::add-mask::x\n::error::boom\npartial")
    reporter.end_log()
    lines = out.getvalue().splitlines()
    assert lines[0] == "::group::job 7"
    token = lines[1].removeprefix("::stop-commands::")
    assert len(token) == 32
    assert lines[2:5] == ["::add-mask::x", "::error::boom", "partial"]
    assert lines[5] == f"::{token}::"
    assert lines[6] == "::endgroup::"


def test_mask_during_the_log_resumes_commands_with_the_token_only():
    out = io.StringIO()
    redactor = Redactor()
    reporter = GitHubReporter(redactor, out=out, err=io.StringIO())
    reporter.start_log("job")
    first = out.getvalue().splitlines()[1].removeprefix("::stop-commands::")
    reporter.mask("new-access-token-123")
    reporter.log("token new-access-token-123 leaked\n")
    reporter.end_log()
    lines = out.getvalue().splitlines()
    assert lines[2] == f"::{first}::"
    assert lines[3] == "::add-mask::new-access-token-123"
    second = lines[4].removeprefix("::stop-commands::")
    assert second != first
    assert lines[5] == "token *** leaked"
    assert out.getvalue().count("new-access-token-123") == 1


def test_error_annotations_escape_newlines():
    out = io.StringIO()
    GitHubReporter(Redactor(), out=out, err=io.StringIO()).error("a\nb%")
    assert out.getvalue() == "::error title=firecrest-ci::a%0Ab%25\n"


def test_summary_has_a_table_and_stays_under_one_mebibyte():
    text = render_summary(outcome(), "x" * 5_000_000 + "\n```\n")
    assert "| State | COMPLETED |" in text
    assert len(text.encode()) < 1024 * 1024
    assert "````text" in text


def test_summary_without_log_is_just_the_table():
    assert "<details>" not in render_summary(outcome(), "")
