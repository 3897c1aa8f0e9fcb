"""gunicorn settings for the middleware, from the same Settings (a wrong value refuses to start
in one line). Migrations run once, in the master, before workers fork, unless MIGRATE_ON_START is
off: with several web replicas, run `firecrest-ci-middleware migrate` once per upgrade instead."""

from __future__ import annotations

import multiprocessing
from typing import Any

from middleware.settings import Settings, refuse_to_start

with refuse_to_start():
    _settings = Settings().resolved()

bind = _settings.bind
workers = _settings.web_concurrency or multiprocessing.cpu_count() * 2
threads = _settings.web_threads
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
# gunicorn's C HTTP parser (gunicorn-h1c, a dependency): a request's head in a third of the pure
# Python parser's CPU. "fast" refuses to start without it rather than fall back unnoticed.
http_parser = "fast"
timeout = 30
graceful_timeout = 10
accesslog = None
errorlog = "-"


def on_starting(_server: Any) -> None:
    from middleware.migrate import upgrade

    if _settings.migrate_on_start:
        upgrade(_settings.database_url)
