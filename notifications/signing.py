"""Standard Webhooks signatures, and the secrets they are made with.

The scheme (https://www.standardwebhooks.com/) is one HMAC-SHA256 over
`"{webhook-id}.{webhook-timestamp}.{body}"`, keyed by the base64-decoded part of a
`whsec_` secret, sent as `webhook-signature: v1,<base64>`; several signatures are
separated by spaces (both secrets during a rotation). That is a dozen lines, so we sign
with our own code and keep the `standardwebhooks` package out of the running app: the
tests verify our signatures with that package, an independent implementation, which is
what a receiver runs.

A secret is never stored. The database keeps a random seed per endpoint; the secret's
24+ bytes are HMAC(SECRET_KEY, seed), so a stolen database signs nothing, and the secret
can be shown to its owner once, when made or rotated.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

from django.conf import settings

SECRET_PREFIX = "whsec_"


def seed_new() -> str:
    return secrets.token_hex(32)


def secret_from_seed(seed: str) -> str:
    """The `whsec_` secret for `seed`: 32 bytes keyed by the deployment's secret key."""
    key = hmac.new(
        settings.SECRET_KEY.encode(), b"notifications.webhook-secret:" + seed.encode(), "sha256"
    ).digest()
    return SECRET_PREFIX + base64.b64encode(key).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def signature(*, secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers_sign(
    *, secrets_: list[str], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers, signed with each of `secrets_`."""
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": " ".join(
            signature(secret=s, message_id=message_id, timestamp=timestamp, body=body)
            for s in secrets_
        ),
    }
