"""gunicorn entry point: `gunicorn -c middleware/gunicorn.conf.py middleware.wsgi:app`."""

from __future__ import annotations

from middleware import health
from middleware.app import create_app
from middleware.settings import Settings, refuse_to_start

with refuse_to_start():
    _configured = Settings().resolved()
    # Without a managed GitLab every accepted push would wait for ever: refuse, loudly, instead
    # of answering "202 queued" (DEMO_MODE excepted). The factory itself stays usable in tests.
    health.require_managed_gitlab(_configured)
    app = create_app(_configured, migrate=False)
