"""Incremental mirror against a fresh clone and push, on a generated repository.

The source has 5,000 commits and about 2,000 files and 50 MB (random, so
incompressible), served by the GitLab stand-in over real git smart HTTP.
The fresh path fetches everything into an empty cache and pushes it to an
empty mirror project; the incremental path fetches one new commit into the
warm cache and pushes it. Targets: incremental <= 0.5 s and <= 0.1 x fresh.

    python -m benchmarks.mirror_incremental [--files 2000] [--commits 5000] [--megabytes 50]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import gitlab

from middleware.runs.mirror import Mirror, SourceRef, mirror_ref
from sandbox.gitlab.server import run_gitlab


def git(cwd: Path, *args: str, data: bytes | None = None) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org", *args],
        cwd=cwd, input=data, capture_output=True, check=True,
    )  # fmt: skip
    return done.stdout.decode().strip()


def generate(work: Path, files: int, commits: int, megabytes: int) -> None:
    """One big commit of random files, then small commits, through git fast-import."""
    git(work, "init", "-q", "-b", "main")
    size = megabytes * 1024 * 1024 // files
    stream = bytearray()
    when = 1_700_000_000
    stream += b"commit refs/heads/main\nmark :1\n"
    stream += f"committer Bench <bench@example.org> {when} +0000\n".encode()
    stream += b"data 7\ninitial\n"
    for index in range(files):
        blob = os.urandom(size)
        stream += f"M 644 inline data/{index // 100:02d}/file-{index:04d}.bin\ndata {len(blob)}\n".encode()
        stream += blob + b"\n"
    for number in range(2, commits + 1):
        content = f"step {number}\n".encode()
        stream += f"commit refs/heads/main\nmark :{number}\n".encode()
        stream += f"committer Bench <bench@example.org> {when + number} +0000\n".encode()
        stream += f"data {len(f'step {number}')}\nstep {number}\n".encode()
        stream += f"from :{number - 1}\n".encode()
        stream += f"M 644 inline progress.txt\ndata {len(content)}\n".encode() + content + b"\n"
    git(work, "fast-import", "--quiet", data=bytes(stream))
    git(work, "checkout", "-q", "main")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--commits", type=int, default=5000)
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="firecrest-ci-mirror-bench-") as tmp_name:
        tmp = Path(tmp_name)
        work = tmp / "work"
        work.mkdir()
        started = time.perf_counter()
        generate(work, args.files, args.commits, args.megabytes)
        count = git(work, "rev-list", "--count", "HEAD")
        size = sum(p.stat().st_size for p in (work / ".git").rglob("*") if p.is_file()) / 1e6
        print(
            f"generated {count} commits, {args.files} files, {size:.0f} MB in .git "
            f"({time.perf_counter() - started:.1f} s)"
        )
        with run_gitlab(tmp / "gitlab") as gl:
            client = gitlab.Gitlab(gl.url, private_token=gl.token)
            group = client.groups.create({"name": "bench", "path": "bench"})
            source = client.projects.create(
                {"name": "src", "path": "src", "namespace_id": group.id, "visibility": "public"}
            )
            authed = source.http_url_to_repo.replace("http://", f"http://oauth2:{gl.token}@")
            git(work, "push", "-q", authed, "main")

            def fresh_once(n: int) -> float:
                target = client.projects.create(
                    {"name": f"fresh{n}", "path": f"fresh{n}", "namespace_id": group.id}
                )
                mirror = Mirror(tmp / f"cache-fresh-{n}", gl.token)
                head = git(work, "rev-parse", "HEAD")
                t0 = time.perf_counter()
                sha = mirror.fetch(1, source.http_url_to_repo, SourceRef.for_trigger("main", head))
                mirror.push(1, target.http_url_to_repo, sha, mirror_ref("main"))
                return time.perf_counter() - t0

            fresh = [fresh_once(n) for n in range(2)]
            target = client.projects.create({"name": "warm", "path": "warm", "namespace_id": group.id})
            mirror = Mirror(tmp / "cache-warm", gl.token)
            head = git(work, "rev-parse", "HEAD")
            mirror.push(
                1,
                target.http_url_to_repo,
                mirror.fetch(1, source.http_url_to_repo, SourceRef.for_trigger("main", head)),
                "refs/heads/main",
            )
            incremental = []
            for step in range(args.repeat):
                (work / "progress.txt").write_text(f"new commit {step}\n")
                git(work, "commit", "-q", "-am", f"new commit {step}")
                git(work, "push", "-q", authed, "main")
                head = git(work, "rev-parse", "HEAD")
                t0 = time.perf_counter()
                sha = mirror.fetch(1, source.http_url_to_repo, SourceRef.for_trigger("main", head))
                mirror.push(1, target.http_url_to_repo, sha, mirror_ref("main"))
                incremental.append(time.perf_counter() - t0)
                assert sha == head
        fresh_s = statistics.median(fresh)
        inc_s = statistics.median(incremental)
        print()
        print(f"fresh fetch + push        median {fresh_s:6.2f} s  ({', '.join(f'{x:.2f}' for x in fresh)})")
        print(
            f"incremental fetch + push  median {inc_s:6.3f} s  ({', '.join(f'{x:.3f}' for x in incremental)})"
        )
        print(f"incremental / fresh       {inc_s / fresh_s:6.3f}  (targets: <= 0.5 s and <= 0.1)")
        return 0 if inc_s <= 0.5 and inc_s / fresh_s <= 0.1 else 1


if __name__ == "__main__":
    sys.exit(main())
