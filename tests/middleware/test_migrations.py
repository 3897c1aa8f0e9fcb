"""The Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from middleware.migrate import upgrade
from middleware.models import Base


def test_migrations_match_the_models(database_url):
    upgrade(database_url)
    engine = create_engine(database_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    engine.dispose()
    assert differences == []


def test_upgrading_twice_is_harmless(database_url):
    upgrade(database_url)
    upgrade(database_url)


def test_trusted_logins_of_existing_registrations_migrate_to_unresolved_ids(database_url):
    """0004: logins become {"id": None, "login"}, and the workers are asked to resolve them."""
    from sqlalchemy import text

    upgrade(database_url, "0003")
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO repositories (id, provider, full_name, clone_url, webhook_secret_enc, "
                "notification_token_enc, firecrest_client_id, firecrest_client_secret_enc, trusted_users, "
                "branches, source_private, created_at, updated_at) VALUES (7, 'github', 'o/r', 'https://x', "
                "'s', 't', 'c', 'cs', :users, '[]', false, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
            ),
            {"users": '["alice", "Bob"]'},
        )
    upgrade(database_url)
    with engine.connect() as connection:
        users = connection.execute(text("SELECT trusted_users FROM repositories WHERE id = 7")).scalar_one()
        task, payload = connection.execute(text("SELECT task, payload FROM outbox")).one()
    engine.dispose()
    users = json.loads(users) if isinstance(users, str) else users
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert users == [{"id": None, "login": "alice"}, {"id": None, "login": "Bob"}]
    assert (task, payload) == ("firecrest_ci.resolve_trusted_users", {"repository_id": 7})
