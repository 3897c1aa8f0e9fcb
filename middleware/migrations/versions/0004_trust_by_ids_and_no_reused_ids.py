"""trust by GitHub user ids, ids never reused, recorded PR heads, per-pipeline hooks and variables

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 06:30:00

Trusted users become {"id", "login"} objects; the ids of existing logins are unknown here
(no network in a migration), so they are stored as None and a `resolve_trusted_users`
command per repository is queued for the workers. Until then no one is trusted.
repositories and runs get SQLite's AUTOINCREMENT (PostgreSQL sequences never reuse ids).
"""

import datetime as dt
import json

from alembic import op
import sqlalchemy as sa


revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

RESOLVE = "firecrest_ci.resolve_trusted_users"


def _objects(value: object) -> object:
    if value is None:
        return None
    items = value if isinstance(value, list) else json.loads(str(value))
    return [item if isinstance(item, dict) else {"id": None, "login": str(item)} for item in items]


def upgrade() -> None:
    op.create_table(
        "pull_request_heads",
        sa.Column("repository_id", sa.Integer(), nullable=False),
        sa.Column("pr_number", sa.Integer(), nullable=False),
        sa.Column("sha", sa.String(length=64), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_pull_request_heads_repository_id_repositories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("repository_id", "pr_number", "sha", name=op.f("pk_pull_request_heads")),
    )
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.add_column(sa.Column("allowed_variables", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("hook_token_enc", sa.Text(), nullable=True))
    with op.batch_alter_table(
        "runs", schema=None, recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.alter_column(
            "gitlab_pipeline_id", existing_type=sa.Integer(), type_=sa.BigInteger(), existing_nullable=True
        )
    if op.get_bind().dialect.name == "sqlite":
        with op.batch_alter_table(
            "repositories", schema=None, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass
        with op.batch_alter_table(
            "runs", schema=None, recreate="always", table_kwargs={"sqlite_autoincrement": True}
        ):
            pass

    connection = op.get_bind()
    repositories = sa.table("repositories", sa.column("id", sa.Integer), sa.column("trusted_users", sa.JSON))
    pipelines = sa.table("pipelines", sa.column("id", sa.Integer), sa.column("trusted_users", sa.JSON))
    outbox = sa.table(
        "outbox",
        sa.column("task", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("attempts", sa.Integer),
    )
    now = dt.datetime.now(dt.UTC)
    for table in (repositories, pipelines):
        for row_id, users in connection.execute(sa.select(table.c.id, table.c.trusted_users)).all():
            converted = _objects(users)
            if converted != users:
                connection.execute(table.update().where(table.c.id == row_id).values(trusted_users=converted))
    for (repo_id,) in connection.execute(sa.select(repositories.c.id)).all():
        connection.execute(
            outbox.insert().values(
                task=RESOLVE, payload={"repository_id": repo_id}, created_at=now, due_at=now, attempts=0
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.alter_column(
            "gitlab_pipeline_id", existing_type=sa.BigInteger(), type_=sa.Integer(), existing_nullable=True
        )
    with op.batch_alter_table("pipelines", schema=None) as batch_op:
        batch_op.drop_column("hook_token_enc")
        batch_op.drop_column("allowed_variables")
    op.drop_table("pull_request_heads")
