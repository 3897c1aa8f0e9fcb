"""Flask app factory: configuration comes in, blueprints are registered here.

No import-time global state: tests build an app with their own settings, and
the Celery app is created from the same settings (Flask's Celery pattern).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import partial

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from middleware import errors, logs
from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.health import GitLabProbe
from middleware.intake.shortcut import WebhookShortcut
from middleware.migrate import upgrade
from middleware.ops import Metrics
from middleware.runs.dispatcher import Dispatcher
from middleware.runs.steps import Workbench
from middleware.runs.tasks import make_celery, register_tasks
from middleware.services import EXTENSION, Services
from middleware.settings import MAX_WEBHOOK_BYTES, Settings
from middleware.sources import catalogue
from middleware.sources.github.app_auth import GitHubApp
from middleware.sources.github.tokens import TokenChecker
from middleware.sources.github.users import UserResolver


def create_app(
    settings: Settings | None = None,
    *,
    check_github_token: Callable[[str, str], bool] | None = None,
    resolve_github_users: Callable[[str, list[str]], dict[str, int]] | None = None,
    migrate: bool | None = None,
) -> Flask:
    settings = (settings or Settings()).resolved()
    logs.configure(settings.log_json, logging.getLevelName(settings.log_level))
    log = logs.logger()
    if settings.demo_mode:
        log.warning(
            "DEMO_MODE: using throwaway MIDDLEWARE_SECRET_KEY/ADMIN_TOKEN from %s; never in production",
            settings.data_dir / "demo-secrets.json",
        )
    if settings.insecure_sandbox:
        log.warning(
            "INSECURE_SANDBOX is ON: plain-HTTP loopback clone URLs are accepted. This is for the "
            "local demo and tests only; never enable it in production."
        )
    if settings.database_url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.migrate_on_start if migrate is None else migrate:
        upgrade(settings.database_url)

    app = Flask("middleware")
    app.wsgi_app = WebhookShortcut(app, app.wsgi_app)  # type: ignore[method-assign]
    if settings.proxy_count:  # the client's address and scheme, as the front saw them
        hops = settings.proxy_count
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops, x_host=hops, x_port=hops)  # type: ignore[method-assign]
    app.config["MAX_CONTENT_LENGTH"] = MAX_WEBHOOK_BYTES
    db = Database(settings.database_url)
    celery = make_celery(settings, app)
    box = SecretBox(settings.secret_key_ring())
    github_app = GitHubApp(settings) if settings.app_mode else None
    workbench = None
    if settings.gitlab_url:
        workbench = partial(Workbench.build, settings, db, box, github_app=github_app)
    resolver = resolve_github_users or UserResolver(settings.github_api_url)
    register_tasks(celery, db, settings, workbench, resolver, box, github_app=github_app)
    app.extensions[EXTENSION] = Services(
        settings=settings,
        db=db,
        box=box,
        dispatch=Dispatcher(db, celery, settings.dispatch_lease, settings.broker_url).once,
        check_github_token=check_github_token or TokenChecker(settings.github_api_url),
        resolve_github_users=resolver,
        sources=catalogue.build(settings, db),
        celery=celery,
        github_app=github_app,
    )
    app.extensions["firecrest_ci_metrics"] = Metrics(GitLabProbe(settings.gitlab_url, settings.gitlab_token))

    from middleware import openapi, ops
    from middleware.intake import pipeline_hooks as gitlab_hook
    from middleware.intake import trigger_api
    from middleware.intake import webhooks as intake
    from middleware.registry import api as registry_api

    for blueprint in (ops.bp, registry_api.bp, trigger_api.bp, intake.bp, gitlab_hook.bp, openapi.bp):
        app.register_blueprint(blueprint)
    from middleware.registry import runs_api
    from middleware.web import runs as web_runs

    app.register_blueprint(runs_api.bp)  # POST /api/runs/<id>/cancel|retry|restart
    app.register_blueprint(web_runs.bp)  # the run viewer's pages
    from middleware.web import pages
    from middleware.web.security import is_page_request

    pages.register(app, settings)  # sign-in, repositories, setup, audit; CSRF, CSP, sessions

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        if is_page_request():
            return pages.error_page(error)
        code = error.code or 500
        text = {
            413: f"the body is larger than {MAX_WEBHOOK_BYTES // (1024 * 1024)} MB",
        }.get(code, error.description or error.name)
        return Response(f"{text}\n", status=code, mimetype="text/plain", headers=errors.error_headers(error))

    errors.register(app)
    return app
