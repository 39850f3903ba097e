"""Pieces of multipart uploads that both stores share (catalog/storage.py): the parts
as storage reports them, the signature of the embedded mode's app-served part URLs, and
the stream that joins local part files.

An app-served part URL is signed like the embedded mode's download URLs (an HMAC keyed
by SECRET_KEY), over everything it allows: this many bytes, as this part, of this
upload, to this key, until this time, and, for an upload begun with per-part checksums,
only the bytes of this CRC32. Changing any of them in the URL breaks it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from django.utils.crypto import constant_time_compare, salted_hmac

_PART_SIGNING_SALT = "catalog.storage.signed-part"
# The embedded mode's part uploads are served by the API (versioning/api/resumable.py).
LOCAL_PART_PATH = "/api/v1/upload-parts/{upload_id}/{number}/"
MULTIPART_DIR = ".multipart"


@dataclass(frozen=True)
class UploadedPart:
    """One part of a multipart upload as storage holds it."""

    number: int
    size: int
    etag: str
    crc32: str = ""  # base64, when the part was sent with its CRC32


def part_signature(
    key: str, upload_id: str, number: int, length: int, expires: int, crc32: str = ""
) -> str:
    """HMAC over what one app-served part URL allows (see the module's docstring)."""
    message = f"{key}\n{upload_id}\n{number}\n{length}\n{expires}"
    if crc32:
        message += f"\n{crc32}"
    return salted_hmac(_PART_SIGNING_SALT, message, algorithm="sha256").hexdigest()


def verify_part_signature(
    key: str,
    upload_id: str,
    number: int,
    length: int,
    expires: str,
    signature: str,
    crc32: str = "",
) -> bool:
    """True when the signature is this part's and has not expired (constant time)."""
    try:
        expires_at = int(expires)
    except (TypeError, ValueError):
        return False
    expected = part_signature(key, upload_id, number, length, expires_at, crc32)
    return constant_time_compare(expected, signature or "") and expires_at >= time.time()


class JoinedFiles:
    """The files one after the other as one read-only stream, each opened only when its
    turn comes; what is read is added to `digest` when one is given."""

    def __init__(self, paths: list[Path], digest=None) -> None:
        self.pending = list(paths)
        self.digest = digest
        self.current: IO[bytes] | None = None

    def read(self, size: int = -1) -> bytes:
        while True:
            if self.current is None:
                if not self.pending:
                    return b""
                self.current = self.pending.pop(0).open("rb")
            data = self.current.read(size)
            if data:
                if self.digest is not None:
                    self.digest.update(data)
                return data
            self.current.close()
            self.current = None
