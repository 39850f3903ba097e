"""Digests a publisher sends with an upload, checked against the bytes as they stream.

Two ways to say what the bytes should be:

- the file's SHA-256 in hex (`sha256`: a form field before the file, a JSON field next
  to `object_key`, `manage.py publish --sha256`), compared with the file's bytes;
- RFC 9530's `Content-Digest: sha-256=:<base64>:`, which covers the request content as
  sent (for a multipart upload, the whole body, boundaries included), compared with the
  body as it arrived.

Both are compared after the last byte and before anything is recorded: a mismatch is
raised from the stream's final read, which aborts the staging write, so nothing is
staged and no job exists. The error names both digests.

A part of a resumable upload may carry its CRC32 (base64 of the 4 big-endian bytes, as
S3 writes `x-amz-checksum-crc32`): `crc32_base64` checks one as sent, `crc32_of` makes
one.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from typing import IO

from catalog.exceptions import InvalidInput

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
# One member of the structured-field dictionary: `name=:<base64>:` (RFC 8941 byte sequence).
_MEMBER = re.compile(r"^([a-z][a-z0-9_.*-]*)=:([A-Za-z0-9+/]*={0,2}):(;.*)?$")


class DigestMismatch(InvalidInput):
    """The bytes that arrived are not the ones the publisher said they sent."""

    code = "digest_mismatch"


def sha256_hex(text: str, *, field: str = "sha256") -> str:
    """A hex SHA-256 as sent, lower-cased; InvalidInput when it is not 64 hex digits."""
    cleaned = (text or "").strip()
    if not _HEX.match(cleaned):
        raise InvalidInput(
            f"{field} must be a SHA-256 in hex (64 characters 0-9, a-f).", details={"field": field}
        )
    return cleaned.lower()


def crc32_base64(text: str, *, field: str = "crc32") -> str:
    """A CRC32 as S3 writes it (base64 of 4 bytes, `AAAAAA==` form); InvalidInput
    naming `field` when it is anything else."""
    cleaned = (text or "").strip() if isinstance(text, str) else ""
    try:
        raw = base64.b64decode(cleaned, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 4 or base64.b64encode(raw).decode("ascii") != cleaned:
        raise InvalidInput(
            f"{field} must be a CRC32 in base64, as S3 writes it (4 bytes, e.g. "
            f'"yZRlqg=="), not {str(text)[:40]!r}.',
            details={"field": field},
        )
    return cleaned


def crc32_of(value: int) -> str:
    """The base64 form of a CRC32 value (`zlib.crc32`'s result)."""
    return base64.b64encode((value & 0xFFFFFFFF).to_bytes(4, "big")).decode("ascii")


def content_digest_sha256(header: str) -> bytes | None:
    """The `sha-256` digest in an RFC 9530 `Content-Digest` header; None when the header
    names only other algorithms (those are not checked). InvalidInput when malformed."""
    if not header.strip():
        return None
    found = None
    for member in header.split(","):
        match = _MEMBER.match(member.strip())
        if match is None:
            raise InvalidInput(
                "Malformed Content-Digest: send it as sha-256=:<base64 of the SHA-256>:.",
                details={"header": "Content-Digest"},
            )
        if match.group(1) == "sha-256":
            try:
                found = base64.b64decode(match.group(2), validate=True)
            except binascii.Error:
                found = b""
            if len(found) != 32:
                raise InvalidInput(
                    "The Content-Digest sha-256 value is not a base64 SHA-256 (32 bytes).",
                    details={"header": "Content-Digest"},
                )
    return found


def content_digest_text(digest: bytes) -> str:
    return f"sha-256=:{base64.b64encode(digest).decode('ascii')}:"


class CheckedStream:
    """A read-only stream that hashes what passes through it and, after the last byte,
    refuses it unless its SHA-256 is `expected` (hex)."""

    def __init__(self, stream: IO[bytes], *, expected: str) -> None:
        self.stream, self.expected = stream, expected
        self.hash = hashlib.sha256()
        self.checked = False

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        if data:
            self.hash.update(data)
        elif not self.checked:
            self.checked = True
            actual = self.hash.hexdigest()
            if actual != self.expected:
                raise DigestMismatch(
                    f"The file's SHA-256 is {actual}, not the {self.expected} that was sent "
                    "with it: the bytes changed on the way, or the wrong file was sent. "
                    "Nothing was published.",
                    details={"expected_sha256": self.expected, "actual_sha256": actual},
                )
        return data

    def close(self) -> None:
        close = getattr(self.stream, "close", None)
        if close is not None:
            close()
