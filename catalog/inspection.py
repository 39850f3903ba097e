"""Inspect an uploaded tabular file in one streaming pass.

`inspect_stream` reads a CSV (plain or gzip-compressed) or a Parquet file from a binary
file-like object exactly once and returns its facts: format, SHA-256, size, row count
and, for every column, a type and a null count. Files can be many GiB, so nothing here
holds more than a few blocks of the file at a time.

How the pieces fit:

* Every byte of the upload goes through `_HashingReader`, which hashes and counts it
  on the way to the parser, so the checksum costs no second pass. For csv.gz it sits
  under the decompressor and so sees the compressed bytes.
* CSV is parsed by pyarrow's streaming reader (`pyarrow.csv.open_csv`), which pulls
  blocks through that chain from one of its own I/O threads. Left alone, that thread
  queues up to 32 blocks ahead of the consumer; `BoundedFeed` holds it to a few.
  Exceptions raised on that thread reach us as opaque pyarrow errors, so each reader
  records its own failure and the main thread re-raises it with a steward-facing
  message. Progress is reported from the main thread, between batches.
* pyarrow's own type inference looks only at the first block and then fails on a later
  block that does not fit (an integer column with "1.5" after a million rows). So the
  header is read first (`_read_header`: the first bytes are peeked, then replayed to
  the parser), every column is read as a nullable string, and each column's type is
  narrowed batch by batch with vectorised casts (`_ColumnState`). A column starts
  unknown, settles on the narrowest type that fits the first non-null values and only
  ever widens within its family (integer -> float, date -> timestamp) or falls back to
  string, so in the steady state each column costs one cast per batch.
* Parquet keeps its schema and row count in a footer at the end of the file, which
  needs random access: the stream is hashed in one pass (into a spooled temporary file
  when it cannot seek) and then only the footer, plus any column whose null count the
  footer lacks, is read back.

Every problem with the file itself is raised as `FileRejected` with a message a data
steward can act on; the underlying library text is kept in `details["reason"]`.
"""

from __future__ import annotations

import codecs
import csv
import gzip
import hashlib
import io
import re
import tempfile
import threading
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import BinaryIO

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from django.conf import settings

from catalog.exceptions import FileRejected, StorageUnavailable

FORMATS = ("csv", "csv.gz", "parquet")
COLUMN_TYPES = ("integer", "float", "boolean", "date", "timestamp", "string")

_MiB = 1024 * 1024

# The parser's block size also bounds the longest row: pyarrow refuses a row that
# straddles more than about two blocks, which is what keeps memory bounded when a
# quote is never closed. 2 MiB keeps Python's per-batch work small next to the
# parsing while the blocks held in flight stay small.
_CSV_BLOCK_SIZE = 2 * _MiB
# How many blocks pyarrow's reader thread may run ahead of the batches consumed, and
# how long a read waits for the consumer before going ahead anyway.
_BLOCKS_AHEAD = 3
_BLOCKS_AHEAD_WAIT = 1.0
# How much is read at a time from the caller's stream (compressed bytes for csv.gz,
# the whole file for Parquet while hashing).
_READ_CHUNK = 4 * _MiB
# The header is looked for in the first bytes; the window grows until the header row
# is complete, up to a limit no real header reaches.
_HEAD_BYTES = 256 * 1024
_MAX_HEADER_BYTES = 16 * _MiB
# Only this much of the head is scanned for signs of binary content.
_SNIFF_BYTES = 64 * 1024
# Parquet uploads that cannot seek are spooled to disk past this size.
_SPOOL_MAX_IN_MEMORY = 64 * _MiB

_GZIP_MAGIC = b"\x1f\x8b"
_PARQUET_MAGIC = b"PAR1"
_UTF8_BOM = codecs.BOM_UTF8

# Recognisable binary formats, so a wrong upload is named rather than called "binary".
# Each signature is long or non-ASCII enough not to be the start of a CSV header
# (bzip2 is only recognised at its default block size, "BZh9").
_KNOWN_BINARY = (
    (b"PK\x03\x04", "a ZIP archive (or an Excel .xlsx workbook)"),
    (b"PK\x05\x06", "an empty ZIP archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "an old-style Microsoft Office file (.xls)"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"%PDF-", "a PDF document"),
    (b"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (b"BZh91AY&SY", "a bzip2-compressed file"),
    (b"\xfd7zXZ\x00", "an xz-compressed file"),
    (b"\x28\xb5\x2f\xfd", "a zstd-compressed file"),
    (b"SQLite format 3\x00", "an SQLite database"),
)
_TAB_SEPARATED = (
    "Tab-separated files are not supported: save the data as a comma-separated .csv file."
)
_REFUSED_EXTENSIONS = {
    ".tsv": _TAB_SEPARATED,
    ".tab": _TAB_SEPARATED,
    ".xlsx": "Excel workbooks are not supported: export the sheet as a .csv file.",
    ".xls": "Excel workbooks are not supported: export the sheet as a .csv file.",
    ".ods": "Spreadsheet files are not supported: export the sheet as a .csv file.",
    ".zip": "ZIP archives are not supported: upload the .csv, .csv.gz or .parquet file itself.",
}
# Control characters other than tab, newline, vertical tab, form feed and carriage
# return never occur in text, in any single-byte encoding or in UTF-8.
_CONTROL_BYTES = bytes(range(0x00, 0x09)) + bytes(range(0x0E, 0x20)) + b"\x7f"
_MAX_CONTROL_SHARE = 0.01

_TRUE_FALSE = pa.array(["true", "false"])
# A few leading values are tried before a whole batch: a failed pyarrow cast does not
# stop at the first bad value, it builds an error for every one of them and is ~25x
# slower than a successful one, so a column of text must be ruled out cheaply.
_SAMPLE_SIZE = 32
# Unit and time zone are details of the parse, not of the reported type: microseconds
# cover years 1..9999, nanoseconds carry nine fractional digits, and values with an
# offset or "Z" only parse to a zoned type.
_TIMESTAMP_TYPES = (
    pa.timestamp("us"),
    pa.timestamp("ns"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ns", tz="UTC"),
)
# When a batch no longer fits a column's type, the wider types that can still hold
# every value seen so far. Families do not mix: a value that parses as a number never
# parses as a date or as true/false, so a failed family means string.
_WIDER = {
    None: ("integer", "float", "boolean", "date", "timestamp"),
    "integer": ("float",),
    "float": (),
    "boolean": (),
    "date": ("timestamp",),
    "timestamp": (),
}

_COLUMN_INDEX_RE = re.compile(r"In CSV column #(\d+)")
_FIELD_COUNT_RE = re.compile(r"Expected (\d+) columns, got (\d+)")


@dataclass(frozen=True)
class ColumnProfile:
    name: str
    type: str
    nulls: int

    def as_dict(self) -> dict:
        return {"name": self.name, "type": self.type, "nulls": self.nulls}


@dataclass(frozen=True)
class FileProfile:
    format: str
    sha256: str
    size_bytes: int
    row_count: int
    columns: tuple[ColumnProfile, ...]

    @property
    def schema(self) -> list[dict]:
        return [column.as_dict() for column in self.columns]

    def as_json(self) -> dict:
        """What a publish job records, so its worker need not read the file again."""
        return {
            "format": self.format,
            "sha256": self.sha256,
            "size_bytes": self.size_bytes,
            "row_count": self.row_count,
            "columns": self.schema,
        }

    @classmethod
    def from_json(cls, data: dict) -> FileProfile:
        return cls(
            format=data["format"],
            sha256=data["sha256"],
            size_bytes=int(data["size_bytes"]),
            row_count=int(data["row_count"]),
            columns=tuple(
                ColumnProfile(name=c["name"], type=c["type"], nulls=int(c["nulls"]))
                for c in data["columns"]
            ),
        )


def detect_format(filename: str, head: bytes) -> str:
    """Return one of FORMATS from the file's first bytes and, failing that, its name.

    The bytes win over the name: a gzip or Parquet signature decides whatever the file
    is called. Otherwise .csv, .csv.gz/.gz and .parquet/.pq decide, and a text file
    with another or no extension is taken as CSV. Raises FileRejected for anything
    else: a known non-tabular format (ZIP, PNG...), a tab-separated or spreadsheet
    name, or binary content.
    """
    if head.startswith(_GZIP_MAGIC):
        return "csv.gz"
    if head.startswith(_PARQUET_MAGIC):
        return "parquet"
    known = _known_binary(head)
    if known:
        raise FileRejected(
            f"This file is {known}, not a CSV or Parquet file.",
            details={"reason": "signature", "filename": filename},
        )
    name = filename.strip().lower()
    if name.endswith(".gz"):
        return "csv.gz"
    if name.endswith((".parquet", ".pq")):
        return "parquet"
    for extension, message in _REFUSED_EXTENSIONS.items():
        if name.endswith(extension):
            raise FileRejected(message, details={"reason": "extension", "filename": filename})
    problem = _binary_problem(head)
    if problem:
        raise FileRejected(problem, details={"reason": "binary content", "filename": filename})
    return "csv"


def inspect_stream(
    stream: BinaryIO,
    *,
    format: str,
    on_progress: Callable[[int], None] | None = None,
    progress_every: int = 8 * _MiB,
) -> FileProfile:
    """Read `stream` to its end exactly once and return what the file holds.

    on_progress(bytes_read_so_far) is called about every `progress_every` bytes of the
    stream, always from the calling thread, with increasing values, and once at the end
    with the total size. Raises FileRejected for any file that cannot be published.
    """
    if format not in FORMATS:
        raise ValueError(f"Unknown format {format!r}; expected one of {FORMATS}.")
    source = _HashingReader(stream)
    progress = _Progress(on_progress, progress_every)
    if format == "parquet":
        row_count, columns = _inspect_parquet(stream, source, progress)
    else:
        row_count, columns = _inspect_csv(source, progress, compressed=format == "csv.gz")
    progress.finish(source.bytes_read)
    return FileProfile(
        format=format,
        sha256=source.hexdigest(),
        size_bytes=source.bytes_read,
        row_count=row_count,
        columns=columns,
    )


# --- inspecting while uploading ---------------------------------------------------------


class _Abandoned(OSError):
    """The upload feeding an inspection stopped before its end."""


class UploadInspector:
    """Inspects a file while it is uploaded, so the bytes are read once, not twice.

    Wrap the upload's source: `read()` returns what the source returns and hands the
    same bytes objects (no copy) to `inspect_stream`, which runs on a thread of its
    own, so the parsing and hashing overlap the network (pyarrow, hashlib and the
    socket all release the GIL). The chunks in between are bounded by `buffer_bytes`:
    when the inspection falls behind, the upload waits for it, so memory stays flat
    and the profile is of exactly the bytes that were sent.

    `finish()` after the upload returns the profile, or None when the inspection
    refused the file or did not see all of it (the worker then inspects the stored
    object, as for any job without a profile, and reports the verdict there).
    `abandon()` when the upload failed stops the thread.
    """

    def __init__(
        self, stream: BinaryIO, *, format: str, buffer_bytes: int = 3 * _READ_CHUNK
    ) -> None:
        self._stream = stream
        self._format = format
        self._limit = buffer_bytes
        self._turn = threading.Condition()
        self._pending: list[bytes | None] = []
        self._held = 0
        self._closed = False  # the end (or abandonment) was handed over
        self._abandoned = False
        self._done = False
        self._buffer = b""
        self._sent = 0
        self.profile: FileProfile | None = None
        self.failure: BaseException | None = None
        self._thread = threading.Thread(target=self._inspect, name="upload-inspection", daemon=True)
        self._thread.start()

    # The upload's side.

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._offer(data if data else None)
        return data

    def _offer(self, data: bytes | None) -> None:
        with self._turn:
            if self._closed or self._done:
                return
            self._turn.wait_for(lambda: self._done or self._held < self._limit)
            if self._done:
                return
            self._pending.append(data)
            if data is None:
                self._closed = True
            else:
                self._held += len(data)
                self._sent += len(data)
            self._turn.notify_all()

    def finish(self) -> FileProfile | None:
        self._offer(None)
        self._thread.join()
        profile = self.profile
        if profile is None or profile.size_bytes != self._sent:
            return None
        return profile

    def abandon(self) -> None:
        with self._turn:
            self._abandoned = True
            self._closed = True
            self._turn.notify_all()
        self._thread.join()

    # The inspection's side.

    def _take(self, size: int) -> bytes:
        if not self._buffer:
            with self._turn:
                self._turn.wait_for(lambda: self._pending or self._abandoned or self._done)
                if self._abandoned:
                    raise _Abandoned("The upload stopped before the end of the file.")
                if not self._pending:
                    # The inspection is over (it refused the file): a read pyarrow's own
                    # thread still makes ahead of it gets the end, never a wait that
                    # nothing would end, which would hold the process at its exit.
                    return b""
                item = self._pending.pop(0)
                if item is None:
                    self._pending.insert(0, None)  # every later read sees the end too
                    return b""
                self._held -= len(item)
                self._turn.notify_all()
            self._buffer = item
        if size < 0 or size >= len(self._buffer):
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:size], self._buffer[size:]
        return data

    def _inspect(self) -> None:
        try:
            self.profile = inspect_stream(_Feed(self._take), format=self._format)
        except BaseException as exc:  # noqa: BLE001 - kept for the caller, never lost
            self.failure = exc
        finally:
            with self._turn:
                self._done = True
                self._pending.clear()
                self._held = 0
                self._turn.notify_all()


class _ReadOnly:
    """What pyarrow asks of a read-only, forward-only stream besides `read`. Closing
    marks it closed and nothing more: the caller owns whatever it reads from."""

    closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _Feed(_ReadOnly):
    """A read-only stream over a function that returns the next bytes."""

    def __init__(self, take: Callable[[int], bytes]) -> None:
        self.read = take


# --- reading -------------------------------------------------------------------------


class _ReadFailure(OSError):
    """Raised inside a read called by pyarrow; the real problem is kept on the reader."""


class _HashingReader(_ReadOnly):
    """Reads the caller's stream once, hashing and counting every byte on the way."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._sha256 = hashlib.sha256()
        self.bytes_read = 0
        self.failure: FileRejected | None = None

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        # Sockets and upload wrappers may return less than asked, and pyarrow parses
        # whatever one read returns as a block of its own: fill the request, so that
        # batches keep their intended size.
        parts = []
        wanted = size
        try:
            while wanted > 0:
                part = self._raw.read(wanted)
                if not part:
                    break
                parts.append(part)
                wanted -= len(part)
        except StorageUnavailable as exc:
            # Not the file's fault: the caller may retry the whole inspection later.
            self.failure = exc
            raise _ReadFailure(str(exc)) from exc
        except Exception as exc:
            self.failure = FileRejected(
                "The file could not be read to its end; please upload it again.",
                details={"reason": f"{type(exc).__name__}: {exc}"},
            )
            raise _ReadFailure(str(exc)) from exc
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self._sha256.update(data)
        self.bytes_read += len(data)
        return data

    def hexdigest(self) -> str:
        return self._sha256.hexdigest()


class _GunzipReader(_ReadOnly):
    """Decompresses gzip (several concatenated members too) as it is read, with the
    standard library's `gzip.GzipFile`; its errors become the file's verdict."""

    def __init__(self, raw: _HashingReader) -> None:
        self._file = gzip.GzipFile(fileobj=raw, mode="rb")
        self.failure: FileRejected | None = None

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        try:
            return self._file.read(size)
        except _ReadFailure:
            raise  # the compressed stream's own failure, kept on its reader
        except EOFError as exc:
            self.failure = FileRejected(
                "The gzip file is truncated: it ends before its compressed data does.",
                details={"reason": "unexpected end of gzip stream"},
            )
            raise _ReadFailure("truncated gzip stream") from exc
        except (gzip.BadGzipFile, zlib.error) as exc:
            self.failure = FileRejected(
                "The file is not a valid gzip file, or it is damaged: "
                "it could not be decompressed.",
                details={"reason": str(exc)},
            )
            raise _ReadFailure(str(exc)) from exc


class BoundedFeed:
    """What a pyarrow CSV reader reads: `head` (bytes already peeked) again, then `rest`.

    pyarrow reads the input on a background thread that queues up to 32 blocks ahead
    of the batches taken from it, whatever their size: 64 MiB of 2 MiB blocks whenever
    the consumer is slower than the disk. So each read waits until the consumer is at
    most `_BLOCKS_AHEAD` blocks behind (call `batch_taken()` for every batch taken, and
    `stop()` when done). A block normally yields exactly one batch (an empty one if it
    holds only blank lines); the wait has a time limit so that a block yielding none
    (part of a row spanning blocks) can only slow the reading down, never hang it.
    Any CSV reading that must stay flat in memory goes through it (the inspection here,
    the columnar copy in `versioning.columnar`).
    """

    def __init__(self, rest, head: bytes = b"") -> None:
        self._head = head
        self._rest = rest
        self._turn = threading.Condition()
        self._reads = 0
        self._batches = 0
        self._stopped = False
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0:
            size = _READ_CHUNK
        with self._turn:
            self._turn.wait_for(
                lambda: self._stopped or self._reads - self._batches < _BLOCKS_AHEAD,
                timeout=_BLOCKS_AHEAD_WAIT,
            )
            if self._stopped:
                return b""
            self._reads += 1
        if not self._head:
            return self._rest.read(size)
        head, self._head = self._head[:size], self._head[size:]
        if len(head) < size:
            head += self._rest.read(size - len(head))
        return head

    def batch_taken(self) -> None:
        with self._turn:
            self._batches += 1
            self._turn.notify_all()

    def stop(self) -> None:
        """End the feed: pyarrow's reader thread sees the end of the stream."""
        with self._turn:
            self._stopped = True
            self._turn.notify_all()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True


class _Progress:
    def __init__(self, callback: Callable[[int], None] | None, every: int) -> None:
        self._callback = callback
        self._every = max(1, every)
        self._last = 0

    def update(self, bytes_read: int) -> None:
        if self._callback is not None and bytes_read - self._last >= self._every:
            self._last = bytes_read
            self._callback(bytes_read)

    def finish(self, bytes_read: int) -> None:
        if self._callback is not None and bytes_read != self._last:
            self._last = bytes_read
            self._callback(bytes_read)


# --- CSV -----------------------------------------------------------------------------


def _inspect_csv(
    source: _HashingReader, progress: _Progress, *, compressed: bool
) -> tuple[int, tuple[ColumnProfile, ...]]:
    text_source: _HashingReader | _GunzipReader = _GunzipReader(source) if compressed else source
    readers = (text_source, source)
    try:
        head, names = _read_header(text_source, source, compressed=compressed)
    except _ReadFailure as exc:
        raise _first_failure(readers) or _unexpected(exc) from None

    invalid_rows: list = []

    def on_invalid_row(row) -> str:
        invalid_rows.append(row)
        return "error"

    states = [_ColumnState() for _ in names]
    row_count = 0
    feed = BoundedFeed(text_source, head)
    try:
        reader = pacsv.open_csv(
            pa.PythonFile(feed, mode="r"),
            read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_SIZE),
            parse_options=pacsv.ParseOptions(
                newlines_in_values=True, invalid_row_handler=on_invalid_row
            ),
            convert_options=pacsv.ConvertOptions(
                column_types={name: pa.string() for name in names},
                strings_can_be_null=True,
            ),
        )
        if reader.schema.names != names:
            raise FileRejected(
                "The header row could not be read consistently; check its quoting.",
                details={
                    "reason": "header mismatch",
                    "expected": names,
                    "found": reader.schema.names,
                },
            )
        for batch in reader:
            feed.batch_taken()
            row_count += batch.num_rows
            for state, column in zip(states, batch.columns, strict=True):
                state.observe(column)
            progress.update(source.bytes_read)
    except (pa.ArrowException, OSError) as exc:
        failure = _first_failure(readers)
        if failure is not None:
            raise failure from None
        raise _csv_error(exc, names, invalid_rows, row_count) from None
    finally:
        feed.stop()

    # The parser stops at the end of the text; make sure the checksum covers any
    # bytes it did not need (there are none for a well-formed stream).
    try:
        while text_source.read(_READ_CHUNK):
            pass
    except _ReadFailure as exc:
        raise _first_failure(readers) or _unexpected(exc) from None
    if row_count == 0:
        raise FileRejected(
            "The file has a header row but no data rows.", details={"reason": "no data rows"}
        )
    return row_count, tuple(
        ColumnProfile(name=name, type=state.type, nulls=state.nulls)
        for name, state in zip(names, states, strict=True)
    )


def _first_failure(readers) -> FileRejected | None:
    # The reader that failed knows why; the pyarrow error that carried it here does not.
    for reader in readers:
        if reader.failure is not None:
            return reader.failure
    return None


def _unexpected(exc: Exception) -> FileRejected:
    return FileRejected("The file could not be read.", details={"reason": str(exc)})


def _read_header(
    text_source: _HashingReader | _GunzipReader, source: _HashingReader, *, compressed: bool
) -> tuple[bytes, list[str]]:
    """Peek at the start of the text and return it with the header's column names."""
    head = text_source.read(_HEAD_BYTES)
    at_end = len(head) < _HEAD_BYTES
    if not head:
        if source.bytes_read == 0:
            raise FileRejected("The file is empty.", details={"reason": "zero bytes"})
        raise FileRejected(
            "The file is empty once decompressed.", details={"reason": "no decompressed bytes"}
        )
    if not compressed and head.startswith((_GZIP_MAGIC, _PARQUET_MAGIC)):
        kind = "gzip-compressed" if head.startswith(_GZIP_MAGIC) else "a Parquet file"
        raise FileRejected(
            f"This file is {kind}, but it was given as a plain CSV file.",
            details={"reason": "signature"},
        )
    problem = _binary_problem(head)
    if problem:
        raise FileRejected(problem, details={"reason": "binary content"})

    while True:
        text = _decode_head(head, at_end)
        names, complete = _parse_header(text, at_end)
        if complete:
            break
        if len(head) >= _MAX_HEADER_BYTES:
            raise FileRejected(
                "The first row (the header) is longer than 16 MiB; is this really a CSV file?",
                details={"reason": "header too long"},
            )
        more = text_source.read(len(head))
        at_end = len(more) < len(head)
        head += more

    if names is None:
        raise FileRejected(
            "The file has no header row: it contains only blank lines.",
            details={"reason": "no header"},
        )
    _check_names(names)
    return head, names


def _decode_head(head: bytes, at_end: bool) -> str:
    # Incremental decoding tolerates a character cut by the end of the window.
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        text = decoder.decode(head, final=at_end)
    except UnicodeDecodeError as exc:
        line = head.count(b"\n", 0, exc.start) + 1
        raise FileRejected(
            f"The file is not valid UTF-8 text (line {line}, byte {exc.start + 1}). "
            "Save it with the UTF-8 encoding and upload it again.",
            details={"reason": str(exc), "line": line, "byte": exc.start + 1},
        ) from None
    return text.removeprefix("\ufeff")


def _parse_header(text: str, at_end: bool) -> tuple[list[str] | None, bool]:
    """The first non-blank record of `text`, and whether it is known to be complete."""
    buffer = io.StringIO(text, newline="")
    reader = csv.reader(buffer)
    try:
        for record in reader:
            if record:
                # Only a record followed by more text (or by the end of the file) is
                # certainly whole: the window may have cut it, quotes included.
                return record, at_end or buffer.tell() < len(text)
    except csv.Error:
        if not at_end:
            return None, False
        raise FileRejected(
            "The header row is malformed; check its quotes.", details={"reason": "header"}
        ) from None
    return None, at_end


def _check_width(columns: int) -> None:
    """Refuses a file wider than MAX_COLUMNS before any of its rows is parsed: a column
    costs memory and time on every batch here and on every rows call later (100,000
    columns in a 0.9 MB CSV took over 1 GB and 20 s per call)."""
    limit = settings.MAX_COLUMNS
    if columns > limit:
        raise FileRejected(
            f"The file has {columns:,} columns; at most {limit:,} are accepted. Split it "
            "into narrower datasets.",
            details={"reason": "too many columns", "columns": columns, "limit": limit},
        )


def _check_names(names: list[str]) -> None:
    _check_width(len(names))
    for position, name in enumerate(names, start=1):
        if not name.strip():
            raise FileRejected(
                f"Column {position} has no name in the header row; every column needs one.",
                details={"reason": "empty column name", "position": position},
            )
    duplicates = [name for name, count in Counter(names).items() if count > 1]
    if duplicates:
        listed = ", ".join(repr(name) for name in duplicates)
        raise FileRejected(
            f"Column names must be unique; these appear more than once: {listed}.",
            details={"reason": "duplicate column names", "names": duplicates},
        )


def _csv_error(
    exc: Exception, names: list[str], invalid_rows: list, rows_read: int
) -> FileRejected:
    # pyarrow quotes the offending row in full, which can be megabytes long.
    reason = _shorten(str(exc), 500)
    where = _rows_fine(rows_read)
    field_count = _FIELD_COUNT_RE.search(reason)
    if invalid_rows or field_count:
        if invalid_rows:
            row = invalid_rows[0]
            expected, actual, text = row.expected_columns, row.actual_columns, row.text
        else:
            expected, actual, text = int(field_count.group(1)), int(field_count.group(2)), ""
        fields = "1 field" if actual == 1 else f"{actual} fields"
        line_breaks = text.count("\n")
        if line_breaks:
            first_line = text[: text.index("\n")].rstrip("\r")
            shown = (
                f" The row starting with {_shorten(first_line, 80)!r} runs over "
                f"{line_breaks + 1:,} "
                'lines: a quote (") that is opened and never closed joins the following lines '
                "into one value."
            )
        elif text:
            shown = f" The row is: {_shorten(text, 120)!r}."
        else:
            shown = ""
        return FileRejected(
            f"A row has {fields} but the header has {expected} columns; every row must have "
            f"as many fields as the header.{shown}{where}",
            details={
                "reason": reason,
                "expected": expected,
                "actual": actual,
                "row_text": _shorten(text, 500),
            },
        )
    if "invalid UTF8" in reason:
        found = _COLUMN_INDEX_RE.search(reason)
        column = f" in column {names[int(found.group(1))]!r}" if found else ""
        return FileRejected(
            f"The file is not valid UTF-8 text: some values{column} are in another encoding. "
            f"Save it with the UTF-8 encoding and upload it again.{where}",
            details={"reason": reason},
        )
    if "straddling object" in reason:
        return FileRejected(
            "A row is too long to be read (rows of several MiB are refused). This usually "
            f'means a quote (") is opened and never closed.{where}',
            details={"reason": reason},
        )
    if "Empty CSV file" in reason:
        return FileRejected(
            "The file has a header row but no data rows.", details={"reason": reason}
        )
    return FileRejected(f"The file could not be read as CSV.{where}", details={"reason": reason})


def _rows_fine(rows_read: int) -> str:
    if rows_read == 0:
        return ""
    if rows_read == 1:
        return " The first data row is fine."
    return f" The first {rows_read:,} data rows are fine."


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _known_binary(head: bytes) -> str | None:
    for magic, name in _KNOWN_BINARY:
        if head.startswith(magic):
            return name
    return None


def _binary_problem(head: bytes) -> str | None:
    """Why the head is not text, or None."""
    known = _known_binary(head)
    if known:
        return f"This file is {known}, not a CSV file."
    sample = head[:_SNIFF_BYTES]
    if b"\x00" in sample:
        return "This does not look like a CSV file: it contains binary data (NUL bytes)."
    controls = len(sample) - len(sample.translate(None, _CONTROL_BYTES))
    if sample and controls / len(sample) > _MAX_CONTROL_SHARE:
        return "This does not look like a CSV file: it contains binary data."
    return None


class _ColumnState:
    """The narrowest type that fits every non-null value seen so far, and the nulls."""

    __slots__ = ("kind", "nulls", "_timestamp_type")

    def __init__(self) -> None:
        self.kind: str | None = None
        self.nulls = 0
        self._timestamp_type = _TIMESTAMP_TYPES[0]

    @property
    def type(self) -> str:
        # A column with no value at all gives nothing to narrow on.
        return self.kind or "string"

    def observe(self, values: pa.Array) -> None:
        nulls = values.null_count
        self.nulls += nulls
        if self.kind == "string" or nulls == len(values):
            return
        if self.kind is not None and self._fits(self.kind, values):
            return
        for kind in _WIDER[self.kind]:
            if self._fits(kind, values[:_SAMPLE_SIZE]) and self._fits(kind, values):
                self.kind = kind
                return
        self.kind = "string"

    def _fits(self, kind: str, values: pa.Array) -> bool:
        try:
            if kind == "integer":
                pc.cast(values, pa.int64())
                if pc.all(pc.ascii_is_decimal(values)).as_py() is not False:
                    return True
                # Signs are fine, but the integer parser also reads hexadecimal ("0x1F"),
                # which in a data file is a code rather than a number.
                return not (
                    pc.any(pc.starts_with(values, "0x")).as_py()
                    or pc.any(pc.starts_with(values, "0X")).as_py()
                )
            if kind == "float":
                pc.cast(values, pa.float64())
                return True
            if kind == "boolean":
                matches = pc.is_in(pc.ascii_lower(values), value_set=_TRUE_FALSE)
                return pc.sum(matches).as_py() == len(values) - values.null_count
            if kind == "date":
                pc.cast(values, pa.date32())
                return True
            if kind == "timestamp":
                return self._fits_timestamp(values)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return False
        raise AssertionError(kind)

    def _fits_timestamp(self, values: pa.Array) -> bool:
        # The variant that fitted the last batch almost always fits the next one.
        candidates = (self._timestamp_type,) + tuple(
            t for t in _TIMESTAMP_TYPES if t != self._timestamp_type
        )
        for timestamp_type in candidates:
            try:
                pc.cast(values[:_SAMPLE_SIZE], timestamp_type)
                pc.cast(values, timestamp_type)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                continue
            self._timestamp_type = timestamp_type
            return True
        return False


# --- Parquet -------------------------------------------------------------------------


class _Unclosable:
    """Lends the caller's seekable stream to pyarrow without letting it close it."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.closed = False

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def close(self) -> None:
        self.closed = True


def _inspect_parquet(
    stream: BinaryIO, source: _HashingReader, progress: _Progress
) -> tuple[int, tuple[ColumnProfile, ...]]:
    if _can_seek_from_start(stream):
        _drain(source, progress, sink=None)
        _check_not_empty(source)
        stream.seek(0)
        return _read_parquet_footer(_Unclosable(stream))
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_MAX_IN_MEMORY) as spool:
        _drain(source, progress, sink=spool)
        _check_not_empty(source)
        spool.seek(0)
        return _read_parquet_footer(_Unclosable(spool))


def _can_seek_from_start(stream: BinaryIO) -> bool:
    try:
        # The footer's offsets are from the start of the file, so a stream handed
        # over part-way through is treated as one that cannot seek.
        return bool(stream.seekable()) and stream.tell() == 0
    except (AttributeError, OSError, ValueError):
        return False


def _drain(source: _HashingReader, progress: _Progress, sink: BinaryIO | None) -> None:
    try:
        while chunk := source.read(_READ_CHUNK):
            if sink is not None:
                sink.write(chunk)
            progress.update(source.bytes_read)
    except _ReadFailure:
        raise source.failure from None


def _check_not_empty(source: _HashingReader) -> None:
    if source.bytes_read == 0:
        raise FileRejected("The file is empty.", details={"reason": "zero bytes"})


def _read_parquet_footer(file: _Unclosable) -> tuple[int, tuple[ColumnProfile, ...]]:
    try:
        parquet = pq.ParquetFile(pa.PythonFile(file, mode="r"))
        metadata = parquet.metadata
        _check_width(metadata.num_columns)
        schema = parquet.schema_arrow
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileRejected(
            "The Parquet file is damaged or incomplete: its metadata could not be read.",
            details={"reason": str(exc)},
        ) from None

    names = list(schema.names)
    if not names:
        raise FileRejected("The Parquet file has no columns.", details={"reason": "no columns"})
    _check_names(names)
    if metadata.num_rows == 0:
        raise FileRejected(
            "The Parquet file has columns but no data rows.", details={"reason": "no data rows"}
        )

    leaf_index = {metadata.schema.column(i).path: i for i in range(metadata.num_columns)}
    columns = []
    for field in schema:
        nulls = _parquet_nulls_from_statistics(metadata, leaf_index.get(field.name), field)
        if nulls is None:
            nulls = _parquet_nulls_by_reading(parquet, field.name)
        columns.append(ColumnProfile(name=field.name, type=_arrow_kind(field.type), nulls=nulls))
    return metadata.num_rows, tuple(columns)


def _parquet_nulls_from_statistics(metadata, leaf: int | None, field: pa.Field) -> int | None:
    # Statistics count nulls per leaf; only a flat column's leaf is the column itself.
    if leaf is None or pa.types.is_nested(field.type):
        return None
    total = 0
    for group in range(metadata.num_row_groups):
        statistics = metadata.row_group(group).column(leaf).statistics
        if statistics is None or not statistics.has_null_count:
            return None
        total += statistics.null_count
    return total


def _parquet_nulls_by_reading(parquet: pq.ParquetFile, name: str) -> int:
    try:
        return sum(
            batch.column(0).null_count
            for batch in parquet.iter_batches(columns=[name], batch_size=64 * 1024)
        )
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise FileRejected(
            f"The Parquet file is damaged: column {name!r} could not be read.",
            details={"reason": str(exc), "column": name},
        ) from None


def _arrow_kind(arrow_type: pa.DataType) -> str:
    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type) or pa.types.is_decimal(arrow_type):
        return "float"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_date(arrow_type):
        return "date"
    if pa.types.is_timestamp(arrow_type):
        return "timestamp"
    return "string"
