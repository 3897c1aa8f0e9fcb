"""JUnit reports: real pytest and ctest ones, a hand-made one with file and line; what the
Action and the CLI make of them (annotations, summary, the `tests` output), and what they
must never do (crash on bad XML, leak a secret, outgrow GitHub's limits)."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ci_runner.cli import _print_tests
from ci_runner.github import (
    MAX_ERROR_ANNOTATIONS,
    SUMMARY_LIMIT,
    GitHubReporter,
    annotate_tests,
    escape_property,
    outputs_for,
    render_summary,
)
from ci_runner.junit import MAX_DETAILS_CHARS, read_report, read_reports, repo_path
from ci_runner.redact import Redactor
from ci_runner.report import Reporter
from ci_runner.result import Outcome
from ci_runner.spec import RawInputs, build_spec

SECRET = "tok-9f8e7d6c5b4a-never-shown"

TINY_TESTS = """\
import pytest


@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")


def test_passes():
    assert 1 + 1 == 2


def test_fails():
    value = 41
    assert value == 42, "the answer is off by one"


@pytest.mark.skip(reason="not on this machine")
def test_skipped():
    pass


def test_errors(broken):
    pass
"""


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


def pytest_report(tmp_path: Path, *extra: str) -> tuple[Path, Path]:
    """Run the real pytest on a tiny failing test file; returns (report, test file)."""
    project = tmp_path / "project"
    (project / "tests").mkdir(parents=True)
    test_file = project / "tests" / "test_tiny.py"
    test_file.write_text(TINY_TESTS)
    (project / "pytest.ini").write_text("[pytest]\n")
    report = project / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "-o",
            "junit_family=xunit1",
            f"--junitxml={report}",
            *extra,
            "tests",
        ],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # a test failed: the report is what we want
    return report, test_file


@pytest.fixture(scope="module")
def pytest_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """One real pytest report for the tests that only read it."""
    return pytest_report(tmp_path_factory.mktemp("pytest-run"))


def line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def github_reporter(redactor: Redactor | None = None) -> tuple[GitHubReporter, io.StringIO]:
    out = io.StringIO()
    return GitHubReporter(redactor or Redactor(), out=out, err=io.StringIO()), out


# -- reading reports ---------------------------------------------------------------------------


def test_a_real_pytest_report_is_counted_and_located_at_the_failing_line(pytest_run):
    report, test_file = pytest_run
    tally = read_report(report, "report.xml")
    assert (tally.tests, tally.passed, tally.failed, tally.errors, tally.skipped) == (4, 1, 1, 1, 1)
    assert tally.output() == "1/1/1/1"
    failed = next(c for c in tally.failures if c.kind == "failure")
    assert failed.name == "tests.test_tiny.test_fails"
    assert failed.file == "tests/test_tiny.py"
    assert failed.line == line_of(test_file, 'assert value == 42, "the answer')
    assert "the answer is off by one" in failed.message
    errored = next(c for c in tally.failures if c.kind == "error")
    assert errored.name == "tests.test_tiny.test_errors"
    assert "fixture exploded" in errored.message + errored.details
    assert tally.time > 0


def test_without_a_traceback_pytests_zero_based_line_points_at_the_def(tmp_path):
    report, test_file = pytest_report(tmp_path, "--tb=no")
    failed = next(c for c in read_report(report, "r.xml").failures if c.kind == "failure")
    assert failed.line == line_of(test_file, "def test_fails")


CTEST_PROJECT = """\
add_test(passes "/bin/sh" "-c" "echo ok")
add_test(fails "/bin/sh" "-c" "echo 'expected 2 got 3'; exit 1")
add_test(skipped "/bin/sh" "-c" "exit 77")
set_tests_properties(skipped PROPERTIES SKIP_RETURN_CODE 77)
"""

# What `ctest --output-junit` (CMake 3.25) writes for CTEST_PROJECT, used where ctest is not installed.
CTEST_REPORT = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuite name="(empty)"
\ttests="3"
\tfailures="1"
\tdisabled="0"
\tskipped="1"
\thostname=""
\ttime="0"
\ttimestamp="2026-11-26T10:23:50"
\t>
\t<testcase name="passes" classname="passes" time="0.00617387" status="run">
\t\t<system-out>ok
</system-out>
\t</testcase>
\t<testcase name="fails" classname="fails" time="0.00494298" status="fail">
\t\t<failure message=""/>
\t\t<system-out>expected 2 got 3
</system-out>
\t</testcase>
\t<testcase name="skipped" classname="skipped" time="0.00380036" status="notrun">
\t\t<skipped message="SKIP_RETURN_CODE=77"/>
\t\t<system-out></system-out>
\t</testcase>
</testsuite>"""


def ctest_report(tmp_path: Path) -> Path:
    report = tmp_path / "ctest.xml"
    ctest = shutil.which("ctest")
    if ctest is None:
        report.write_text(CTEST_REPORT)
        return report
    build = tmp_path / "build"
    build.mkdir()
    (build / "CTestTestfile.cmake").write_text(CTEST_PROJECT)
    subprocess.run([ctest, "--output-junit", str(report)], cwd=build, capture_output=True, timeout=60)
    return report


def test_a_ctest_report_has_no_location_and_takes_the_message_from_the_output(tmp_path):
    tally = read_report(ctest_report(tmp_path), "ctest.xml")
    assert (tally.tests, tally.passed, tally.failed, tally.errors, tally.skipped) == (3, 1, 1, 0, 1)
    (failed,) = tally.failures
    assert failed.name == "fails"  # ctest's classname repeats the name
    assert failed.file is None and failed.line is None
    assert failed.message == "expected 2 got 3"
    assert tally.time > 0  # ctest writes time="0" on the suite; the cases' times count


def test_the_hand_written_ctest_shape_reads_like_a_real_one(tmp_path):
    tally = read_report(write(tmp_path, "c.xml", CTEST_REPORT), "c.xml")
    assert tally.output() == "1/1/1/0"
    assert tally.failures[0].message == "expected 2 got 3"


HAND_MADE = """\
<?xml version="1.0" encoding="UTF-8"?>
<testsuites>
  <testsuite name="unit" tests="3">
    <testcase classname="pkg.mod" name="test_x[a,b:c]" file="/scratch/run-1/src/pkg/mod.c" line="42">
      <failure message="50% off, then: broke" type="AssertionError">first line
second line</failure>
    </testcase>
    <testcase classname="pkg.mod" name="test_y" file="lib/other.c" line="7">
      <error message="crashed"/>
    </testcase>
    <testcase classname="pkg.mod" name="test_z" time="1.5"/>
    <testsuite name="nested">
      <testcase classname="pkg.deep" name="test_deep"><skipped/></testcase>
    </testsuite>
  </testsuite>
</testsuites>
"""


def test_a_hand_made_report_gives_file_and_line_relative_to_the_checkout(tmp_path):
    tally = read_report(write(tmp_path, "h.xml", HAND_MADE), "h.xml", roots=("/scratch/run-1/src",))
    assert (tally.tests, tally.passed, tally.failed, tally.errors, tally.skipped) == (4, 1, 1, 1, 1)
    first, second = tally.failures
    assert (first.file, first.line) == ("pkg/mod.c", 42)  # not a pytest report: the line as given
    assert (second.file, second.line, second.kind) == ("lib/other.c", 7, "error")
    assert first.details == "first line\nsecond line"


def test_paths_are_made_relative_to_the_checkout_or_the_local_workspace():
    roots = ("/scratch/run/src", "/home/runner/work/repo")
    assert repo_path("/scratch/run/src/tests/t.py", roots) == "tests/t.py"
    assert repo_path("/home/runner/work/repo/a/b.py", roots) == "a/b.py"
    assert repo_path("./tests/t.py", roots) == "tests/t.py"
    assert repo_path("/elsewhere/t.py", roots) == "/elsewhere/t.py"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<testsuite><testcase name='a'>", "not well-formed XML"),
        ("<html><body/></html>", "not a JUnit report"),
        ("<testsuite><testcase name='a' time='soon'/></testsuite>", "value JUnit does not allow"),
        ("", "not well-formed XML"),
    ],
)
def test_malformed_reports_cost_a_warning_and_the_good_ones_still_count(tmp_path, text, reason):
    write(tmp_path, "good.xml", HAND_MADE)
    write(tmp_path, "bad.xml", text)
    err = io.StringIO()
    tally = read_reports(tmp_path, ["bad.xml", "good.xml"], Reporter(Redactor(), err=err, out=io.StringIO()))
    assert tally.reports == ["good.xml"]
    assert tally.output() == "1/1/1/1"
    (note,) = tally.unreadable
    assert note.startswith("bad.xml: ") and reason in note
    assert (
        f"firecrest-ci: warning: JUnit report bad.xml was not read: {note.split(': ', 1)[1]}"
        in err.getvalue()
    )


def test_entities_are_not_resolved_from_the_runners_files(tmp_path):
    local = write(tmp_path, "runner-secret.txt", "runner file content")
    xxe = f"""<?xml version="1.0"?>
<!DOCTYPE testsuite [<!ENTITY leak SYSTEM "file://{local}">]>
<testsuite><testcase name="t"><failure message="&leak;"/></testcase></testsuite>"""
    err = io.StringIO()
    write(tmp_path, "x.xml", xxe)
    tally = read_reports(tmp_path, ["x.xml"], Reporter(Redactor(), err=err, out=io.StringIO()))
    assert "runner file content" not in repr(tally) + err.getvalue()


# -- what the Action shows -----------------------------------------------------------------------


def test_annotations_carry_file_line_and_escaped_title_and_message(tmp_path):
    tally = read_report(write(tmp_path, "h.xml", HAND_MADE), "h.xml", roots=("/scratch/run-1/src",))
    reporter, out = github_reporter()
    assert annotate_tests(reporter, tally) == 2
    lines = out.getvalue().splitlines()
    assert lines[0] == (
        "::error file=pkg/mod.c,line=42,title=pkg.mod.test_x[a%2Cb%3Ac] failed"
        "::50%25 off, then: broke%0A%0Afirst line%0Asecond line"
    )
    assert lines[1] == "::error file=lib/other.c,line=7,title=pkg.mod.test_y errored::crashed"
    assert len(lines) == 2


def test_a_case_without_location_is_annotated_without_one(tmp_path):
    reporter, out = github_reporter()
    annotate_tests(reporter, read_report(ctest_report(tmp_path), "ctest.xml"))
    assert out.getvalue() == "::error title=fails failed::expected 2 got 3\n"


def test_property_escaping_follows_actions_core():
    assert escape_property("a:b,c%d\ne\rf") == "a%3Ab%2Cc%25d%0Ae%0Df"


def many_failures(count: int, message: str = "boom") -> str:
    cases = "".join(
        f'<testcase classname="t" name="test_{i}" file="t.py" line="{i}">'
        f'<failure message="{message} {i}"/></testcase>'
        for i in range(count)
    )
    return f"<testsuite>{cases}<testcase classname='t' name='ok'/></testsuite>"


def test_annotations_stop_at_ten_and_one_more_says_how_many_are_left(tmp_path):
    tally = read_report(write(tmp_path, "m.xml", many_failures(25)), "m.xml")
    reporter, out = github_reporter()
    assert annotate_tests(reporter, tally) == MAX_ERROR_ANNOTATIONS
    lines = out.getvalue().splitlines()
    assert [line.startswith("::error file=t.py,") for line in lines] == [True] * 10 + [False]
    assert lines[-1] == "::warning title=firecrest-ci::15 more failed tests: see the job summary"


def test_a_failed_job_keeps_room_for_its_own_error(tmp_path):
    tally = read_report(write(tmp_path, "m.xml", many_failures(12)), "m.xml")
    reporter, out = github_reporter()
    reporter.error("could not remove the directory")  # an earlier error of the same step
    annotate_tests(reporter, tally, reserve=1)
    reporter.error("job 7 FAILED with exit code 1")
    errors = [line for line in out.getvalue().splitlines() if line.startswith("::error")]
    assert len(errors) == MAX_ERROR_ANNOTATIONS
    assert errors[-1] == "::error title=firecrest-ci::job 7 FAILED with exit code 1"
    assert "::warning title=firecrest-ci::4 more failed tests: see the job summary" in out.getvalue()


def test_exactly_ten_failures_need_no_more_line(tmp_path):
    reporter, out = github_reporter()
    annotate_tests(reporter, read_report(write(tmp_path, "m.xml", many_failures(10)), "m.xml"))
    assert "more failed test" not in out.getvalue()
    assert out.getvalue().count("::error ") == 10


def test_the_summary_has_the_counts_and_the_failed_cases(pytest_run):
    report, _ = pytest_run
    tally = read_report(report, "report.xml")
    text = render_summary(outcome(), "the end of the log\n", tests=tally)
    assert "| Tests | Passed | Failed | Errors | Skipped | Time |" in text
    assert re.search(r"^\| 4 \| 1 \| 1 \| 1 \| 1 \| \d+\.\d\d s \|$", text, re.M), text
    row = next(line for line in text.splitlines() if line.startswith("| tests.test_tiny.test_fails |"))
    assert "tests/test_tiny.py:" in row and "the answer is off by one" in row
    assert "| tests.test_tiny.test_errors |" in text
    assert text.index("Failed tests") < text.index("End of the job log")


def test_summary_cells_cannot_break_the_table_or_inject_html(tmp_path):
    report = (
        '<testsuite><testcase name="a|b"><failure message="x | y &lt;script&gt;&#10;z"/>'
        "</testcase></testsuite>"
    )
    text = render_summary(outcome(), "", tests=read_report(write(tmp_path, "r.xml", report), "r.xml"))
    row = next(line for line in text.splitlines() if line.startswith("| a&#124;b |"))
    assert row.count(" | ") == 2 and "<script>" not in text and "&lt;script&gt;<br>z" in row


def test_the_summary_stays_under_githubs_limit_with_huge_reports_and_logs(tmp_path):
    tally = read_report(write(tmp_path, "m.xml", many_failures(20_000, "x" * 400)), "m.xml")
    text = render_summary(outcome(passed=False), "y" * 5_000_000, tests=tally)
    assert len(text.encode("utf-8")) < SUMMARY_LIMIT
    match = re.search(r"_(\d+) more failed tests: see the JUnit reports in the artifacts\._", text)
    shown = len(re.findall(r"^\| t\.test_\d+ \|", text, re.M))
    assert match and shown > 100 and shown + int(match.group(1)) == 20_000
    assert "End of the job log" in text  # the log's end still has room


def test_secrets_in_reports_never_reach_annotations_summary_or_the_console(tmp_path):
    redactor = Redactor()
    redactor.add(SECRET)
    # The secret straddles the points where texts are cut: redaction must come first.
    long_details = SECRET + "d" * (MAX_DETAILS_CHARS - 5)
    report = f"""<testsuite><testcase classname="c" name="t_{SECRET}" file="/x/{SECRET}/t.py" line="3">
        <failure message="{"m" * 295}{SECRET}">{long_details}</failure></testcase></testsuite>"""
    tally = read_report(write(tmp_path, "s.xml", report), "s.xml", redactor=redactor)
    reporter, out = github_reporter(redactor)
    annotate_tests(reporter, tally)
    summary = render_summary(outcome(), "", tests=tally)
    err = io.StringIO()
    _print_tests(Reporter(redactor, err=err, out=io.StringIO()), tally)
    everything = out.getvalue() + summary + err.getvalue() + repr(tally)
    for piece in (SECRET[:8], SECRET[-8:], SECRET[6:14]):
        assert piece not in everything
    assert "***" in out.getvalue() and "***" in summary and "***" in err.getvalue()


# -- outputs and the CLI --------------------------------------------------------------------------


def test_the_tests_output_is_passed_failed_skipped_errors(tmp_path):
    cases = (
        ["<testcase name='p{0}'/>"] * 41
        + ["<testcase name='f{0}'><failure/></testcase>"] * 2
        + ["<testcase name='s{0}'><skipped/></testcase>"] * 3
    )
    report = (
        "<testsuites><testsuite>"
        + "".join(c.format(i) for i, c in enumerate(cases))
        + "</testsuite></testsuites>"
    )
    tally = read_reports(tmp_path, ["r.xml"], Reporter(Redactor(), err=io.StringIO()))
    assert outputs_for(outcome(), tally)["tests"] == ""  # nothing read yet: empty, not 0/0/0/0
    write(tmp_path, "r.xml", report)
    tally = read_reports(tmp_path, ["r.xml"], Reporter(Redactor(), err=io.StringIO()))
    assert outputs_for(outcome(), tally)["tests"] == "41/2/3/0"
    assert outputs_for(outcome())["tests"] == ""


def test_the_cli_prints_a_tally_line_and_each_failed_case(pytest_run):
    report, _ = pytest_run
    err = io.StringIO()
    _print_tests(Reporter(Redactor(), err=err, out=io.StringIO()), read_report(report, "report.xml"))
    lines = err.getvalue().splitlines()
    assert re.fullmatch(
        r"firecrest-ci: tests: 4 run, 1 passed, 1 failed, 1 errors, 1 skipped in \d+\.\d\d s \(1 report\)",
        lines[0],
    )
    assert any(
        re.fullmatch(
            r"firecrest-ci:   FAILURE tests\.test_tiny\.test_fails \(tests/test_tiny\.py:\d+\): .*off by one",
            x,
        )
        for x in lines
    ), lines
    assert any(x.startswith("firecrest-ci:   ERROR tests.test_tiny.test_errors") for x in lines)


def test_junit_globs_come_one_per_line_or_repeated(tmp_path):
    spec = build_spec(
        RawInputs(
            system="c",
            command="true",
            staging="none",
            workspace=str(tmp_path),
            junit=("reports/*.xml\n\n  build/**/junit.xml ", "ctest.xml"),
        )
    )
    assert spec.junit == ("reports/*.xml", "build/**/junit.xml", "ctest.xml")
