"""Rows of a version, read without reading the whole file.

After a version of COLUMNAR_COPY_MIN_BYTES or more is published, `on_version_published`
(an outbox handler) writes a Parquet copy of it with small row groups and records its
key on the version; a smaller file is read as it is. A request
for rows then costs the footer (cached per process: the copy never changes) and the
requested columns of the one or two row groups that hold the requested rows.

Those are read from a local copy of the object when there is one: each web host keeps
copies of columnar objects on its own disk (`LocalCopies`, under VAR_DIR, at most
COLUMNAR_CACHE_BYTES, oldest use out first). A key never changes its bytes, so a copy
never goes stale; it is filled once, on first use, by a streamed download into a
temporary file renamed into place. Objects larger than the whole budget are read with
ranged GETs instead. Until the columnar copy exists (or if it could not be made) rows
come from a streaming read of the published file that stops as soon as it has them.

Types follow the version's schema (integer, float, boolean, date; timestamps keep their
text, so no time zone is invented). A file whose values do not convert is copied with
every column as text rather than not at all.
"""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Iterator
from pathlib import Path
from threading import Lock

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from django.conf import settings

from catalog.inspection import BoundedFeed
from catalog.models import DomainEvent
from catalog.storage import LocalObjectStore, ObjectStore, get_object_store
from versioning.models import DatasetVersion

logger = logging.getLogger(__name__)

# Tens of thousands of rows per group: a deep offset costs one group of the requested
# columns, a few hundred KiB, whatever the size of the file.
ROW_GROUP_ROWS = 32_768
# pyarrow's CSV reader runs up to 32 blocks ahead of its consumer (the Parquet writer);
# the copy holds it to a few (`BoundedFeed`), and small blocks keep those few small.
_CSV_BLOCK_SIZE = 1024 * 1024
_ARROW_TYPES = {
    "integer": pa.int64(),
    "float": pa.float64(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
}
_TRUE = ["true", "True", "TRUE"]
_FALSE = ["false", "False", "FALSE"]


def columnar_key(version: DatasetVersion) -> str:
    dataset = version.dataset
    return (
        f"{dataset.organization.slug}/columnar/{dataset.layer}/{dataset.name}/"
        f"{dataset.name}_v{version.version}_{version.sha256[:12]}.parquet"
    )


# --- Making the copy -------------------------------------------------------------------


def _csv_reader(stream, version: DatasetVersion, *, typed: bool, columns=None):
    types = {
        column["name"]: (_ARROW_TYPES.get(column["type"], pa.string()) if typed else pa.string())
        for column in version.schema
    }
    return pacsv.open_csv(
        stream,
        read_options=pacsv.ReadOptions(block_size=_CSV_BLOCK_SIZE),
        parse_options=pacsv.ParseOptions(newlines_in_values=True),
        convert_options=pacsv.ConvertOptions(
            column_types=types,
            strings_can_be_null=True,
            true_values=_TRUE,
            false_values=_FALSE,
            include_columns=columns,
        ),
    )


class _Readable(io.RawIOBase):
    """Any object with read() as a proper binary file, which pyarrow and gzip expect."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.stream.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if not self.closed:
            self.stream.close()
        super().close()


def _open_text(store: ObjectStore, version: DatasetVersion):
    raw = io.BufferedReader(_Readable(store.open(version.key)), 1024 * 1024)
    return (gzip.GzipFile(fileobj=raw, mode="rb") if version.format == "csv.gz" else raw), raw


def _write_csv_copy(store: ObjectStore, version: DatasetVersion, sink, *, typed: bool) -> None:
    text, raw = _open_text(store, version)
    # The inspection's feed: pyarrow's reader thread stays a few blocks ahead of the
    # writer, however large the file and however fast storage answers.
    feed = BoundedFeed(text)
    try:
        reader = _csv_reader(pa.PythonFile(feed, mode="r"), version, typed=typed)
        with pq.ParquetWriter(sink, reader.schema, compression="snappy") as writer:
            pending: list[pa.RecordBatch] = []
            held = 0
            for batch in reader:
                feed.batch_taken()
                pending.append(batch)
                held += batch.num_rows
                while held >= ROW_GROUP_ROWS:
                    table = pa.Table.from_batches(pending)
                    writer.write_table(
                        table.slice(0, ROW_GROUP_ROWS), row_group_size=ROW_GROUP_ROWS
                    )
                    rest = table.slice(ROW_GROUP_ROWS)
                    pending, held = rest.to_batches(), rest.num_rows
            if held:
                writer.write_table(pa.Table.from_batches(pending), row_group_size=ROW_GROUP_ROWS)
    finally:
        feed.stop()
        raw.close()


def _write_parquet_copy(store: ObjectStore, version: DatasetVersion, sink) -> None:
    # Parquet needs random access: take the published file to local disk once, in chunks.
    with tempfile.TemporaryFile() as local, store.open(version.key) as raw:
        shutil.copyfileobj(raw, local, settings.STREAM_CHUNK_BYTES)
        local.seek(0)
        source = pq.ParquetFile(local)
        with pq.ParquetWriter(sink, source.schema_arrow, compression="snappy") as writer:
            for batch in source.iter_batches(batch_size=ROW_GROUP_ROWS):
                writer.write_table(pa.Table.from_batches([batch]), row_group_size=ROW_GROUP_ROWS)


def columnar_copy_make(*, version: DatasetVersion, store: ObjectStore | None = None) -> str:
    """Writes the Parquet copy of `version` and returns its key. Idempotent: the key is
    derived from the version and its SHA-256, and an existing copy is kept."""
    store = store or get_object_store()
    key = columnar_key(version)
    if store.exists(key):
        return key
    with tempfile.TemporaryFile() as sink:
        if version.format == "parquet":
            _write_parquet_copy(store, version, sink)
        else:
            try:
                _write_csv_copy(store, version, sink, typed=True)
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
                logger.warning("Typed copy of %s failed (%s); copying as text", version, exc)
                sink.seek(0)
                sink.truncate()
                _write_csv_copy(store, version, sink, typed=False)
        sink.seek(0)
        # Two parts in flight: the copy is background work, and its worker's memory
        # stays the same for a 64 MiB file and a 1 GiB one.
        store.write(key, sink, content_type="application/vnd.apache.parquet", parts_in_flight=2)
    return key


def columnar_copy_wanted(version: DatasetVersion) -> bool:
    """Whether `version` is large enough for a columnar copy to pay for itself."""
    return version.size_bytes >= settings.COLUMNAR_COPY_MIN_BYTES


def rows_ready(version: DatasetVersion) -> bool:
    """Whether rows of `version` are read the fast way: from its columnar copy, or from
    the file itself when it is too small to need one."""
    return bool(version.columnar_key) or not columnar_copy_wanted(version)


def copy_wanted_for(payload: dict) -> bool:
    """Whether the version a `version.published` payload names may want a copy, known
    without a query (an event recorded before its payload carried the size may)."""
    return payload.get("size_bytes", math.inf) >= settings.COLUMNAR_COPY_MIN_BYTES


def on_version_published(event: DomainEvent) -> None:
    """Outbox handler for `version.published` (delivered only where `copy_wanted_for`):
    makes the columnar copy, then records it on the version (only if none is recorded,
    so a redelivery changes nothing)."""
    version = (
        DatasetVersion.objects.select_related("dataset__organization")
        .filter(pk=event.payload.get("version_id"))
        .first()
    )
    if version is None or version.columnar_key or not columnar_copy_wanted(version):
        return
    key = columnar_copy_make(version=version)
    DatasetVersion.objects.filter(pk=version.pk, columnar_key="").update(columnar_key=key)


# --- Reading rows ----------------------------------------------------------------------


class _FooterCache:
    """Parquet footers of immutable objects, per process, least recently used first out."""

    def __init__(self, capacity: int = 128) -> None:
        self.capacity = capacity
        self.items: OrderedDict[str, tuple[pq.FileMetaData, int]] = OrderedDict()
        self.lock = Lock()

    def get(self, store: ObjectStore, key: str) -> tuple[pq.FileMetaData, int]:
        with self.lock:
            if key in self.items:
                self.items.move_to_end(key)
                return self.items[key]
        size = store.size(key)
        footer = _read_footer(store, key, size)
        with self.lock:
            self.items[key] = (footer, size)
            while len(self.items) > self.capacity:
                self.items.popitem(last=False)
        return footer, size


def _read_footer(store: ObjectStore, key: str, size: int) -> pq.FileMetaData:
    # The footer is the last 8 bytes (length, magic) plus the length they name; one
    # guess of 64 KiB usually gets it all in one request.
    tail = store.read_range(key, max(0, size - 65536), min(size, 65536))
    length = int.from_bytes(tail[-8:-4], "little")
    if length + 8 > len(tail):
        tail = store.read_range(key, size - length - 8, length + 8)
    return pq.read_metadata(pa.BufferReader(tail[-(length + 8) :]))


_footers = _FooterCache()


class _Fetched(io.RawIOBase):
    """A Parquet file of which only some byte ranges were fetched: pyarrow, given the
    footer separately, reads exactly the column chunks those ranges cover."""

    def __init__(self, size: int, pieces: list[tuple[int, bytes]]) -> None:
        self.size, self.pieces, self.position = size, pieces, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = max(0, base + offset)
        return self.position

    def read(self, size: int = -1) -> bytes:
        for start, data in self.pieces:
            if start <= self.position < start + len(data):
                offset = self.position - start
                end = len(data) if size is None or size < 0 else offset + size
                chunk = data[offset:end]
                self.position += len(chunk)
                return chunk
        raise OSError(f"Byte {self.position} of the Parquet copy was not fetched.")

    def readinto(self, buffer) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


# Column chunks closer than this are fetched in one request, gap and all.
_MERGE_GAP = 1024 * 1024


def _fetch_chunks(
    store: ObjectStore, key: str, metadata, groups: list[int], columns: list[str], size: int
) -> _Fetched:
    spans = []
    for index in groups:
        group = metadata.row_group(index)
        for position in range(group.num_columns):
            chunk = group.column(position)
            if chunk.path_in_schema.split(".")[0] not in columns:
                continue
            start = chunk.data_page_offset
            if chunk.has_dictionary_page and chunk.dictionary_page_offset:
                start = min(start, chunk.dictionary_page_offset)
            spans.append([start, start + chunk.total_compressed_size])
    spans.sort()
    merged: list[list[int]] = []
    for span in spans:
        if merged and span[0] - merged[-1][1] <= _MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], span[1])
        else:
            merged.append(span)
    return _Fetched(
        size, [(start, store.read_range(key, start, end - start)) for start, end in merged]
    )


class LocalCopies:
    """Whole copies of immutable objects on this host's disk, at most `budget` bytes.

    A copy is named by the SHA-256 of its key and size, and filled by one streamed
    download into a temporary file in the same folder, renamed into place only when
    complete and of the object's size: a reader sees the whole object or none. A lock
    file per key makes concurrent first uses (other workers on the host) wait for one
    download instead of each making their own. Each use touches the copy's time; past
    the budget, the copies used longest ago are deleted.
    """

    def __init__(self, root: Path, budget: int) -> None:
        self.root, self.budget = root, budget

    def _path(self, key: str, size: int) -> Path:
        name = hashlib.sha256(f"{key}\n{size}".encode()).hexdigest()
        return self.root / f"{name}.parquet"

    def path(self, store: ObjectStore, key: str, size: int) -> Path | None:
        """The local copy of `key` (of `size` bytes), filled now if need be; None when
        it cannot be kept (larger than the budget, or the budget is 0)."""
        if size > self.budget:
            return None
        path = self._path(key, size)
        if self._touch(path):
            return path
        self.root.mkdir(parents=True, exist_ok=True)
        with open(path.with_suffix(".lock"), "wb") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not self._touch(path):
                self._fill(store, key, size, path)
        self._evict(keep=path)
        return path

    def _touch(self, path: Path) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def _fill(self, store: ObjectStore, key: str, size: int, path: Path) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".fill-")
        try:
            with os.fdopen(fd, "wb") as out, store.open(key) as source:
                shutil.copyfileobj(source, out, settings.STREAM_CHUNK_BYTES)
                written = out.tell()
            if written != size:
                raise OSError(f"Got {written} of {size} bytes of {key!r}.")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _evict(self, *, keep: Path) -> None:
        copies = []
        for entry in os.scandir(self.root):
            if entry.name.endswith(".parquet"):
                try:
                    info = entry.stat()
                except FileNotFoundError:
                    continue
                copies.append((info.st_mtime, info.st_size, entry.path))
        total = sum(size for _, size, _ in copies)
        for _, size, path in sorted(copies):
            if total <= self.budget:
                break
            if path != str(keep):
                Path(path).unlink(missing_ok=True)
                total -= size


def local_copies() -> LocalCopies:
    return LocalCopies(Path(settings.VAR_DIR) / "columnar-cache", settings.COLUMNAR_CACHE_BYTES)


def _parquet_source(store, key, size, metadata, groups, columns):
    if isinstance(store, LocalObjectStore):
        return str(store.path(key))
    local = local_copies().path(store, key, size)
    if local is not None:
        return str(local)
    # Over the network, one ranged GET per run of adjacent column chunks.
    return _fetch_chunks(store, key, metadata, groups, columns, size)


def _read_parquet_rows(
    store: ObjectStore, key: str, *, columns: list[str], offset: int, limit: int
) -> pa.Table:
    metadata, size = _footers.get(store, key)
    groups, first_row, start = [], None, 0
    for index in range(metadata.num_row_groups):
        rows = metadata.row_group(index).num_rows
        if start + rows > offset and start < offset + limit:
            groups.append(index)
            if first_row is None:
                first_row = start
        start += rows
    if not groups:
        return pa.Table.from_pylist([], schema=metadata.schema.to_arrow_schema()).select(columns)
    source = _parquet_source(store, key, size, metadata, groups, columns)
    parquet = pq.ParquetFile(source, metadata=metadata)
    table = parquet.read_row_groups(groups, columns=columns)
    return table.slice(offset - first_row, limit)


def _read_csv_rows(
    store: ObjectStore, version: DatasetVersion, *, columns: list[str], offset: int, limit: int
) -> pa.Table:
    text, raw = _open_text(store, version)
    try:
        try:
            reader = _csv_reader(text, version, typed=True, columns=columns)
            return _take(reader, offset, limit)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raw.close()
            text, raw = _open_text(store, version)
            reader = _csv_reader(text, version, typed=False, columns=columns)
            return _take(reader, offset, limit)
    finally:
        raw.close()


def _take(batches: Iterator[pa.RecordBatch], offset: int, limit: int) -> pa.Table:
    """The rows [offset, offset + limit) of a stream of batches; stops reading there."""
    kept: list[pa.RecordBatch] = []
    seen = 0
    schema = batches.schema
    for batch in batches:
        end = seen + batch.num_rows
        if end > offset:
            start = max(0, offset - seen)
            kept.append(batch.slice(start, offset + limit - seen - start))
        seen = end
        if seen >= offset + limit:
            break
    return pa.Table.from_batches(kept, schema=schema).slice(0, limit)


def rows_read(
    *,
    version: DatasetVersion,
    columns: list[str],
    offset: int,
    limit: int,
    store: ObjectStore | None = None,
) -> pa.Table:
    """Rows [offset, offset + limit) of `version`, only `columns`, in the file's order."""
    store = store or get_object_store()
    if version.columnar_key:
        return _read_parquet_rows(
            store, version.columnar_key, columns=columns, offset=offset, limit=limit
        )
    if version.format == "parquet":
        return _read_parquet_rows(store, version.key, columns=columns, offset=offset, limit=limit)
    return _read_csv_rows(store, version, columns=columns, offset=offset, limit=limit)


# --- Encoding rows ---------------------------------------------------------------------


def _plain(table: pa.Table) -> pa.Table:
    """Columns JSON can carry: dates and times as ISO text, non-finite floats as null."""
    arrays = []
    for column in table.columns:
        kind = column.type
        if pa.types.is_floating(kind):
            column = pc.if_else(pc.is_finite(column), column, pa.scalar(None, kind))
        elif pa.types.is_temporal(kind) or pa.types.is_decimal(kind):
            column = pc.cast(column, pa.string())
        arrays.append(column)
    return pa.Table.from_arrays(arrays, names=table.column_names)


def _fallback(value):
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return str(value)


def rows_as_dicts(table: pa.Table) -> list[dict]:
    return _plain(table).to_pylist()


def encode_json(body: dict) -> bytes:
    return json.dumps(body, separators=(",", ":"), default=_fallback).encode()


def encode_ndjson(table: pa.Table) -> bytes:
    dumps = json.JSONEncoder(separators=(",", ":"), default=_fallback).encode
    return "".join(dumps(row) + "\n" for row in rows_as_dicts(table)).encode()


def _is_text(column) -> bool:
    return pa.types.is_string(column.type) or pa.types.is_large_string(column.type)


def _has_empty(column) -> bool:
    if column.null_count:
        return True
    return _is_text(column) and bool(pc.any(pc.equal(column, "")).as_py())


def _needs_quotes(column) -> bool:
    return _is_text(column) and bool(pc.any(pc.match_substring_regex(column, _STRUCTURAL)).as_py())


# A value holding one of these needs quotes in CSV.
_STRUCTURAL = '[",\r\n]'


def encode_csv(table: pa.Table) -> bytes:
    """The rows as CSV, written by pyarrow's CSV writer in the form our clients have
    always had (that of Python's csv module): numbers as Python writes them (a float's
    shortest round-trip form, `7.0`, `1e-05`), `true`/`false`, null as an empty field,
    no quotes unless a value needs them. pyarrow quotes either every text value or none,
    so when some text needs quotes, every text value of the answer gets them (any CSV
    reader reads the same values)."""
    plain = _plain(table)
    columns = [
        # Arrow writes 7.0 as "7": keep the digits clients have always had.
        pa.array([None if v is None else repr(v) for v in column.to_pylist()], pa.string())
        if pa.types.is_floating(column.type)
        else column
        for column in plain.columns
    ]
    if len(columns) == 1 and _has_empty(columns[0]):
        # A lone empty field would be a blank line, which CSV readers skip: quote it.
        columns = [pc.fill_null(pc.cast(columns[0], pa.string()), "")]
        quote = True
    else:
        quote = any(_needs_quotes(c) for c in columns)
    options = pacsv.WriteOptions(
        quoting_style="needed" if quote else "none",
        quoting_header="needed"
        if any(re.search(_STRUCTURAL, name) for name in plain.column_names)
        else "none",
    )
    out = io.BytesIO()
    pacsv.write_csv(pa.Table.from_arrays(columns, names=plain.column_names), out, options)
    return out.getvalue()
