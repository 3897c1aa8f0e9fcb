#!/bin/sh
# The Action's post step: cancels an HPC job the main step left running
# (when the runner was killed before it could cancel), using $GITHUB_STATE.
exec python -m ci_runner action-post "$@"
