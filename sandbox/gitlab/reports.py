"""JUnit test reports in the GitLab stand-in, shaped as GitLab's pipeline test report API gives them.

GitLab collects a job's `artifacts:reports:junit` into one suite named after the job (parallel
jobs `rspec 1/3`, `rspec 2/3` share the suite `rspec`); the XML's own `<testsuite name>` is not
shown. A case's failure text, then its `System Out:` and `System Err:`, go to `system_output`;
GitLab's JUnit parser never fills `stack_trace`, but a test may set it. A report that cannot be
parsed is a `suite_error` with no cases, as GitLab shows it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import ParseError

from junitparser import Error, Failure, JUnitXml, Skipped
from junitparser import TestCase as JUnitCase

STATUSES = ("success", "failed", "skipped", "error")
#: The order GitLab's entity lists a suite's cases in (then slowest first within a status).
_ORDER = {"error": 0, "failed": 1, "success": 2, "skipped": 3}
_PARALLEL = re.compile(r"(\s+\d+/\d+|\s+\[.*\])+$")


@dataclass(frozen=True)
class TestCase:
    """One test case as GitLab's test report shows it."""

    __test__ = False  # not a pytest class

    name: str
    status: str = "success"
    classname: str = ""
    file: str | None = None
    execution_time: float = 0.0
    system_output: str | None = None
    stack_trace: str | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"test case status {self.status!r} is not one of {', '.join(STATUSES)}")

    @classmethod
    def of(cls, value: TestCase | Mapping[str, Any]) -> TestCase:
        if isinstance(value, TestCase):
            return value
        known = {k: value[k] for k in cls.__dataclass_fields__ if k in value}
        unknown = set(value) - set(known)
        if unknown:
            raise ValueError(f"unknown test case fields: {', '.join(sorted(unknown))}")
        if "execution_time" in known:
            known["execution_time"] = float(known["execution_time"] or 0.0)
        return cls(**known)

    def json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "name": self.name,
            "classname": self.classname,
            "file": self.file,
            "execution_time": self.execution_time,
            "system_output": self.system_output,
            "stack_trace": self.stack_trace,
        }


@dataclass
class JobReport:
    """The test report one job uploaded: its cases, or the error parsing them."""

    cases: list[TestCase] = field(default_factory=list)
    suite_error: str | None = None


def _time(value: str | None) -> float:
    try:
        return float(value or 0.0)
    except ValueError:
        return 0.0  # Ruby's "abc".to_f


def parse_junit(xml: str | bytes | Path) -> JobReport:
    """Cases from JUnit XML (a `<testsuites>` or a `<testsuite>` root, nested suites included)."""
    try:
        if isinstance(xml, Path):
            document = JUnitXml.fromfile(str(xml))
        else:
            document = JUnitXml.fromstring(xml.decode() if isinstance(xml, bytes) else xml)
    except ParseError as error:
        return JobReport(suite_error=f"JUnit XML parsing failed: {error}")
    cases = []
    for element in document._elem.iter("testcase"):
        case = JUnitCase.fromelem(element)  # type: ignore[no-untyped-call]
        results = list(case.result)
        outputs = [
            f"{label}:\n\n{text}"
            for label, text in (("System Out", case.system_out), ("System Err", case.system_err))
            if text is not None
        ]
        status, output = "success", None
        for kind, name in ((Failure, "failed"), (Error, "error"), (Skipped, "skipped")):
            found = next((r for r in results if isinstance(r, kind)), None)
            if found is not None:
                status = name
                text = found.text if found.text and found.text.strip() else found.message
                output = "\n\n".join(str(p) for p in [text, *([] if name == "skipped" else outputs)] if p)
                break
        cases.append(
            TestCase(
                name=str(case.name or ""),
                status=status,
                classname=str(case.classname or ""),
                file=element.get("file"),
                execution_time=_time(element.get("time")),
                system_output=output or None,
            )
        )
    return JobReport(cases=cases)


def suite_name(job_name: str) -> str:
    """GitLab's `test_suite_name`: the job's name without a parallel suffix."""
    return _PARALLEL.sub("", job_name).strip() or job_name


@dataclass
class _Suite:
    name: str
    cases: list[TestCase] = field(default_factory=list)
    build_ids: list[int] = field(default_factory=list)
    suite_error: str | None = None

    def counts(self) -> dict[str, int]:
        listed = [] if self.suite_error else self.cases
        found = {status: sum(1 for c in listed if c.status == status) for status in STATUSES}
        return {"total": len(listed), **found}

    def time(self) -> float:
        return 0.0 if self.suite_error else round(sum(c.execution_time for c in self.cases), 6)


def _suites(reports: Iterable[tuple[int, str, JobReport]]) -> list[_Suite]:
    suites: dict[str, _Suite] = {}
    for job_id, job_name, report in reports:
        suite = suites.setdefault(suite_name(job_name), _Suite(suite_name(job_name)))
        suite.cases.extend(report.cases)
        suite.build_ids.append(job_id)
        suite.suite_error = suite.suite_error or report.suite_error
    return list(suites.values())


def report_json(reports: Sequence[tuple[int, str, JobReport]]) -> dict[str, Any]:
    """GET /projects/:id/pipelines/:pid/test_report from (job id, job name, report) of the latest jobs."""
    suites: list[dict[str, Any]] = []
    for suite in _suites(reports):
        counts = suite.counts()
        ordered = sorted(
            [] if suite.suite_error else suite.cases, key=lambda c: (_ORDER[c.status], -c.execution_time)
        )
        suites.append(
            {
                "name": suite.name,
                "total_time": suite.time(),
                "total_count": counts["total"],
                "success_count": counts["success"],
                "failed_count": counts["failed"],
                "skipped_count": counts["skipped"],
                "error_count": counts["error"],
                "suite_error": suite.suite_error,
                "test_cases": [c.json() for c in ordered],
            }
        )
    keys = ("total_count", "success_count", "failed_count", "skipped_count", "error_count")
    return {
        "total_time": round(sum(s["total_time"] for s in suites), 6),
        **{key: sum(s[key] for s in suites) for key in keys},
        "test_suites": suites,
    }


def summary_json(reports: Sequence[tuple[int, str, JobReport]]) -> dict[str, Any]:
    """GET /projects/:id/pipelines/:pid/test_report_summary."""
    suites: list[dict[str, Any]] = []
    for suite in _suites(reports):
        counts = suite.counts()
        suites.append(
            {
                "name": suite.name,
                "total_time": suite.time(),
                "total_count": counts["total"],
                "success_count": counts["success"],
                "failed_count": counts["failed"],
                "skipped_count": counts["skipped"],
                "error_count": counts["error"],
                "build_ids": suite.build_ids,
                "suite_error": suite.suite_error,
            }
        )
    total = {
        "time": round(sum(s["total_time"] for s in suites), 6),
        "count": sum(s["total_count"] for s in suites),
        "success": sum(s["success_count"] for s in suites),
        "failed": sum(s["failed_count"] for s in suites),
        "skipped": sum(s["skipped_count"] for s in suites),
        "error": sum(s["error_count"] for s in suites),
        "suite_error": next((s["suite_error"] for s in suites if s["suite_error"]), None),
    }
    return {"total": total, "test_suites": suites}
