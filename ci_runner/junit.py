"""JUnit XML reports the job wrote: brought back, counted, and their failed cases named.

Reports come back by the artifacts' path (`artifacts.collect`, so large ones go
through the staging area) into `<artifacts dir>/junit/`, a stable place where
GitLab's `artifacts:reports:junit` finds them too. junitparser reads them, on
the standard library's XML parser (no external entities, expat's guard against
entity bombs), whatever else is installed. Failing tests never decide the run
on their own: the job's state and exit code do. A report that cannot be read
costs one warning, never the run.

Every text taken from a report passes the redactor before it is cut short, so
half a secret cannot slip past the mask.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

from junitparser import Attr, Error, Failure, JUnitXml, JUnitXmlError, Skipped, TestCase, TestSuite

from ci_runner import artifacts, transfers
from ci_runner.client import Gateway
from ci_runner.redact import Redactor
from ci_runner.report import Reporter

#: Below the artifacts directory: where reports land, and where GitLab's reports:junit looks.
JUNIT_SUBDIR = "junit"
#: A report above this is not parsed (it is still copied); real ones are far smaller.
MAX_REPORT_BYTES = 64 * 1024 * 1024
#: Longest failure text kept per case, after redaction.
MAX_DETAILS_CHARS = 4000
#: pytest's default `junit_suite_name`; pytest writes its `line` attribute 0-based.
PYTEST_SUITE_NAME = "pytest"
#: `path:line: ...` as pytest prints a traceback's location lines.
_LOCATION_LINE = re.compile(r"^(?P<path>[^\s:][^:\n]*):(?P<line>\d+): ", re.MULTILINE)


class _Case(TestCase):
    """A test case with the `file` and `line` attributes pytest (xunit1) and others add."""

    file = Attr()
    line = Attr()


class _Suite(TestSuite):
    testcase = _Case


class _Report(JUnitXml):
    testsuite = _Suite


@dataclass(frozen=True)
class FailedCase:
    """One failed or errored test case, its texts already redacted."""

    name: str
    kind: str  # "failure" or "error"
    message: str
    details: str
    file: str | None
    line: int | None
    report: str

    @property
    def location(self) -> str:
        if not self.file:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file


@dataclass
class TestTally:
    """What the reports say, summed over all of them."""

    __test__ = False  # not a pytest class, despite the name

    tests: int = 0
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    time: float = 0.0
    failures: list[FailedCase] = field(default_factory=list)
    #: Reports read, relative to the junit directory.
    reports: list[str] = field(default_factory=list)
    #: Reports copied back but not read, each with the reason.
    unreadable: list[str] = field(default_factory=list)
    #: The globs asked for, to say what matched nothing.
    globs: tuple[str, ...] = ()

    def output(self) -> str:
        """The Action's `tests` output, `passed/failed/skipped/errors`; empty if no report was read."""
        if not self.reports:
            return ""
        return f"{self.passed}/{self.failed}/{self.skipped}/{self.errors}"

    def tally_line(self) -> str:
        if not self.reports:
            return f"tests: no JUnit report was read ({', '.join(self.globs) or 'no glob'})"
        return (
            f"tests: {self.tests} run, {self.passed} passed, {self.failed} failed, {self.errors} errors, "
            f"{self.skipped} skipped in {format_test_time(self.time)} "
            f"({len(self.reports)} report{'s' if len(self.reports) != 1 else ''})"
        )

    def add(self, other: TestTally) -> None:
        self.tests += other.tests
        self.passed += other.passed
        self.failed += other.failed
        self.errors += other.errors
        self.skipped += other.skipped
        self.time += other.time
        self.failures.extend(other.failures)
        self.reports.extend(other.reports)


class ReportUnreadable(Exception):
    """The file is not a JUnit XML report the runner can read; the message says why."""


def format_test_time(seconds: float) -> str:
    """Tests often take well under a second: seconds with decimals, else `HH:MM:SS`."""
    if seconds < 60:
        return f"{seconds:.2f} s"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}"


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, marked when cut."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def clip_start(text: str, limit: int) -> str:
    """The last `limit` characters: a traceback says most at its end."""
    return text if len(text) <= limit else "…" + text[-max(limit - 1, 0) :]


def repo_path(file: str, roots: tuple[str, ...]) -> str:
    """`file` relative to the first root that holds it (the job's checkout, the local workspace)."""
    path = PurePosixPath(file.replace("\\", "/"))
    if not path.is_absolute():
        return str(path)
    for root in roots:
        if not root:
            continue
        try:
            return str(path.relative_to(PurePosixPath(root)))
        except ValueError:
            continue
    return str(path)


def _safe_parse(source: str | IO[bytes]) -> ET.ElementTree[ET.Element]:
    """The standard library's parser, even where lxml is installed (lxml may resolve entities)."""
    return ET.parse(source, parser=ET.XMLParser())  # noqa: S314 - see the module docstring


def _text(value: Any) -> str:
    return str(value).strip() if value is not None else ""


def _crash_line(details: str, file: str, shown: str) -> int | None:
    """The last `path:N:` of a traceback that names the case's own file (pytest's crash line, 1-based)."""
    found = None
    for match in _LOCATION_LINE.finditer(details):
        path = match.group("path").strip().removeprefix("./")
        if path in (file, shown) or file.endswith("/" + path) or path.endswith("/" + shown):
            found = int(match.group("line"))
    return found


def _location(
    case: _Case, details: str, roots: tuple[str, ...], zero_based: bool, redactor: Redactor
) -> tuple[str | None, int | None]:
    file = _text(case.file)
    if not file:
        return None, None
    shown = redactor(repo_path(file, roots))
    line = _crash_line(details, file, shown)
    raw_line = _text(case.line)
    if line is None and raw_line.isdigit():
        line = int(raw_line) + (1 if zero_based else 0)
    return shown, line


def _failed_case(
    case: _Case, label: str, roots: tuple[str, ...], zero_based: bool, redactor: Redactor
) -> FailedCase | None:
    results = case.result
    bad: Error | Failure | None = next((r for r in results if isinstance(r, Error)), None)
    bad = bad or next((r for r in results if isinstance(r, Failure)), None)
    if bad is None:
        return None
    kind = "error" if isinstance(bad, Error) else "failure"
    details = redactor(_text(bad.text))
    output = redactor(_text(case.system_out) or _text(case.system_err))
    message = redactor(_text(bad.message))
    # ctest writes `<failure message=""/>` and leaves what the test said in <system-out>.
    message = message or (details.splitlines() or output.splitlines()[-1:] or [kind])[0]
    details = details or output
    classname, name = _text(case.classname), _text(case.name) or "(unnamed)"
    full = f"{classname}.{name}" if classname and classname != name else name
    file, line = _location(case, details, roots, zero_based, redactor)
    return FailedCase(
        name=redactor(full),
        kind=kind,
        message=message,
        details=clip_start(details, MAX_DETAILS_CHARS),
        file=file,
        line=line,
        report=label,
    )


def read_report(
    path: Path, label: str, *, roots: tuple[str, ...] = (), redactor: Redactor | None = None
) -> TestTally:
    """Count one report; raises ReportUnreadable for anything that is not a readable JUnit report."""
    redactor = redactor or Redactor()
    try:
        size = path.stat().st_size
        if size > MAX_REPORT_BYTES:
            raise ReportUnreadable(f"{size} bytes, more than the {MAX_REPORT_BYTES} read")
        report = _Report.fromfile(str(path), parse_func=_safe_parse)
        tally = TestTally(reports=[label])
        for suite in report:
            if not isinstance(suite, _Suite):
                continue
            case_time = 0.0
            zero_based = _text(suite.name) == PYTEST_SUITE_NAME
            suite_time = float(suite.time or 0.0)
            for case in suite:
                if not isinstance(case, _Case):
                    continue
                tally.tests += 1
                case_time += float(case.time or 0.0)
                failed = _failed_case(case, label, roots, zero_based, redactor)
                if failed is not None:
                    tally.failures.append(failed)
                    if failed.kind == "error":
                        tally.errors += 1
                    else:
                        tally.failed += 1
                elif any(isinstance(r, Skipped) for r in case.result):
                    tally.skipped += 1
                else:
                    tally.passed += 1
            # ctest writes time="0" on its suite however long the cases took.
            tally.time += max(suite_time, case_time)
    except ET.ParseError as error:
        raise ReportUnreadable(f"not well-formed XML ({error})") from None
    except JUnitXmlError:
        raise ReportUnreadable(
            "not a JUnit report (its root is neither <testsuites> nor <testsuite>)"
        ) from None
    except (ValueError, TypeError) as error:
        raise ReportUnreadable(f"an attribute has a value JUnit does not allow ({error})") from None
    except (OSError, RecursionError) as error:
        raise ReportUnreadable(str(error)) from None
    return tally


def read_reports(
    directory: Path,
    files: list[str],
    reporter: Reporter,
    *,
    roots: tuple[str, ...] = (),
    globs: tuple[str, ...] = (),
) -> TestTally:
    """Sum the reports under `directory`; each unreadable one costs a warning, nothing more."""
    total = TestTally(globs=globs)
    for relative in files:
        try:
            total.add(read_report(directory / relative, relative, roots=roots, redactor=reporter.redactor))
        except ReportUnreadable as error:
            total.unreadable.append(f"{relative}: {error}")
            reporter.warning(f"JUnit report {relative} was not read: {error}")
    return total


def collect(
    gateway: Gateway,
    system: str,
    run_dir: str,
    globs: tuple[str, ...],
    destination: Path,
    reporter: Reporter,
    *,
    limits: transfers.Limits,
    account: str | None = None,
    workspace: str = "",
) -> TestTally:
    """Copy the reports back as artifacts are copied, then read them."""
    collected = artifacts.collect(
        gateway,
        system,
        run_dir,
        globs,
        destination,
        reporter,
        limits=limits,
        account=account,
        label="JUnit report",
    )
    return read_reports(destination, collected.files, reporter, roots=(run_dir, workspace), globs=globs)
