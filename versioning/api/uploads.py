"""A multipart/form-data upload read as a stream, part by part.

Django's own parser writes every file part to a temporary file before the view runs.
Here the file part is handed to the publish service as a stream instead, which writes it
straight to the staging key: the upload crosses the web process in chunks, never whole,
and never touches its disk. The price is order: the fields (`version`, `note`,
`allow_breaking`, `draft`, `inputs`, `sha256`) must come before the file (curl sends `-F`
parts in the order given). A field that arrives after the file is refused before the job exists,
by raising from the stream's last read, which aborts the staging write.

Django's part iterator (`django.http.multipartparser.Parser`) does the splitting; the
body is counted on the way in, so an upload past MAX_UPLOAD_BYTES stops at that byte
even without a Content-Length.

A body that ends early is refused, never published as a half file: the parser treats
the end of the stream as the end of the file part, so after the last part the body must
have held its closing boundary (`--<boundary>--`) and exactly `Content-Length` bytes.
The body is also hashed on the way in, for a `Content-Digest` header (RFC 9530). These
checks raise from the file stream's last read, like the late-field check, so the staging
write is aborted and no job exists.
"""

from __future__ import annotations

import hashlib

from django.http import QueryDict
from django.http.multipartparser import (
    FIELD,
    FILE,
    ChunkIter,
    LazyStream,
    MultiPartParser,
    MultiPartParserError,
    Parser,
)
from django.utils.http import parse_header_parameters
from rest_framework import exceptions

from catalog.api.exceptions import PayloadTooLarge
from catalog.digests import DigestMismatch, content_digest_text
from catalog.exceptions import InvalidInput

_FIELD_LIMIT = 64 * 1024
_CHUNK = 256 * 1024
FIELDS = ("version", "note", "allow_breaking", "draft", "inputs", "sha256")


class _Counted:
    """The request body, refusing to read past `limit` bytes; it also hashes what it
    reads and watches for the closing delimiter (which may straddle two reads)."""

    def __init__(self, stream, limit: int, *, boundary: bytes) -> None:
        self.stream, self.limit, self.count = stream, limit, 0
        self.hash = hashlib.sha256()
        # The close delimiter (RFC 2046): CRLF, two hyphens, the boundary, two hyphens.
        self.closing = b"\r\n--" + boundary + b"--"
        self.closed = False
        self._tail = b""

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise PayloadTooLarge(f"The upload is larger than the limit of {self.limit:,} bytes.")
        if data:
            self.hash.update(data)
            window = self._tail + data
            self.closed = self.closed or self.closing in window
            self._tail = window[-len(self.closing) :]
        return data


def _disposition(meta: dict) -> tuple[str, str]:
    _, params = meta.get("content-disposition", ("", {}))
    name = params.get("name", b"").decode("utf-8", "replace")
    filename = params.get("filename", b"").decode("utf-8", "replace")
    return name, filename.replace("\\", "/").rsplit("/", 1)[-1]


class FilePart:
    """The file part as a read-only stream; after its last byte, checks the rest of the
    body (refusing late fields or a second file)."""

    def __init__(self, upload: MultipartUpload, stream: LazyStream) -> None:
        self.upload, self.stream, self.done = upload, stream, False

    def read(self, size: int = -1) -> bytes:
        if self.done:
            return b""
        data = self.stream.read(_CHUNK if size is None or size < 0 else size)
        if not data:
            self.done = True
            self.upload.check_rest()
        return data


class MultipartUpload:
    """`content_length` is the header's value (None when the body is chunked);
    `content_digest` the SHA-256 a `Content-Digest` header names, if any."""

    def __init__(
        self,
        *,
        body,
        content_type: str,
        limit: int,
        content_length: int | None = None,
        content_digest: bytes | None = None,
    ) -> None:
        try:
            content_type.encode("ascii")
            _, params = parse_header_parameters(content_type)
        except (UnicodeEncodeError, ValueError):
            raise exceptions.ParseError("Malformed multipart Content-Type.") from None
        boundary = params.get("boundary", "")
        if not boundary or not MultiPartParser.boundary_re.fullmatch(boundary):
            raise exceptions.ParseError("The multipart Content-Type has no valid boundary.")
        self.body = _Counted(body, limit, boundary=boundary.encode("ascii"))
        self.content_length, self.content_digest = content_length, content_digest
        stream = LazyStream(ChunkIter(self.body, _CHUNK))
        self.parts = iter(Parser(stream, boundary.encode("ascii")))

    def _next_part(self):
        try:
            return next(self.parts, None)
        except MultiPartParserError as exc:
            raise exceptions.ParseError(f"Malformed multipart body: {exc}") from None

    def fields_and_file(self) -> tuple[QueryDict, str, FilePart]:
        """Reads fields up to the file part; returns them (a repeated field, such as
        `inputs`, keeps every value), the file's name and its stream."""
        fields = QueryDict(mutable=True)
        while (part := self._next_part()) is not None:
            item_type, meta, stream = part
            name, filename = _disposition(meta)
            if item_type == FILE and name == "file":
                return fields, filename or "upload", FilePart(self, stream)
            if item_type == FIELD and name in FIELDS:
                raw = stream.read(_FIELD_LIMIT + 1)
                if len(raw) > _FIELD_LIMIT:
                    raise InvalidInput(f"The {name} field is too long.")
                try:
                    fields.appendlist(name, raw.decode("utf-8"))
                except UnicodeDecodeError:
                    raise InvalidInput(f"The {name} field is not UTF-8 text.") from None
            else:
                _drain(stream)
        raise InvalidInput("The upload has no file part named 'file'.", details={"field": "file"})

    def check_rest(self) -> None:
        while (part := self._next_part()) is not None:
            item_type, meta, stream = part
            name, _ = _disposition(meta)
            if item_type == FILE:
                raise InvalidInput("Send exactly one file per upload.")
            if item_type == FIELD and name in FIELDS:
                raise InvalidInput(
                    f"The {name} field came after the file: send the version, note and "
                    "other fields before the file."
                )
            _drain(stream)
        self.check_complete()

    def check_complete(self) -> None:
        """Refuses a body that ended early, or whose digest is not the one sent."""
        received, expected = self.body.count, self.content_length
        if expected is not None and received != expected:
            raise InvalidInput(
                f"The upload was cut off: {received:,} of its {expected:,} bytes arrived. "
                "Nothing was published; send it again.",
                details={"received_bytes": received, "content_length": expected},
            )
        if not self.body.closed:
            raise InvalidInput(
                "The upload was cut off: the multipart body ended without its closing "
                "boundary. Nothing was published; send it again.",
                details={"received_bytes": received},
            )
        if self.content_digest is not None:
            actual = self.body.hash.digest()
            if actual != self.content_digest:
                raise DigestMismatch(
                    f"The request body's digest is {content_digest_text(actual)}, not the "
                    f"Content-Digest {content_digest_text(self.content_digest)} that was "
                    "sent: the body changed on the way. Nothing was published.",
                    details={
                        "expected_content_digest": content_digest_text(self.content_digest),
                        "actual_content_digest": content_digest_text(actual),
                    },
                )


def _drain(stream) -> None:
    while stream.read(_CHUNK):
        pass
