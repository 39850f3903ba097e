"""A multipart/form-data upload read as a stream, part by part.

Django's own parser writes every file part to a temporary file before the view runs.
Here the file part is handed to the publish service as a stream instead, which writes it
straight to the staging key: the upload crosses the web process in chunks, never whole,
and never touches its disk. The price is order: the fields (`version`, `note`,
`allow_breaking`, `draft`, `inputs`) must come before the file (curl sends `-F` parts in
the order given). A field that arrives after the file is refused before the job exists,
by raising from the stream's last read, which aborts the staging write.

Django's part iterator (`django.http.multipartparser.Parser`) does the splitting; the
body is counted on the way in, so an upload past MAX_UPLOAD_BYTES stops at that byte
even without a Content-Length.
"""

from __future__ import annotations

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
from catalog.exceptions import InvalidInput

_FIELD_LIMIT = 64 * 1024
_CHUNK = 256 * 1024
FIELDS = ("version", "note", "allow_breaking", "draft", "inputs")


class _Counted:
    """The request body, refusing to read past `limit` bytes."""

    def __init__(self, stream, limit: int) -> None:
        self.stream, self.limit, self.count = stream, limit, 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        if self.count > self.limit:
            raise PayloadTooLarge(f"The upload is larger than the limit of {self.limit:,} bytes.")
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
    def __init__(self, *, body, content_type: str, limit: int) -> None:
        try:
            content_type.encode("ascii")
            _, params = parse_header_parameters(content_type)
        except (UnicodeEncodeError, ValueError):
            raise exceptions.ParseError("Malformed multipart Content-Type.") from None
        boundary = params.get("boundary", "")
        if not boundary or not MultiPartParser.boundary_re.fullmatch(boundary):
            raise exceptions.ParseError("The multipart Content-Type has no valid boundary.")
        self.body = _Counted(body, limit)
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


def _drain(stream) -> None:
    while stream.read(_CHUNK):
        pass
