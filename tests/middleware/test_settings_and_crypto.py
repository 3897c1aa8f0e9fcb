import pytest
from cryptography.fernet import Fernet

from middleware.crypto import SecretBox, SecretBoxError
from middleware.settings import Settings, SettingsError


def test_refuses_to_start_without_secret_key_and_admin_token(tmp_path):
    with pytest.raises(SettingsError) as error:
        Settings(data_dir=tmp_path, middleware_secret_key="", admin_token="").resolved()
    assert "MIDDLEWARE_SECRET_KEY and ADMIN_TOKEN must be set" in str(error.value)
    assert "DEMO_MODE" in str(error.value)


def test_demo_mode_generates_shared_throwaway_values(tmp_path):
    first = Settings(data_dir=tmp_path, demo_mode=True).resolved()
    second = Settings(data_dir=tmp_path, demo_mode=True).resolved()
    assert first.admin_token and first.admin_token == second.admin_token
    assert first.middleware_secret_key == second.middleware_secret_key
    assert (tmp_path / "demo-secrets.json").stat().st_mode & 0o777 == 0o600


def test_embedded_default_needs_no_servers(tmp_path):
    settings = Settings(data_dir=tmp_path, middleware_secret_key="k" * 40, admin_token="t").resolved()
    assert settings.database_url.startswith("sqlite:///")
    assert settings.broker_url.startswith("sqla+sqlite:///")
    assert settings.embedded


def test_redis_url_becomes_the_broker(tmp_path):
    settings = Settings(
        data_dir=tmp_path,
        middleware_secret_key="k" * 40,
        admin_token="t",
        redis_url="redis://127.0.0.1:6379/0",
    ).resolved()
    assert settings.broker_url == "redis://127.0.0.1:6379/0"


def test_secrets_do_not_show_in_repr(tmp_path):
    settings = Settings(data_dir=tmp_path, middleware_secret_key="k" * 40, admin_token="admintoken-xyz")
    assert "admintoken-xyz" not in repr(settings)
    assert "k" * 40 not in repr(settings)


def test_secret_box_round_trip_with_passphrase_or_fernet_key():
    for key in ("p" * 32, Fernet.generate_key().decode()):
        box = SecretBox(key)
        sealed = box.seal("value")
        assert "value" not in sealed
        assert box.open(sealed) == "value"


def test_secret_box_refuses_short_keys_and_wrong_keys():
    with pytest.raises(SecretBoxError):
        SecretBox("short")
    sealed = SecretBox("a" * 32).seal("value")
    with pytest.raises(SecretBoxError) as error:
        SecretBox("b" * 32).open(sealed)
    assert "MIDDLEWARE_SECRET_KEY" in str(error.value)
