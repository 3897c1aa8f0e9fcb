"""JUnit reports through the real CLI and the Action's entrypoint, against the FirecREST sandbox:
the job writes a report, the runner brings it back and shows it, and the job alone decides."""

from __future__ import annotations

import re

from tests.e2e.conftest import SECRET, run_action, run_command

#: A job that writes a pytest-shaped report (one pass, one failure, one skip) and then exits with $1.
#: `file` is absolute on the system, as some tools write it: the runner makes it repository-relative.
JOB = """\
mkdir -p reports
cat > reports/unit.xml <<EOF
<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="1" time="1.25">
<testcase classname="tests.test_math" name="test_add" file="$PWD/tests/test_math.py" line="2" time="0.5">
<failure message="assert 2 + 2 == 5">def test_add():
&gt;       assert 2 + 2 == 5
E       assert 4 == 5

tests/test_math.py:4: AssertionError</failure></testcase>
<testcase classname="tests.test_math" name="test_sub" file="$PWD/tests/test_math.py" line="6" time="0.25"/>
<testcase classname="tests.test_math" name="test_gpu" time="0"><skipped message="no GPU"/></testcase>
</testsuite></testsuites>
EOF
echo wrote the report
exit {code}
"""


def test_the_action_annotates_summarises_and_outputs_a_failing_test_but_the_job_decides(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command=JOB.format(code=0), junit="reports/*.xml")
    assert run.returncode == 0, run.stdout + run.stderr  # the job COMPLETED with 0: a failing test alone
    assert (
        "::error file=tests/test_math.py,line=4,title=tests.test_math.test_add failed"
        "::assert 2 + 2 == 5%0A%0Adef test_add():"
    ) in run.stdout
    assert (
        "firecrest-ci: tests: 3 run, 1 passed, 1 failed, 0 errors, 1 skipped in 1.25 s (1 report)"
        in run.stdout
    )
    outputs = run.outputs()
    assert outputs["tests"] == "1/1/1/0"
    assert outputs["state"] == "COMPLETED" and outputs["exit_code"] == "0"
    summary = run.summary
    assert "| Tests | Passed | Failed | Errors | Skipped | Time |" in summary
    assert "| 3 | 1 | 1 | 0 | 1 | 1.25 s |" in summary
    assert "| tests.test_math.test_add | tests/test_math.py:4 | assert 2 + 2 == 5 |" in summary
    assert re.search(r"^\| Node-hours \| \d+\.\d{4} \(1 node \u00d7 \d\d:\d\d:\d\d\) \|$", summary, re.M)
    assert re.search(r"^\| Queue wait \| \d\d:\d\d:\d\d \|$", summary, re.M)
    copied = workspace / "firecrest-artifacts" / "junit" / "reports" / "unit.xml"
    assert 'name="test_add"' in copied.read_text()
    assert SECRET not in run.stdout + run.stderr + summary


def test_a_failing_job_with_a_failing_test_fails_on_its_exit_code(sandbox, workspace):
    run = run_action(sandbox, workspace, system="cluster", command=JOB.format(code=3), junit="reports/*.xml")
    assert run.returncode == 1
    assert run.outputs()["exit_code"] == "3"
    assert run.outputs()["tests"] == "1/1/1/0"
    errors = [line for line in run.stdout.splitlines() if line.startswith("::error ")]
    assert errors[0].startswith(
        "::error file=tests/test_math.py,line=4,title=tests.test_math.test_add failed::"
    )
    assert re.fullmatch(r"::error title=firecrest-ci::job \d+ FAILED with exit code 3 after .*", errors[-1])


def test_the_cli_prints_the_tally_and_the_failed_case_and_keeps_the_jobs_exit_code(sandbox, workspace):
    done = run_command(sandbox, JOB.format(code=0), "--junit", "reports/*.xml\nnothing/*.xml", cwd=workspace)
    assert done.returncode == 0, done.stderr
    assert (
        "firecrest-ci: tests: 3 run, 1 passed, 1 failed, 0 errors, 1 skipped in 1.25 s (1 report)"
        in done.stderr
    )
    assert (
        "firecrest-ci:   FAILURE tests.test_math.test_add (tests/test_math.py:4): assert 2 + 2 == 5"
        in done.stderr
    )
    assert "::error" not in done.stdout + done.stderr  # no workflow commands outside the Action
    assert (workspace / "firecrest-artifacts" / "junit" / "reports" / "unit.xml").is_file()


def test_a_malformed_report_is_a_warning_and_changes_nothing(sandbox, workspace):
    done = run_command(
        sandbox,
        "mkdir -p out && printf '<testsuite><testcase name=\"a\">' > out/broken.xml",
        "--junit",
        "out/*.xml",
        cwd=workspace,
    )
    assert done.returncode == 0, done.stderr
    assert (
        "firecrest-ci: warning: JUnit report out/broken.xml was not read: not well-formed XML" in done.stderr
    )
    assert "firecrest-ci: tests: no JUnit report was read (out/*.xml)" in done.stderr
    assert "COMPLETED with exit code 0" in done.stderr


def test_no_matching_report_leaves_the_tests_output_empty(sandbox, workspace):
    run = run_action(
        sandbox, workspace, system="cluster", command="echo no tests here", junit="reports/*.xml"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert run.outputs()["tests"] == ""
    assert "no JUnit report matched reports/*.xml" in run.stdout
    assert "No JUnit report was read (`reports/*.xml`)." in run.summary
