"""Celery entry point: `celery -A middleware.worker:celery worker` (and `beat`)."""

from __future__ import annotations

from middleware.app import create_app
from middleware.services import EXTENSION

app = create_app()
celery = app.extensions[EXTENSION].celery
