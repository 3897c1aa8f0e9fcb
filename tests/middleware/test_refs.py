"""Ref and SHA validation, held against the real `git check-ref-format`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from middleware.refs import MAX_NAME_BYTES, is_sha, ref_problem, safe_full_ref, safe_ref

#: Names git refuses (or we do: `@`, `HEAD`, too long), each for its own rule.
REFUSED = [
    "",
    "release/.x",
    ".hidden",
    "a/.lock",
    "x.lock",
    "x.lock/y",
    "-x",
    "--upload-pack=touch",
    "a..b",
    "@",
    "HEAD",
    "a@{b",
    "a\nb",
    "main\n",
    "a\tb",
    "a\x00b",
    "a\x7fb",
    "a b",
    "a~1",
    "a^",
    "a:b",
    "a?",
    "a*",
    "a[b",
    "a\\b",
    "a//b",
    "/a",
    "a/",
    "a.",
    "a\ud800",
    "x" * (MAX_NAME_BYTES + 1),
]


@pytest.fixture(scope="module")
def git_check(tmp_path_factory: pytest.TempPathFactory):
    """`git check-ref-format` run outside any repository, so `--branch` expands nothing."""
    where: Path = tmp_path_factory.mktemp("no-repo")
    env = {"PATH": os.environ["PATH"], "HOME": str(where), "GIT_CEILING_DIRECTORIES": str(where.parent)}

    def check(*args: str) -> bool:
        done = subprocess.run(["git", "check-ref-format", *args], cwd=where, env=env, capture_output=True)
        return done.returncode == 0

    return check


@pytest.mark.parametrize("name", REFUSED)
def test_names_git_would_refuse_are_refused_with_a_reason(name):
    problem = ref_problem(name)
    assert problem, name
    assert not safe_ref(name)


@pytest.mark.parametrize(
    "name", ["main", "release/2.0", "feature/x-y_z", "a.lock.b", "mäin", "a@b", "x-", "a./b"]
)
def test_ordinary_names_pass(name, git_check):
    assert safe_ref(name)
    assert git_check("--branch", name)


def test_shas_need_a_full_match():
    assert is_sha("a" * 40)
    for value in ("a" * 40 + "\n", "A" * 40, "a" * 39, "a" * 41, "", None, "g" * 40):
        assert not is_sha(value), value


names = st.text(alphabet=st.sampled_from("ab./-@{}~^:?*[\\ \t\n\x7flockHEADé"), max_size=14) | st.text(
    max_size=20
)


@settings(max_examples=400, deadline=None)
@given(name=names)
@example(name="@")
@example(name="-x")
@example(name="HEAD")
@example(name="a/.b")
@example(name="x.lock/y")
@example(name="@{-1}")
def test_branch_names_agree_with_git(name, git_check):
    """Ours == git's `--branch` verdict, and git's own on the name alone (which refuses `@`)."""
    if "\x00" in name:  # no argv can carry it; we refuse it
        assert not safe_ref(name)
        return
    git_says = git_check("--branch", name) and git_check("--allow-onelevel", name)
    assert safe_ref(name) == git_says, (name, ref_problem(name))


@settings(max_examples=300, deadline=None)
@given(name=names)
def test_full_refs_agree_with_git(name, git_check):
    if "\x00" in name:
        assert not safe_full_ref(f"refs/{name}")
        return
    assert safe_full_ref(f"refs/{name}") == git_check(f"refs/{name}"), name
    assert not safe_full_ref(name) or name.startswith("refs/")
