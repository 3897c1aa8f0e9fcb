"""Every secret setting has a `<NAME>_FILE` variant (Docker secrets, systemd credentials), and the
key ring MIDDLEWARE_SECRET_KEYS stands beside MIDDLEWARE_SECRET_KEY."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from middleware.crypto import SecretBox, SecretBoxError
from middleware.settings import Settings, SettingsError

SECRET = "a-very-secret-admin-token-value-0123"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    for name in Settings.model_fields:
        monkeypatch.delenv(name.upper(), raising=False)
        monkeypatch.delenv(f"{name.upper()}_FILE", raising=False)


def test_every_secret_is_read_from_its_file_with_one_newline_dropped(tmp_path, monkeypatch):
    secrets = [
        n for n, f in Settings.model_fields.items() if f.repr is False and n != "github_app_private_key"
    ]
    assert {"admin_token", "middleware_secret_key", "gitlab_token", "database_url"} <= set(secrets)
    for name in secrets:
        path = tmp_path / name
        path.write_text(f"value-of-{name}\n\n")  # only one newline goes: the rest is the value
        monkeypatch.setenv(f"{name.upper()}_FILE", str(path))
    settings = Settings(data_dir=tmp_path)
    for name in secrets:
        assert getattr(settings, name) == f"value-of-{name}\n", name


def test_a_file_with_crlf_or_no_newline_gives_the_bare_value(tmp_path, monkeypatch):
    crlf, bare = tmp_path / "crlf", tmp_path / "bare"
    crlf.write_bytes(SECRET.encode() + b"\r\n")
    bare.write_text(SECRET)
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(crlf))
    monkeypatch.setenv("gitlab_token_file", str(bare))  # names are case-insensitive, as the rest
    settings = Settings(data_dir=tmp_path)
    assert settings.admin_token == SECRET
    assert settings.gitlab_token == SECRET


def test_both_the_variable_and_its_file_refuse_to_start(tmp_path, monkeypatch):
    path = tmp_path / "token"
    path.write_text(SECRET)
    monkeypatch.setenv("ADMIN_TOKEN", "another-value-entirely-0123456789")
    monkeypatch.setenv("ADMIN_TOKEN_FILE", str(path))
    with pytest.raises(SettingsError) as error:
        Settings(data_dir=tmp_path)
    assert str(error.value) == "ADMIN_TOKEN and ADMIN_TOKEN_FILE are both set: set one of them"


@pytest.mark.parametrize("problem", ["missing", "directory", "empty"])
def test_a_file_that_cannot_give_a_value_refuses_to_start_in_one_line(tmp_path, monkeypatch, problem):
    path = tmp_path / "key"
    if problem == "directory":
        path.mkdir()
    elif problem == "empty":
        path.write_text("\n")
    monkeypatch.setenv("MIDDLEWARE_SECRET_KEY_FILE", str(path))
    with pytest.raises(SettingsError) as error:
        Settings(data_dir=tmp_path)
    message = str(error.value)
    assert message.startswith("MIDDLEWARE_SECRET_KEY_FILE: ")
    assert str(path) in message and "\n" not in message


def test_the_app_private_key_file_keeps_its_own_setting(tmp_path, monkeypatch):
    pem = tmp_path / "app.pem"
    pem.write_text("-----BEGIN PRIVATE KEY-----\nabc\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv("GITHUB_APP_PRIVATE_KEY_FILE", str(pem))
    settings = Settings(data_dir=tmp_path)
    assert settings.github_app_private_key == ""  # read when used, not at start
    assert settings.github_app_private_key_file == pem
    assert settings.app_private_key() == pem.read_text()


def test_allowed_source_hosts_is_comma_separated_in_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ALLOWED_SOURCE_HOSTS", "github.com, GitLab.example.org")
    assert Settings(data_dir=tmp_path).allowed_source_hosts == ("github.com", "gitlab.example.org")


def test_a_key_ring_reads_old_ciphertext_and_writes_with_the_new_key(tmp_path):
    old, new = Fernet.generate_key().decode(), "a passphrase of more than thirty-two characters"
    sealed_old = SecretBox(old).seal("credential")
    settings = Settings(
        data_dir=tmp_path, middleware_secret_keys=f"{new}, {old}", admin_token="t" * 20
    ).resolved()
    assert settings.secret_key_ring() == [new, old]
    box = SecretBox(settings.secret_key_ring())
    assert box.open(sealed_old) == "credential"
    assert not box.is_current(sealed_old)
    sealed_new = box.seal("credential")
    assert box.is_current(sealed_new)
    assert SecretBox(new).open(sealed_new) == "credential"
    with pytest.raises(SecretBoxError):
        SecretBox(old).open(sealed_new)


def test_key_and_key_ring_together_refuse_to_start(tmp_path):
    with pytest.raises(SettingsError) as error:
        Settings(
            data_dir=tmp_path,
            middleware_secret_key="k" * 40,
            middleware_secret_keys="n" * 40,
            admin_token="t",
        ).resolved()
    assert "MIDDLEWARE_SECRET_KEY and MIDDLEWARE_SECRET_KEYS are both set" in str(error.value)


def test_a_short_key_in_the_ring_refuses_to_start_without_showing_it(tmp_path):
    with pytest.raises(SettingsError) as error:
        Settings(
            data_dir=tmp_path, middleware_secret_keys=f"{'n' * 40},short-key", admin_token="t"
        ).resolved()
    assert "key 2 of MIDDLEWARE_SECRET_KEYS" in str(error.value)
    assert "short-key" not in str(error.value) and "n" * 40 not in str(error.value)
