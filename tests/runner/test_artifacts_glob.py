import pytest

from ci_runner.artifacts import glob_to_regex


@pytest.mark.parametrize(
    ("glob", "path", "matches"),
    [
        ("*.txt", "a.txt", True),
        ("*.txt", "d/a.txt", False),
        ("**/*.txt", "d/e/a.txt", True),
        ("**/*.txt", "a.txt", True),
        ("results/**", "results/x/y.bin", True),
        ("./out.log", "out.log", True),
        (".hidden", ".hidden", True),
        ("a?.dat", "ab.dat", True),
        ("a?.dat", "a/.dat", False),
    ],
)
def test_globs(glob, path, matches):
    assert bool(glob_to_regex(glob).fullmatch(path)) is matches
