"""gunicorn settings for the middleware. Migrations run once, in the master, before workers fork."""

from __future__ import annotations

import multiprocessing
import os
from typing import Any

bind = os.environ.get("BIND", "127.0.0.1:8080")
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2))
threads = int(os.environ.get("WEB_THREADS", "1"))
worker_class = "gthread" if threads > 1 else "sync"
keepalive = 5
timeout = 30
graceful_timeout = 10
accesslog = None
errorlog = "-"


def on_starting(_server: Any) -> None:
    from middleware.migrate import upgrade
    from middleware.settings import Settings, refuse_to_start

    with refuse_to_start():
        upgrade(Settings().resolved().database_url)
