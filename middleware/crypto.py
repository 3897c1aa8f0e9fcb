"""Encryption at rest for every stored credential (Fernet, from `cryptography`).

The key comes from MIDDLEWARE_SECRET_KEY: a Fernet key is used as it is; any
other string of 32 or more characters is stretched into one with HKDF, so an
operator can use a random passphrase.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PASSPHRASE = 32


class SecretBoxError(ValueError):
    """A stored secret cannot be decrypted (wrong MIDDLEWARE_SECRET_KEY?)."""


def _fernet_key(secret_key: str) -> bytes:
    try:
        raw = base64.urlsafe_b64decode(secret_key.encode())
        if len(raw) == 32:
            return secret_key.encode()
    except (ValueError, TypeError):
        pass
    if len(secret_key) < MIN_PASSPHRASE:
        raise SecretBoxError(
            f"MIDDLEWARE_SECRET_KEY must be a Fernet key or at least {MIN_PASSPHRASE} characters"
        )
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"firecrest-ci middleware at rest"
    ).derive(secret_key.encode())
    return base64.urlsafe_b64encode(derived)


class SecretBox:
    """Encrypts and decrypts text; the ciphertext is what the database stores."""

    def __init__(self, secret_key: str) -> None:
        self._fernet = Fernet(_fernet_key(secret_key))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._fernet.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise SecretBoxError(
                "a stored secret cannot be decrypted: was MIDDLEWARE_SECRET_KEY changed?"
            ) from None
