"""In App mode a registration has no person's token: the workers look trusted users up with the
App's installation token (5,000 requests an hour, where anonymous look-ups get 60)."""

from __future__ import annotations

from pathlib import Path

from middleware.crypto import SecretBox
from middleware.db import Database
from middleware.migrate import upgrade
from middleware.models import Repository
from middleware.registry.trust import resolve_trusted_users
from tests.middleware.conftest import SECRET_KEY


def test_the_workers_resolve_trusted_users_with_the_installation_token(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'trust.db'}"
    upgrade(url)
    db, box = Database(url), SecretBox(SECRET_KEY)
    with db.session() as session:
        repo = Repository(
            full_name="octo-org/hpc-code",
            clone_url="https://github.com/octo-org/hpc-code.git",
            webhook_secret_enc=box.seal("s"),
            notification_token_enc=box.seal(""),  # App mode: none
            firecrest_client_id="c",
            firecrest_client_secret_enc=box.seal("x"),
            installation_id=77,
            trusted_users=[{"id": None, "login": "alice"}],
        )
        session.add(repo)
        session.flush()
        repo_id = repo.id
    used: list[str] = []

    def resolve(token: str, logins: list[str]) -> dict[str, int]:
        used.append(token)
        return {login: 1001 for login in logins}

    minted: list[int] = []

    def installation_token(installation_id: int) -> str:
        minted.append(installation_id)
        return f"ghs_installation_{installation_id}"

    assert resolve_trusted_users(db, box, resolve, repo_id, installation_token=installation_token) == 1
    assert used == ["ghs_installation_77"] and minted == [77]
    with db.session() as session:
        stored = session.get(Repository, repo_id)
        assert stored is not None and stored.trusted_users == [{"id": 1001, "login": "alice"}]
