"""The one place the middleware reads its environment (pydantic-settings).

With nothing configured but DEMO_MODE, it runs with no servers: SQLite for
state and Celery's SQLAlchemy transport for the queue. Production sets
DATABASE_URL (PostgreSQL or SQLite) and REDIS_URL (or BROKER_URL).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings import SettingsError as SourceError

from middleware.crypto import SecretBoxError, check_key

#: Webhook bodies above this are refused with 413 before they are parsed.
MAX_WEBHOOK_BYTES = 5 * 1024 * 1024


class SettingsError(RuntimeError):
    """The service cannot start as configured; the message says what to set."""


@contextmanager
def refuse_to_start() -> Iterator[None]:
    """Turn a SettingsError into one readable line and exit status 2, not a traceback."""
    try:
        yield
    except (SettingsError, ValidationError, SourceError) as error:
        line = str(error) if isinstance(error, SettingsError) else one_line(error)
        print(f"firecrest-ci middleware: cannot start: {line}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None


def one_line(error: ValidationError | SourceError) -> str:
    """Pydantic's multi-line report as one line naming each variable; a secret's value is never
    echoed, and nor is any value longer than a short word."""
    if isinstance(error, SourceError):
        found = re.search(r'field "(\w+)"', str(error))
        name = found.group(1).upper() if found else "a setting"
        return f"{name}: cannot be parsed (a list is comma-separated, other values are plain text)"
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]).upper() if item["loc"] else "settings"
        field = Settings.model_fields.get(name.lower())
        shown = item.get("input")
        secret = field is None or field.repr is False
        short = isinstance(shown, str | int) and len(str(shown)) <= 40
        got = f" (got {shown!r})" if short and not secret else ""
        problems.append(f"{name}: {item['msg']}{got}".replace("\n", " "))
    return "; ".join(problems)


class Settings(BaseSettings):
    """Every variable, documented by its `#:` comment (docs/settings.md is made from them).

    Fields with `repr=False` are secrets: never shown, and each can be read from the file that
    `<NAME>_FILE` names instead (see `_secret_files`).
    """

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    data_dir: Path = Field(
        default=Path(".middleware"),
        description="State for the embedded default (SQLite, its queue), the mirror cache and locks.",
    )
    #: SQLAlchemy URL of the database (`postgresql+psycopg://...` in production); empty: SQLite
    #: in DATA_DIR.
    database_url: str = Field(default="", repr=False)
    #: Redis URL of the queue (and of the repository locks); empty: the embedded queue.
    redis_url: str = Field(default="", repr=False)
    #: Celery broker URL, when it is not REDIS_URL.
    broker_url: str = Field(default="", repr=False)
    #: Key of the stored credentials: a Fernet key, or a passphrase of 32 characters or more.
    middleware_secret_key: str = Field(default="", repr=False)
    #: Key ring instead of MIDDLEWARE_SECRET_KEY, comma-separated, new key first: stored
    #: credentials are read with any of them and written with the first (`rotate-key`).
    middleware_secret_keys: str = Field(default="", repr=False)
    #: Bearer token of the operator API.
    admin_token: str = Field(default="", repr=False)
    #: The service's address as the sources and the managed GitLab reach it (hooks, links).
    public_url: str = "http://127.0.0.1:8080"
    #: Prefix of the `run` comments and of the status contexts (`<prefix>/<pipeline>`).
    command_prefix: str = "firecrest-ci"
    #: GitHub's REST API root (GitHub Enterprise Server: `https://<host>/api/v3`).
    github_api_url: str = "https://api.github.com"
    #: Clone URLs must be https on one of these hosts (comma-separated).
    allowed_source_hosts: Annotated[tuple[str, ...], NoDecode] = ("github.com",)
    #: Lets the demo use a plain-HTTP loopback source; off by default, logged loudly when on.
    insecure_sandbox: bool = False
    #: Throwaway secrets, no managed GitLab needed: for the local demo only.
    demo_mode: bool = False
    #: Checking notification tokens live with PyGithub when a registration is saved.
    verify_github_tokens: bool = True
    # GitLab (used by the mirror and pipeline steps)
    #: The managed GitLab that runs the pipelines; required outside DEMO_MODE.
    gitlab_url: str = ""
    #: Its token (api scope) for the mirror projects, their variables and pipelines.
    gitlab_token: str = Field(default="", repr=False)
    #: The group the mirror projects are made in.
    gitlab_group: str = "firecrest-ci"
    #: Shared secret GitLab sends as X-Gitlab-Token on pipeline hooks.
    gitlab_webhook_token: str = Field(default="", repr=False)
    #: The image the published CI/CD component runs ci-runner from.
    runner_image: str = "ghcr.io/firecrest-ci/firecrest-ci:0"  # the release's moving major tag
    # The centre's FirecREST, stored into every mirror project's CI variables.
    #: FirecREST's API root, given to every job.
    firecrest_url: str = ""
    #: The OIDC token endpoint of FirecREST's client credentials.
    firecrest_token_url: str = ""
    #: PyGithub's pause between writes (GitHub asks for one second).
    github_write_interval: float = 1.0
    #: Seconds one request to GitHub may take; a status claim lasts as long as the slowest attempt.
    github_timeout: int = Field(default=10, ge=1)
    #: Seconds after which Redis hands an unacknowledged task to another worker.
    broker_visibility_timeout: int = 3600
    #: How long a repository lock outlives a worker that died holding it.
    mirror_lock_timeout: int = 600
    #: Work handed to the queue that has not progressed after this many seconds is handed out
    #: again (a lost message, a broker restarted without persistence, a worker killed).
    dispatch_lease: int = Field(default=60, ge=1)
    #: How often a running pipeline is read from GitLab when no pipeline hook arrives.
    reconcile_interval: int = Field(default=30, ge=1)
    #: The longest pause between two attempts of a failing step.
    retry_backoff_max: int = Field(default=300, ge=1)
    #: A run that could not start a pipeline within this many seconds ends `error`.
    start_window: int = Field(default=6 * 3600, ge=1)
    #: Reporting a final status keeps trying this long; then the run is marked `unreported`.
    report_window: int = Field(default=24 * 3600, ge=1)
    #: A CA bundle (PEM file) to trust for self-managed GitLab instances registered as sources.
    gitlab_source_ca_file: str | None = None
    #: Bitbucket Cloud's REST API 2.0 and web addresses (stand-ins in tests).
    bitbucket_api_url: str = "https://api.bitbucket.org/2.0"
    #: Bitbucket Cloud's web address (links to its pages).
    bitbucket_url: str = "https://bitbucket.org"
    # GitHub App mode (beside the token mode): set all three to report through check runs.
    #: The App's id; setting it turns App mode on.
    github_app_id: str = ""
    #: The App's private key (PEM), or a file holding it (GITHUB_APP_PRIVATE_KEY_FILE).
    github_app_private_key: str = Field(default="", repr=False)
    #: A file holding the App's private key (PEM), read when it is used.
    github_app_private_key_file: Path | None = None
    #: The App's one webhook secret: in App mode every GitHub delivery is verified with it.
    github_app_webhook_secret: str = Field(default="", repr=False)
    #: OAuth sign-in for repository managers: the App's client id and secret, or an OAuth App's
    #: in token mode.
    github_oauth_client_id: str = ""
    #: The secret of that OAuth client.
    github_oauth_client_secret: str = Field(default="", repr=False)
    #: GitHub's web address (the OAuth authorize page); a stand-in in tests.
    github_url: str = "https://github.com"
    #: Seconds the credentials of repositories whose App installation was removed are kept
    #: (disabled) before they are purged.
    installation_retention: int = Field(default=30 * 24 * 3600, ge=0)
    #: How often the App's failed hook deliveries are looked for and redelivered (seconds).
    hook_sweep_interval: int = Field(default=300, ge=10)
    #: How far back the sweep looks at the App's hook deliveries (seconds).
    hook_sweep_window: int = Field(default=3 * 24 * 3600, ge=60)
    #: Signed-in sessions of the pages expire after this many seconds.
    session_lifetime: int = Field(default=8 * 3600, ge=60)
    #: Session cookies only over HTTPS (browsers treat http://localhost as secure too).
    session_cookie_secure: bool = True
    #: One JSON object per log line (off: plain text).
    log_json: bool = True
    #: DEBUG adds a line per accepted delivery; those are rows of `deliveries` already, and the
    #: line costs a tenth of the answer's time. Refused and failed deliveries log at INFO.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    #: gunicorn's listening address (`host:port`, or `unix:/path`).
    bind: str = "127.0.0.1:8080"
    #: gunicorn worker processes; empty: twice the CPUs.
    web_concurrency: int | None = Field(default=None, ge=1)
    #: Threads per gunicorn worker (more than 1: the gthread worker).
    web_threads: int = Field(default=1, ge=1)
    #: Reverse proxies in front of gunicorn whose X-Forwarded-For/-Proto/-Host/-Port headers
    #: are trusted (the nginx of deploy/nginx: 1). The app then sees the client's address, which
    #: the sign-in limit counts by, instead of nginx's. 0: gunicorn is reached directly and no
    #: such header is believed.
    proxy_count: int = Field(default=0, ge=0, le=5)
    #: Bring the database schema up to date when gunicorn or a worker starts. With several web
    #: replicas, turn it off and run `firecrest-ci-middleware migrate` once per upgrade instead.
    migrate_on_start: bool = True
    #: `prune` deletes stored webhook deliveries (and done outbox commands) older than this many
    #: days; 0 keeps them.
    delivery_retention_days: int = Field(default=30, ge=0)
    #: `prune` deletes finished, reported runs older than this many days; 0 keeps them.
    run_retention_days: int = Field(default=180, ge=0)

    @field_validator("allowed_source_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(h.strip().lower() for h in value.split(",") if h.strip())
        return value

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: Any) -> Any:
        """`<NAME>_FILE` for every secret, so secrets can come from files (Docker or systemd
        credentials) instead of the environment; one trailing newline is dropped."""
        if not isinstance(data, dict):
            return data
        environ = {key.upper(): value for key, value in os.environ.items()}
        for name, field in cls.model_fields.items():
            if field.repr is not False or f"{name}_file" in cls.model_fields:
                continue  # not a secret, or it has its own `_file` setting
            variable = f"{name.upper()}_FILE"
            path = environ.get(variable)
            if not path:
                continue
            if data.get(name):
                raise SettingsError(f"{name.upper()} and {variable} are both set: set one of them")
            try:
                value = Path(path).read_text()
            except (OSError, UnicodeDecodeError) as error:
                reason = getattr(error, "strerror", None) or type(error).__name__
                raise SettingsError(f"{variable}: cannot read {path}: {reason}") from None
            value = value.removesuffix("\n").removesuffix("\r")
            if not value:
                raise SettingsError(f"{variable}: {path} is empty")
            data = {**data, name: value}
        return data

    def secret_key_ring(self) -> list[str]:
        """The keys stored credentials are read with; the first one also writes them."""
        if self.middleware_secret_keys:
            return [key.strip() for key in self.middleware_secret_keys.split(",") if key.strip()]
        return [self.middleware_secret_key] if self.middleware_secret_key else []

    def resolved(self) -> Settings:
        """Fill the embedded defaults; refuse to start without the two secrets outside demo mode."""
        updates: dict[str, object] = {}
        if self.middleware_secret_key and self.middleware_secret_keys:
            raise SettingsError(
                "MIDDLEWARE_SECRET_KEY and MIDDLEWARE_SECRET_KEYS are both set: put every key in "
                "MIDDLEWARE_SECRET_KEYS (new key first) and unset MIDDLEWARE_SECRET_KEY"
            )
        if "," in self.middleware_secret_key:  # a ring in the one-key variable, never read as one
            raise SettingsError(
                "MIDDLEWARE_SECRET_KEY holds a comma: it takes one key; put a key ring "
                "(comma-separated, new key first) in MIDDLEWARE_SECRET_KEYS (or MIDDLEWARE_SECRET_KEYS_FILE)"
            )
        ring = self.secret_key_ring()
        for position, key in enumerate(ring, start=1):
            try:
                check_key(key)
            except SecretBoxError as error:
                where = f"key {position} of MIDDLEWARE_SECRET_KEYS" if self.middleware_secret_keys else ""
                raise SettingsError(f"{error}{f' ({where})' if where else ''}") from None
        missing = [
            name
            for name, value in (
                ("MIDDLEWARE_SECRET_KEY", ring),
                ("ADMIN_TOKEN", self.admin_token),
            )
            if not value
        ]
        if self.github_app_id and not (
            (self.github_app_private_key or self.github_app_private_key_file)
            and self.github_app_webhook_secret
        ):
            raise SettingsError(
                "GITHUB_APP_ID is set, so GITHUB_APP_PRIVATE_KEY (or GITHUB_APP_PRIVATE_KEY_FILE) and "
                "GITHUB_APP_WEBHOOK_SECRET must be set too"
            )
        if self.github_app_private_key_file is not None and not self.github_app_private_key_file.is_file():
            raise SettingsError(
                f"GITHUB_APP_PRIVATE_KEY_FILE: no such file: {self.github_app_private_key_file}"
            )
        if missing and not self.demo_mode:
            raise SettingsError(
                f"{' and '.join(missing)} must be set: the service encrypts stored credentials with "
                "MIDDLEWARE_SECRET_KEY and guards its API with ADMIN_TOKEN (set DEMO_MODE=1 to run "
                "with throwaway values)"
            )
        if missing:
            demo = self._demo_secrets()
            if not ring:
                updates["middleware_secret_key"] = demo["middleware_secret_key"]
            updates["admin_token"] = self.admin_token or demo["admin_token"]
        if not self.database_url:
            updates["database_url"] = f"sqlite:///{(self.data_dir / 'middleware.db').resolve()}"
        if not self.broker_url:
            updates["broker_url"] = self.redis_url or (
                f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"
            )
        return self.model_copy(update=updates)

    def _demo_secrets(self) -> dict[str, str]:
        """Throwaway values, kept in the data dir so every gunicorn worker shares them."""
        path = self.data_dir / "demo-secrets.json"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            loaded: dict[str, str] = json.loads(path.read_text())
            return loaded
        values = {
            "middleware_secret_key": secrets.token_urlsafe(32),
            "admin_token": secrets.token_urlsafe(24),
        }
        with os.fdopen(fd, "w") as handle:
            json.dump(values, handle)
        return values

    @property
    def app_mode(self) -> bool:
        """True when the GitHub App is configured: check runs and installation tokens."""
        return bool(self.github_app_id)

    def app_private_key(self) -> str:
        """The App's PEM key, from the setting or its file."""
        if self.github_app_private_key:
            return self.github_app_private_key
        if self.github_app_private_key_file is not None:
            return self.github_app_private_key_file.read_text()
        return ""

    @property
    def embedded(self) -> bool:
        """True when the queue is the embedded SQLAlchemy transport (no Redis)."""
        return self.broker_url.startswith("sqla+")
