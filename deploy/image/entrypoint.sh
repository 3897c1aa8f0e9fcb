#!/bin/sh
# The middleware image's entrypoint (Dockerfile.middleware): the command picks the role, and the
# role's program is exec'd, so it runs as PID 1 (or under `init: true`) and gets SIGTERM itself.
#   web       `firecrest-ci-middleware web`: the settings checked, then gunicorn with the package's
#             gunicorn.conf.py (BIND, WEB_CONCURRENCY, WEB_THREADS)
#   worker    a Celery worker on the firecrest-ci queue; each worker also runs the dispatcher, so
#             there is no beat to run: more workers (on the same Redis and PostgreSQL) scale it
#   migrate   the database schema to the newest revision, once, before web and workers start
#   beat      refused with the reason (the dispatcher inside every worker does a beat's job)
#   anything else is exec'd as given: `firecrest-ci-middleware check`, `sh`, ...
# Extra arguments after web or worker go to gunicorn or celery (e.g. worker --concurrency 4).
set -eu

role="${1:-web}"
[ "$#" -gt 0 ] && shift

case "$role" in
  web)
    # Checks the settings first (one line for a wrong one), then execs gunicorn.
    exec firecrest-ci-middleware web "$@"
    ;;
  worker)
    # prefetch 1 and late acknowledgement are the app's own settings (middleware/runs/tasks.py).
    exec celery -A middleware.worker:celery worker -Q firecrest-ci --loglevel="${WORKER_LOG_LEVEL:-INFO}" "$@"
    ;;
  migrate)
    exec firecrest-ci-middleware migrate "$@"
    ;;
  beat)
    echo "firecrest-ci middleware: there is no beat to run: every worker runs the dispatcher;" \
      "start more workers instead" >&2
    exit 64
    ;;
  *)
    exec "$role" "$@"
    ;;
esac
