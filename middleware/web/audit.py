"""The audit trail page for operators: every change to a registration, newest first."""

from __future__ import annotations

from flask import Blueprint, Response, render_template, request
from sqlalchemy import func, select

from middleware.models import AuditEntry, Repository
from middleware.services import services
from middleware.web import access

bp = Blueprint("web_audit", __name__)

PAGE_SIZE = 50


def _int_arg(name: str, default: int | None) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() and 0 < int(value) < 2**31 else default


@bp.get("/audit")
@access.require_operator
def audit() -> Response:
    page = _int_arg("page", 1) or 1
    repository_id = _int_arg("repository", None)
    query = select(AuditEntry)
    if repository_id is not None:
        query = query.where(AuditEntry.repository_id == repository_id)
    with services().db.session() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        entries = session.scalars(
            query.order_by(AuditEntry.at.desc(), AuditEntry.id.desc())
            .offset((page - 1) * PAGE_SIZE)
            .limit(PAGE_SIZE)
        ).all()
        repositories = session.execute(
            select(Repository.id, Repository.full_name).order_by(Repository.full_name)
        ).all()
    names = {repo_id: name for repo_id, name in repositories}
    html = render_template(
        "audit.html",
        entries=entries,
        names=names,
        repositories=repositories,
        repository_id=repository_id,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        total=total,
    )
    return Response(html, mimetype="text/html")
