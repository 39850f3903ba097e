"""Model fields for secrets the app must read back.

Some credentials cannot be stored as a hash because the app has to use them: a Slack
incoming-webhook URL is its own password (whoever holds it can post to the channel). They
are kept encrypted with AES-GCM under a key derived from `SECRET_KEY` (HKDF-SHA256), so a
database dump or a backup alone does not give them away. Each value has its own random
nonce, so equal secrets do not look equal in the table, and such a field cannot be
searched or filtered on.

Rotating `SECRET_KEY` makes the stored values unreadable: they then read as empty, and
their owners enter them again.
"""

from __future__ import annotations

import base64
import logging
import os
from functools import lru_cache

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.db import models

logger = logging.getLogger(__name__)

_PREFIX = "enc1:"
_NONCE_BYTES = 12


@lru_cache(maxsize=4)
def _cipher(secret_key: str) -> AESGCM:
    key = HKDF(
        algorithm=hashes.SHA256(),
        length=32,
        salt=None,
        info=b"dataset-publisher encrypted model fields",
    ).derive(secret_key.encode())
    return AESGCM(key)


def secret_encrypt(plain: str) -> str:
    nonce = os.urandom(_NONCE_BYTES)
    sealed = _cipher(settings.SECRET_KEY).encrypt(nonce, plain.encode(), None)
    return _PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def secret_decrypt(stored: str) -> str:
    """The plain text of a stored value; "" when it cannot be read (another SECRET_KEY)."""
    if not stored.startswith(_PREFIX):
        return stored  # written before the field was encrypted
    raw = base64.urlsafe_b64decode(stored[len(_PREFIX) :].encode())
    try:
        plain = _cipher(settings.SECRET_KEY).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], None)
    except InvalidTag:
        logger.warning("An encrypted value could not be read: SECRET_KEY changed since.")
        return ""
    return plain.decode()


class EncryptedTextField(models.TextField):
    """A text field stored encrypted (see the module docstring); reads give plain text."""

    def from_db_value(self, value, expression, connection):
        if value is None:
            return value
        return secret_decrypt(value)

    def to_python(self, value):
        if isinstance(value, str) and value.startswith(_PREFIX):
            return secret_decrypt(value)
        return super().to_python(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value in (None, "") or value.startswith(_PREFIX):
            return value
        return secret_encrypt(value)
