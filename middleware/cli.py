"""`firecrest-ci-middleware`: what an operator runs beside the service.

- `migrate`: the schema to the newest revision. gunicorn and the workers do it on start-up
  (MIGRATE_ON_START); with several replicas, turn that off and run this once per upgrade, so
  replicas never race each other's migrations.
- `check`: the settings, then the database, the broker, the managed GitLab and each source
  provider in use, one line each; exit status 1 when any has a problem.
- `rotate-key`: every stored secret rewritten under the first key of MIDDLEWARE_SECRET_KEYS.
- `prune`: old deliveries, done outbox commands and finished runs past their retention.

Every line is scrubbed of the configured secrets: a password inside a URL or an error message
never reaches the terminal or a CI log.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NoReturn
from urllib.parse import urlsplit

import click
import httpx
from pydantic import ValidationError
from pydantic_settings import SettingsError as SourceError
from sqlalchemy import Column, ColumnElement, Table, delete, exists, func, select, text, update
from sqlalchemy.engine import make_url

from middleware.crypto import KEY_RING_TEXT, SecretBox, SecretBoxError
from middleware.db import Database
from middleware.health import gitlab_problem
from middleware.models import Base, Delivery, OutboxItem, Repository, Run, utcnow
from middleware.runs.reporting import FINAL_STATES
from middleware.settings import Settings, SettingsError, one_line

#: How long `check` waits for each service.
TIMEOUT = 5.0
#: Rows per transaction in `rotate-key` and `prune`: short transactions, so the service runs on.
BATCH = 500


def _settings() -> Settings:
    """The resolved settings, or one line naming what is wrong and exit status 2."""
    try:
        return Settings().resolved()
    except (SettingsError, ValidationError, SourceError) as error:
        _fail(f"settings: {error if isinstance(error, SettingsError) else one_line(error)}", status=2)


def _fail(line: str, status: int = 1) -> NoReturn:
    click.echo(f"firecrest-ci-middleware: {line}", err=True)
    sys.exit(status)


#: Secret settings that are URLs: only their passwords are secrets, the rest is worth showing.
URLS = ("database_url", "redis_url", "broker_url")


def _secrets(settings: Settings) -> list[str]:
    """Every configured secret value, and the passwords inside the URLs, to scrub from output."""
    values = [
        str(getattr(settings, name) or "")
        for name, info in Settings.model_fields.items()
        if info.repr is False and name not in URLS
    ]
    values += settings.secret_key_ring()
    for url in (getattr(settings, name) for name in URLS):
        try:
            password = urlsplit(url).password
        except ValueError:  # cannot tell its password from the rest: all of it is a secret
            password = url
        if password:
            values.append(password)
    return sorted({v for v in values if len(v) >= 4}, key=len, reverse=True)


def _scrub(line: str, secrets: list[str]) -> str:
    for value in secrets:
        line = line.replace(value, "***")
    return line


def _safe_url(url: str) -> str:
    """A URL as shown: no user or password."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _masked_url(url: str) -> str:
    """A service's URL as shown: its password masked (`redis://:***@host:6379/0`), no query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "(unparsable URL)"
    if ":" in host:
        host = f"[{host}]"
    user = ""
    if parts.username is not None or parts.password is not None:
        user = (parts.username or "") + (":***" if parts.password is not None else "") + "@"
    return f"{parts.scheme}://{user}{host}{port}{parts.path}"


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Operate the firecrest-ci middleware: it reads the same environment as the service."""


# -- web -------------------------------------------------------------------------------------------


@main.command(context_settings={"ignore_unknown_options": True})
@click.argument("gunicorn_args", nargs=-1, type=click.UNPROCESSED)
def web(gunicorn_args: tuple[str, ...]) -> None:
    """Start the web tier: gunicorn with the package's configuration, once the settings hold.

    gunicorn reads WEB_CONCURRENCY itself before any configuration of ours, so a wrong value
    would end in its traceback; checked here first, a wrong setting is one line. Extra
    arguments go to gunicorn."""
    import os
    from pathlib import Path

    from middleware import health

    settings = _settings()
    try:
        health.require_managed_gitlab(settings)
    except SettingsError as error:
        _fail(str(error), status=2)
    conf = Path(__file__).resolve().parent / "gunicorn.conf.py"
    gunicorn = Path(sys.executable).parent / "gunicorn"
    command = [str(gunicorn), "-c", str(conf), *gunicorn_args, "middleware.wsgi:app"]
    os.execv(command[0], command)  # noqa: S606 - gunicorn replaces this process (the unit's main PID)


# -- migrate ---------------------------------------------------------------------------------------


@main.command()
def migrate() -> None:
    """Bring the database schema to the newest revision (idempotent)."""
    from middleware.migrate import upgrade

    settings = _settings()
    secrets = _secrets(settings)
    try:
        upgrade(settings.database_url)
    except Exception as error:  # noqa: BLE001 - one line, not a traceback with the URL in it
        _fail(_scrub(f"migrate: {type(error).__name__}: {error}", secrets).splitlines()[0])
    click.echo(f"ok: database schema at revision {_revisions(settings.database_url)[0]}")


def bounded(database_url: str) -> str:
    """PostgreSQL's URL with a connect timeout, so `check` does not hang on a host that is away."""
    url = make_url(database_url)
    if url.get_backend_name() != "postgresql" or "connect_timeout" in url.query:
        return database_url
    return url.update_query_dict({"connect_timeout": str(int(TIMEOUT))}).render_as_string(hide_password=False)


def _revisions(database_url: str) -> tuple[str | None, str | None]:
    """(the database's revision, the newest one)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from middleware.migrate import alembic_config

    head = ScriptDirectory.from_config(alembic_config(database_url)).get_current_head()
    db = Database(bounded(database_url))
    try:
        with db.engine.connect() as connection:
            current = MigrationContext.configure(connection).get_current_revision()
    finally:
        db.dispose()
    return current, head


# -- check -----------------------------------------------------------------------------------------


@dataclass
class Report:
    """The lines of `check`, scrubbed; `problems` decides the exit status."""

    secrets: list[str]
    problems: int = 0

    def ok(self, what: str, detail: str) -> None:
        click.echo(_scrub(f"ok: {what}: {detail}", self.secrets))

    def problem(self, what: str, detail: str) -> None:
        self.problems += 1
        click.echo(_scrub(f"problem: {what}: {detail}", self.secrets).replace("\n", " "))

    @contextmanager
    def probing(self, what: str) -> Iterator[None]:
        """Any failure inside is one problem line: its type and first line."""
        try:
            yield
        except Exception as error:  # noqa: BLE001 - check reports, it does not crash
            first = (str(error).strip().splitlines() or [""])[0][:300]
            self.problem(what, f"{type(error).__name__}: {first}" if first else type(error).__name__)


@main.command()
def check() -> None:
    """Validate the settings and reach every service the middleware needs; exit 1 on any problem."""
    settings = _settings()
    report = Report(_secrets(settings))
    report.ok("settings", "valid")
    providers = _check_database(settings, report)
    if providers is not None:
        _check_key_ring(settings, report)
    _check_broker(settings, report)
    problem = gitlab_problem(settings.gitlab_url, settings.gitlab_token, timeout=TIMEOUT)
    if problem is None:
        report.ok("managed GitLab", f"{_safe_url(settings.gitlab_url)} answers and takes GITLAB_TOKEN")
    else:
        report.problem("managed GitLab", problem)
    _check_providers(settings, providers, report)
    if report.problems:
        click.echo(f"{report.problems} problem(s)", err=True)
        sys.exit(1)


def _check_database(settings: Settings, report: Report) -> dict[str, list[str]] | None:
    """Reach the database and compare its schema with the newest; the clone URLs by provider."""
    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    found: dict[str, list[str]] | None = None
    with report.probing("database"):
        current, head = _revisions(settings.database_url)
        if current != head:
            report.problem(
                "database",
                f"{shown} is at schema revision {current or 'none'}, the newest is {head}: "
                "run `firecrest-ci-middleware migrate`",
            )
            return None
        db = Database(bounded(settings.database_url))
        try:
            with db.session() as session:
                found = {}
                for provider, clone_url in session.execute(select(Repository.provider, Repository.clone_url)):
                    found.setdefault(str(provider), []).append(str(clone_url))
        finally:
            db.dispose()
        report.ok("database", f"{shown} reachable, schema at {head}")
    return found


def _check_key_ring(settings: Settings, report: Report) -> None:
    """Open one stored secret, if any is stored: a wrong or lost key ring is one problem line."""
    with report.probing("key ring"):
        db = Database(bounded(settings.database_url))
        try:
            where, sealed = _one_sealed(db)
        finally:
            db.dispose()
        if sealed is None:
            return  # nothing stored yet: any key will do
        try:
            SecretBox(settings.secret_key_ring()).open(sealed)
        except SecretBoxError:
            report.problem(
                "key ring",
                f"{KEY_RING_TEXT} ({where} is one; `firecrest-ci-middleware rotate-key` lists them all)",
            )
            return
        report.ok("key ring", "opens the stored credentials")


def _one_sealed(db: Database) -> tuple[str, str | None]:
    """(where, ciphertext) of the first stored secret found; ("", None) when none is stored."""
    with db.session() as session:
        for table, key, columns in sealed_columns():
            for column in columns:
                row = session.execute(select(key, column).where(column.is_not(None)).limit(1)).first()
                if row is not None:
                    return f"{table.name}.{column.name} of {key.name} {row[0]}", str(row[1])
    return "", None


def _check_broker(settings: Settings, report: Report) -> None:
    from middleware.runs.tasks import make_celery

    with report.probing("broker"):
        celery = make_celery(settings)
        with celery.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=TIMEOUT)
        report.ok("broker", f"{_masked_url(settings.broker_url)} reachable")


def _check_providers(settings: Settings, registered: dict[str, list[str]] | None, report: Report) -> None:
    """GitHub when App mode is on or repositories use it (or the database could not say); the
    other providers for their registrations. Reachable means any HTTP answer below 500."""
    registered = registered if registered is not None else {"github": []}
    with httpx.Client(timeout=TIMEOUT, follow_redirects=False) as client:
        if settings.app_mode:
            with report.probing("GitHub App"):
                _check_app(settings, client, report)
        elif "github" in registered:
            root = settings.github_api_url.rstrip("/") + "/"
            _reach(report, client, "GitHub", root)
        if "bitbucket" in registered:
            _reach(report, client, "Bitbucket", settings.bitbucket_api_url.rstrip("/") + "/user")
        if "gitlab" in registered:
            from middleware.sources.gitlab.api import instance_url

            instances = set()
            for clone_url in registered["gitlab"]:
                try:
                    instances.add(instance_url(clone_url))
                except ValueError as error:
                    report.problem("GitLab source", str(error))
            verify: Any = settings.gitlab_source_ca_file or True
            with httpx.Client(timeout=TIMEOUT, verify=verify) as gitlab_client:
                for instance in sorted(instances):
                    _reach(report, gitlab_client, f"GitLab source {instance}", f"{instance}/api/v4/version")


def _check_app(settings: Settings, client: httpx.Client, report: Report) -> None:
    from middleware.sources.github.app_auth import GitHubApp

    jwt = GitHubApp(settings).jwt()
    url = settings.github_api_url.rstrip("/") + "/app"
    answer = client.get(
        url, headers={"Authorization": f"Bearer {jwt}", "Accept": "application/vnd.github+json"}
    )
    if answer.status_code == 200:
        report.ok("GitHub App", f"{settings.github_api_url} knows App {settings.github_app_id}")
    elif answer.status_code in (401, 403, 404):
        report.problem(
            "GitHub App",
            f"{settings.github_api_url} refused the App's token (HTTP {answer.status_code}): "
            "check GITHUB_APP_ID and the private key",
        )
    else:
        report.problem("GitHub App", f"{settings.github_api_url} answered HTTP {answer.status_code}")


def _reach(report: Report, client: httpx.Client, what: str, url: str) -> None:
    with report.probing(what):
        answer = client.get(url)
        if answer.status_code >= 500:
            report.problem(what, f"{_safe_url(url)} answered HTTP {answer.status_code}")
        else:
            report.ok(what, f"{_safe_url(url)} answers")


# -- rotate-key ------------------------------------------------------------------------------------


def sealed_columns() -> list[tuple[Table, Column[Any], list[Column[Any]]]]:
    """(table, primary key, `*_enc` columns) of every table that stores secrets."""
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [column for column in table.columns if column.name.endswith("_enc")]
        if columns:
            (key,) = table.primary_key.columns
            found.append((table, key, columns))
    return found


@dataclass
class Rotation:
    rotated: int = 0
    current: int = 0
    unreadable: list[str] = field(default_factory=list)


def rotate(db: Database, box: SecretBox, batch: int = BATCH) -> Rotation:
    """Rewrite every stored secret under the newest key, a batch per transaction.

    Idempotent: a value already under the newest key is left alone. Each write is a
    compare-and-set, so a value the service changed meanwhile (written under the newest key,
    since the service encrypts with the first key of the same ring) is never overwritten.
    """
    done = Rotation()
    for table, key, columns in sealed_columns():
        last: Any = None
        while True:
            with db.session() as session:
                query = select(key, *columns).order_by(key).limit(batch)
                if last is not None:
                    query = query.where(key > last)
                rows = session.execute(query).all()
                for row in rows:
                    last = row[0]
                    for column, value in zip(columns, row[1:], strict=True):
                        if value is None or box.is_current(value):
                            done.current += value is not None
                            continue
                        try:
                            fresh = box.rotate(value)
                        except SecretBoxError:
                            done.unreadable.append(f"{table.name}.{column.name} of {key.name} {row[0]}")
                            continue
                        session.execute(
                            update(table).where(key == row[0], column == value).values({column.name: fresh})
                        )
                        done.rotated += 1
            if len(rows) < batch:
                break
    return done


@main.command("rotate-key")
@click.option("--batch", default=BATCH, show_default=True, help="Rows per transaction.")
def rotate_key(batch: int) -> None:
    """Re-encrypt every stored secret under the first key of MIDDLEWARE_SECRET_KEYS.

    Without downtime: (1) give every process the ring `old,new` (reads both, still writes the
    old key), (2) then `new,old` (writes the new key), (3) run this, (4) drop the old key.
    Running it again changes nothing.
    """
    settings = _settings()
    ring = settings.secret_key_ring()
    db = Database(settings.database_url)
    try:
        done = rotate(db, SecretBox(ring), batch)
    except Exception as error:  # noqa: BLE001 - one scrubbed line, not a traceback
        _fail(_scrub(f"rotate-key: {type(error).__name__}: {error}", _secrets(settings)).splitlines()[0])
    finally:
        db.dispose()
    click.echo(f"ok: {done.rotated} secret(s) re-encrypted, {done.current} already under the newest key")
    if done.unreadable:
        for where in done.unreadable:
            click.echo(f"problem: {where} cannot be decrypted with any key of the ring", err=True)
        _fail(f"{len(done.unreadable)} secret(s) left as they were: add their key to the ring")
    if len(ring) > 1:
        click.echo("every stored secret is under the first key now: the others can leave the ring")


# -- prune -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prunable:
    """One kind of row `prune` deletes, and when a row of it may go."""

    name: str
    table: Table
    key: Column[Any]
    where: Callable[[dt.datetime], ColumnElement[bool]]


def prunables() -> dict[str, list[Prunable]]:
    """By retention setting. Never a run still moving or reporting, never a command not done,
    and never a delivery whose command is not done (deleting it would cascade to the command).
    Done commands go first, so that a dry run counts what the real one deletes."""
    tables = Base.metadata.tables
    deliveries, outbox, runs = tables["deliveries"], tables["outbox"], tables["runs"]
    waiting = exists().where(OutboxItem.delivery_id == Delivery.id, OutboxItem.done_at.is_(None))
    return {
        "delivery": [
            Prunable(
                "done outbox commands",
                outbox,
                outbox.c.id,
                lambda cut: OutboxItem.done_at.is_not(None) & (OutboxItem.done_at < cut),
            ),
            Prunable(
                "deliveries", deliveries, deliveries.c.id, lambda cut: (Delivery.received_at < cut) & ~waiting
            ),
        ],
        "run": [
            Prunable(
                "finished runs",
                runs,
                runs.c.id,
                lambda cut: (
                    Run.state.in_(FINAL_STATES)
                    & Run.finished_at.is_not(None)
                    & (Run.finished_at < cut)
                    & Run.next_check_at.is_(None)
                    & ((Run.posted_seq >= Run.status_seq) | Run.unreported.is_(True))
                ),
            )
        ],
    }


def prune_rows(
    db: Database,
    retention: dict[str, int],
    *,
    dry_run: bool,
    batch: int = BATCH,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Count (dry run) or delete, a batch per transaction, what is past its retention in days
    (0: kept for ever). Returns the rows by kind."""
    now = now or utcnow()
    counts: dict[str, int] = {}
    for setting, kinds in prunables().items():
        days = retention[setting]
        if days <= 0:
            continue
        cut = now - dt.timedelta(days=days)
        for kind in kinds:
            condition = kind.where(cut)
            if dry_run:
                with db.session() as session:
                    counted = select(func.count()).select_from(kind.table).where(condition)
                    counts[kind.name] = int(session.scalar(counted) or 0)
                continue
            counts[kind.name] = 0
            while True:
                with db.session() as session:
                    ids = list(session.scalars(select(kind.key).where(condition).limit(batch)))
                    if ids:  # the condition again: a row that came back to life meanwhile stays
                        session.execute(delete(kind.table).where(kind.key.in_(ids), condition))
                counts[kind.name] += len(ids)
                if len(ids) < batch:
                    break
    return counts


@main.command()
@click.option("--dry-run", is_flag=True, help="Count what would be deleted; delete nothing.")
@click.option("--delivery-retention-days", type=click.IntRange(min=0), help="[DELIVERY_RETENTION_DAYS]")
@click.option("--run-retention-days", type=click.IntRange(min=0), help="[RUN_RETENTION_DAYS]")
@click.option("--batch", default=BATCH, show_default=True, help="Rows per transaction.")
def prune(
    dry_run: bool, delivery_retention_days: int | None, run_retention_days: int | None, batch: int
) -> None:
    """Delete deliveries, done outbox commands and finished runs past their retention."""
    settings = _settings()
    retention = {
        "delivery": settings.delivery_retention_days
        if delivery_retention_days is None
        else delivery_retention_days,
        "run": settings.run_retention_days if run_retention_days is None else run_retention_days,
    }
    db = Database(settings.database_url)
    try:
        with db.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        counts = prune_rows(db, retention, dry_run=dry_run, batch=batch)
    except Exception as error:  # noqa: BLE001 - one scrubbed line, not a traceback
        _fail(_scrub(f"prune: {type(error).__name__}: {error}", _secrets(settings)).splitlines()[0])
    finally:
        db.dispose()
    verb = "would delete" if dry_run else "deleted"
    for name, count in counts.items():
        click.echo(f"{verb} {count} {name}")
    if not counts:
        click.echo("nothing to prune: both retentions are 0 (kept for ever)")


if __name__ == "__main__":
    main()
