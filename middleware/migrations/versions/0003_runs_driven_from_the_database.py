"""runs driven from the database: schedule, tickets, statuses to report; outbox done when done

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 06:30:00

Accepted triggers are written as runs in the intake's transaction from now on, so
triggers still waiting in the outbox (task `firecrest_ci.record_run`) become runs
here. Runs not yet final are due at once; final ones count as reported.
"""

import datetime as dt
import json

from alembic import op
import sqlalchemy as sa


revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

RECORD_RUN = "firecrest_ci.record_run"
FINAL = ("success", "failed", "canceled", "error")


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("due_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("done_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("epoch", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("picked", sa.Boolean(), server_default="0", nullable=False))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("ticket", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("picked_ticket", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("dispatched_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("dispatch_epoch", sa.String(length=40), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("last_error", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("status_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("status_state", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("status_description", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("status_url", sa.String(length=500), nullable=True))
        batch_op.add_column(sa.Column("posted_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("tried_seq", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("status_claim_until", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("unreported", sa.Boolean(), server_default="0", nullable=False))

    connection = op.get_bind()
    now = dt.datetime.now(dt.UTC)
    outbox = sa.table(
        "outbox",
        sa.column("id", sa.Integer),
        sa.column("task", sa.String),
        sa.column("payload", sa.JSON),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("published_at", sa.DateTime(timezone=True)),
        sa.column("due_at", sa.DateTime(timezone=True)),
        sa.column("done_at", sa.DateTime(timezone=True)),
    )
    runs = sa.table(
        "runs",
        sa.column("id", sa.Integer),
        sa.column("repository_id", sa.Integer),
        sa.column("pipeline_name", sa.String),
        sa.column("sha", sa.String),
        sa.column("trigger_kind", sa.String),
        sa.column("ref", sa.String),
        sa.column("pr_number", sa.Integer),
        sa.column("variables", sa.JSON),
        sa.column("reason", sa.Text),
        sa.column("state", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("updated_at", sa.DateTime(timezone=True)),
        sa.column("next_check_at", sa.DateTime(timezone=True)),
    )
    keys = {
        tuple(row)
        for row in connection.execute(
            sa.select(runs.c.repository_id, runs.c.pipeline_name, runs.c.sha, runs.c.trigger_kind)
        )
    }
    for item_id, payload in connection.execute(
        sa.select(outbox.c.id, outbox.c.payload).where(outbox.c.task == RECORD_RUN)
    ).all():
        trigger = payload if isinstance(payload, dict) else json.loads(payload)
        key = (trigger["repository_id"], trigger["pipeline"], trigger["sha"], trigger["kind"])
        if key not in keys:
            keys.add(key)
            connection.execute(
                runs.insert().values(
                    repository_id=key[0],
                    pipeline_name=key[1],
                    sha=key[2],
                    trigger_kind=key[3],
                    ref=trigger["ref"],
                    pr_number=trigger.get("pr_number"),
                    variables=trigger.get("variables") or {},
                    reason=trigger.get("reason", ""),
                    state="queued",
                    created_at=now,
                    updated_at=now,
                    next_check_at=now,
                )
            )
        connection.execute(outbox.update().where(outbox.c.id == item_id).values(done_at=now))
    connection.execute(
        outbox.update()
        .where(outbox.c.done_at.is_(None), outbox.c.published_at.is_not(None))
        .values(done_at=outbox.c.published_at)
    )
    connection.execute(outbox.update().values(due_at=outbox.c.created_at))
    connection.execute(runs.update().where(runs.c.state.not_in(FINAL)).values(next_check_at=now))

    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.alter_column("due_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index(
        "ix_outbox_due",
        "outbox",
        ["due_at"],
        unique=False,
        sqlite_where=sa.text("done_at IS NULL"),
        postgresql_where=sa.text("done_at IS NULL"),
    )
    op.create_index(
        "ix_runs_next_check_at",
        "runs",
        ["next_check_at"],
        unique=False,
        sqlite_where=sa.text("next_check_at IS NOT NULL"),
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_index("ix_runs_gitlab_pipeline_id", "runs", ["gitlab_pipeline_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_runs_gitlab_pipeline_id", table_name="runs")
    op.drop_index("ix_runs_next_check_at", table_name="runs")
    op.drop_index("ix_outbox_due", table_name="outbox")
    with op.batch_alter_table("runs", schema=None) as batch_op:
        for name in (
            "unreported",
            "status_claim_until",
            "tried_seq",
            "posted_seq",
            "status_url",
            "status_description",
            "status_state",
            "status_seq",
            "finished_at",
            "last_error",
            "attempts",
            "ticket",
            "next_check_at",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("picked")
        batch_op.drop_column("epoch")
        batch_op.drop_column("done_at")
        batch_op.drop_column("due_at")
