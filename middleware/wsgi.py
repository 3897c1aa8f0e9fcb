"""gunicorn entry point: `gunicorn -c middleware/gunicorn.conf.py middleware.wsgi:app`."""

from __future__ import annotations

from middleware.app import create_app
from middleware.settings import refuse_to_start

with refuse_to_start():
    app = create_app(migrate=False)
