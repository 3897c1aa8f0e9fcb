#!/bin/sh
# The Action's container entrypoint. `exec` makes Python PID 1, so the
# SIGINT/SIGTERM GitHub sends on cancel reach the runner, which cancels the job.
exec python -m ci_runner action "$@"
