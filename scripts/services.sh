#!/usr/bin/env bash
# Start (or stop) the real services the test suite uses: Redis as the Celery
# broker and PostgreSQL as the production database. Installs Debian's
# redis-server and postgresql when they are missing, Debian's chromium and
# chromium-driver for the pages' browser tests, and nginx, the front the
# tests and `make bench-webhooks` run from deploy/nginx (never started as a
# system service: sandbox/front.py runs it on loopback). Installing takes root,
# or passwordless sudo (GitHub's hosted runners); the services themselves run
# as the calling user on loopback ports, so starting them needs neither.
# Usage: scripts/services.sh start|stop   (prints the env lines to use)
set -euo pipefail

STATE="${FIRECREST_CI_SERVICES_DIR:-${TMPDIR:-/tmp}/firecrest-ci-services}"
REDIS_PORT="${FIRECREST_CI_REDIS_PORT:-6391}"
PG_PORT="${FIRECREST_CI_PG_PORT:-54391}"
ENV_FILE="$STATE/env"
POLICY_RC_D=/usr/sbin/policy-rc.d

pg_bin() {
  local dir
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && { echo "$dir"; return; }
  done
  command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return
  return 1
}

install_missing() {
  local packages=()
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
  pg_bin >/dev/null 2>&1 || packages+=(postgresql)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || packages+=(nginx)
  # The pages' browser tests: Debian's headless Chromium and its driver (Selenium is pointed
  # at /usr/bin/chromedriver, so it never downloads one).
  [ -x /usr/bin/chromium ] || packages+=(chromium)
  [ -x /usr/bin/chromedriver ] || packages+=(chromium-driver)
  # promtool, which checks the example alert rules in deploy/prometheus/.
  command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
  # `systemd-analyze verify` of deploy/systemd (it needs no running systemd; slim images lack it).
  command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
  # wrk: the webhook benchmark's load, which a short test runs so the benchmark cannot rot.
  command -v wrk >/dev/null 2>&1 || packages+=(wrk)
  [ ${#packages[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ] && ! { command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; }; then
    echo "services.sh: missing ${packages[*]}, not root and no passwordless sudo: install them" \
      "(Debian: apt-get install ${packages[*]})" >&2
    exit 1
  fi
  echo "services.sh: installing ${packages[*]}" >&2
  # No package starts its system service meanwhile (nginx's default site would listen on
  # every interface, port 80): a policy-rc.d that refuses, unless one is already there.
  if [ ! -e "$POLICY_RC_D" ]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee "$POLICY_RC_D" >/dev/null
    as_root chmod 755 "$POLICY_RC_D"
    trap 'as_root rm -f "$POLICY_RC_D"' EXIT
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
}

as_root() {
  # Root runs the command itself; anyone else through sudo, never prompting (-n).
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  else
    sudo -n "$@"
  fi
}

as_pg() {
  # PostgreSQL refuses to run as root: use the postgres system user when we are root.
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

start() {
  install_missing
  mkdir -p "$STATE"
  if ! redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; then
    redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
      --daemonize yes --dir "$STATE" --logfile "$STATE/redis.log" --pidfile "$STATE/redis.pid"
  fi
  local bin pgdata="$STATE/pgdata"
  bin="$(pg_bin)"
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$STATE"; fi
  if [ ! -s "$pgdata/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$pgdata" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  if ! as_pg "$bin/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
    as_pg "$bin/pg_ctl" -D "$pgdata" -l "$STATE/postgres.log" -w -o "-p $PG_PORT -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
  fi
  for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done
  redis-cli -p "$REDIS_PORT" ping >/dev/null
  cat >"$ENV_FILE" <<ENV
TEST_REDIS_URL=redis://127.0.0.1:$REDIS_PORT/0
TEST_POSTGRES_URL=postgresql+psycopg://postgres@127.0.0.1:$PG_PORT/postgres
ENV
  cat "$ENV_FILE"
}

stop() {
  redis-cli -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
  local bin
  if bin="$(pg_bin 2>/dev/null)" && [ -d "$STATE/pgdata" ]; then
    as_pg "$bin/pg_ctl" -D "$STATE/pgdata" -m fast stop >/dev/null 2>&1 || true
  fi
}

# Sourced (the tests do, to call one function), it only defines the functions.
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
  esac
fi
