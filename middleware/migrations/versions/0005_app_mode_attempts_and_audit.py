"""GitHub App mode, run attempts, run actions and the audit trail

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26 13:00:00

Repositories get the provider's stable id (`source_id`), their App installation and a
disabled mark; runs get an attempt number (existing runs are attempt 1, and the run key
includes it), who asked for them, and their check run. New tables: run_actions (cancel,
retry, restart), audit_log, installations and hook_redeliveries.
"""

from alembic import op
import sqlalchemy as sa


revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table(
        "repositories", schema=None, recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("source_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("installation_id", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("disabled_reason", sa.Text(), nullable=True))
        batch_op.create_unique_constraint("uq_repositories_provider_source_id", ["provider", "source_id"])
    with op.batch_alter_table(
        "runs", schema=None, recreate="auto", table_kwargs={"sqlite_autoincrement": True}
    ) as batch_op:
        batch_op.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch_op.add_column(sa.Column("requested_by", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("check_run_id", sa.BigInteger(), nullable=True))
        batch_op.drop_constraint("uq_runs_repository_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_runs_repository_id", ["repository_id", "pipeline_name", "sha", "trigger_kind", "attempt"]
        )
    op.create_table(
        "run_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("new_run_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_run_actions_run_id_runs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_actions")),
    )
    op.create_index(op.f("ix_run_actions_run_id"), "run_actions", ["run_id"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("repository_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=60), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["repository_id"],
            ["repositories.id"],
            name=op.f("fk_audit_log_repository_id_repositories"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index(op.f("ix_audit_log_at"), "audit_log", ["at"], unique=False)
    op.create_index(op.f("ix_audit_log_repository_id"), "audit_log", ["repository_id"], unique=False)
    op.create_table(
        "installations",
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("account_login", sa.String(length=200), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("account_type", sa.String(length=20), nullable=False),
        sa.Column("repository_ids", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("suspended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("purge_after", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installations")),
    )
    op.create_table(
        "hook_redeliveries",
        sa.Column("guid", sa.String(length=100), nullable=False),
        sa.Column("delivery_id", sa.BigInteger(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("guid", name=op.f("pk_hook_redeliveries")),
    )


def downgrade() -> None:
    op.drop_table("hook_redeliveries")
    op.drop_table("installations")
    op.drop_index(op.f("ix_audit_log_repository_id"), table_name="audit_log")
    op.drop_index(op.f("ix_audit_log_at"), table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index(op.f("ix_run_actions_run_id"), table_name="run_actions")
    op.drop_table("run_actions")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_runs_repository_id", type_="unique")
        batch_op.create_unique_constraint(
            "uq_runs_repository_id", ["repository_id", "pipeline_name", "sha", "trigger_kind"]
        )
        batch_op.drop_column("check_run_id")
        batch_op.drop_column("requested_by")
        batch_op.drop_column("attempt")
    with op.batch_alter_table("repositories", schema=None) as batch_op:
        batch_op.drop_constraint("uq_repositories_provider_source_id", type_="unique")
        batch_op.drop_column("disabled_reason")
        batch_op.drop_column("disabled_at")
        batch_op.drop_column("installation_id")
        batch_op.drop_column("source_id")
