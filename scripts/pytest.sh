#!/usr/bin/env bash
# Runs pytest and turns "no tests collected" (exit 5) into a loud failure:
# a suite that collects nothing has broken, it has not passed.
set -u
python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: the test suite is broken (exit 5)" >&2
  exit 1
fi
exit "$rc"
