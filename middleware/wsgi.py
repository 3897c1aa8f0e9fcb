"""gunicorn entry point: `gunicorn -c middleware/gunicorn.conf.py middleware.wsgi:app`."""

from __future__ import annotations

from middleware.app import create_app

app = create_app(migrate=False)
