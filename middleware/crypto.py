"""Encryption at rest for every stored credential (Fernet, from `cryptography`).

The key comes from MIDDLEWARE_SECRET_KEY, or from the ring MIDDLEWARE_SECRET_KEYS
(comma-separated, new key first). A Fernet key is used as it is; any other
string of 32 or more characters is stretched into one with HKDF, so an operator
can use a random passphrase. With a ring, what is stored is read with any of its
keys and written with the first: a service given a new ring keeps reading the
ciphertext of the old key while `firecrest-ci-middleware rotate-key` rewrites it.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MIN_PASSPHRASE = 32


class SecretBoxError(ValueError):
    """A key cannot be one (too short), or a stored secret cannot be decrypted."""


#: What the service says when no key of the ring opens a stored secret (never the secret).
KEY_RING_TEXT = (
    "stored credentials cannot be decrypted with the configured MIDDLEWARE_SECRET_KEY(S): "
    "restore the key ring"
)


class KeyRingMismatch(SecretBoxError, RuntimeError):
    """No key of the configured ring opens a stored secret: the ring was changed or lost.

    Not a bad input but the service misconfigured: the web tier answers it with 503 on every
    route (middleware.errors), and a run step fails and is tried again like any other.
    """

    def __init__(self, text: str = KEY_RING_TEXT) -> None:
        super().__init__(text)


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


def check_key(secret_key: str) -> None:
    """Raise SecretBoxError when `secret_key` cannot be a key (the message never holds it)."""
    _fernet_key(secret_key)


class SecretBox:
    """Encrypts and decrypts text; the ciphertext is what the database stores.

    `keys` is one key or a ring, newest first: it encrypts with the first and decrypts with any.
    """

    def __init__(self, keys: str | Sequence[str]) -> None:
        ring = [keys] if isinstance(keys, str) else list(keys)
        if not ring:
            raise SecretBoxError("MIDDLEWARE_SECRET_KEY (or MIDDLEWARE_SECRET_KEYS) must be set")
        self._current = Fernet(_fernet_key(ring[0]))
        self._ring = MultiFernet([self._current, *(Fernet(_fernet_key(key)) for key in ring[1:])])

    def seal(self, plaintext: str) -> str:
        return self._current.encrypt(plaintext.encode()).decode()

    def open(self, ciphertext: str) -> str:
        try:
            return self._ring.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise KeyRingMismatch() from None

    def is_current(self, ciphertext: str) -> bool:
        """True when the newest key already decrypts it, so rotating it again changes nothing."""
        try:
            self._current.decrypt(ciphertext.encode())
        except InvalidToken:
            return False
        return True

    def rotate(self, ciphertext: str) -> str:
        """The same plaintext under the newest key (MultiFernet.rotate: it is never exposed here)."""
        try:
            return self._ring.rotate(ciphertext.encode()).decode()
        except InvalidToken:
            raise KeyRingMismatch() from None
