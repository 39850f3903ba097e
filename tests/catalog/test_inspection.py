"""Tests for the one-pass inspection of uploaded CSV, gzip CSV and Parquet files.

These need no database and no Django settings: they only import catalog.inspection.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.exceptions import FileRejected
from catalog.inspection import (
    COLUMN_TYPES,
    FORMATS,
    ColumnProfile,
    FileProfile,
    UploadInspector,
    detect_format,
    inspect_stream,
)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def inspect(data: bytes, format: str = "csv", **kwargs) -> FileProfile:
    return inspect_stream(io.BytesIO(data), format=format, **kwargs)


def types_of(profile: FileProfile) -> dict[str, str]:
    return {column.name: column.type for column in profile.columns}


def nulls_of(profile: FileProfile) -> dict[str, int]:
    return {column.name: column.nulls for column in profile.columns}


def parquet_bytes(table: pa.Table, **kwargs) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(table, buffer, **kwargs)
    return buffer.getvalue()


def noisy_csv(rows: int, seed: int = 7) -> bytes:
    """CSV that compresses poorly, so that cutting its gzip form really truncates it."""
    rng = random.Random(seed)
    lines = [b"id,value,label"]
    lines.extend(b"%d,%d,%x" % (i, rng.randrange(10**9), rng.getrandbits(64)) for i in range(rows))
    return b"\n".join(lines) + b"\n"


class OneWayStream:
    """A stream that can only be read forward, and counts what it hands out."""

    def __init__(self, data: bytes, piece: int | None = None) -> None:
        self._data = io.BytesIO(data)
        self._piece = piece
        self.bytes_served = 0
        self.reads_after_end = 0

    def read(self, size: int = -1) -> bytes:
        if self._piece is not None and (size is None or size < 0 or size > self._piece):
            # Like a socket or an upload wrapper: fewer bytes than asked for.
            size = self._piece
        chunk = self._data.read(size)
        if not chunk:
            self.reads_after_end += 1
        self.bytes_served += len(chunk)
        return chunk

    def seekable(self) -> bool:
        return False


# --- what a good file yields -----------------------------------------------------------


def test_the_checksum_and_size_are_those_of_the_exact_bytes_read() -> None:
    data = b"id,name\n1,alpha\n2,beta\n3,gamma\n"

    profile = inspect(data)

    assert profile.format == "csv"
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.size_bytes == len(data)


def test_a_stream_that_returns_short_reads_is_read_once_to_its_end() -> None:
    data = noisy_csv(50_000)
    stream = OneWayStream(data, piece=1000)

    profile = inspect_stream(stream, format="csv")

    assert stream.bytes_served == len(data)
    assert profile.size_bytes == len(data)
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.row_count == 50_000


def test_rows_are_counted_without_the_header_and_with_multiline_values() -> None:
    data = (
        b"id,comment\r\n"
        b'1,"first line\r\nsecond line"\r\n'
        b'2,"a ""quoted"" word, and a comma"\r\n'
        b"\r\n"
        b"3,plain\r\n"
    )

    profile = inspect(data)

    # The blank line is not a row: pyarrow skips empty lines.
    assert profile.row_count == 3
    assert types_of(profile) == {"id": "integer", "comment": "string"}


def test_quoted_header_names_and_a_byte_order_mark_are_read_as_any_csv_reader_would() -> None:
    data = b'\xef\xbb\xbf"id","total, in EUR","two\nlines"\n1,2.5,x\n'

    profile = inspect(data)

    assert [column.name for column in profile.columns] == ["id", "total, in EUR", "two\nlines"]
    assert profile.sha256 == hashlib.sha256(data).hexdigest()


def test_each_column_gets_the_narrowest_type_that_fits_all_its_values() -> None:
    data = (
        b"int,float,mixed,bool,bits,date,timestamp,date_time,zoned,text,hex,empty\n"
        b"1,1.5,1,true,1,2024-01-31,2024-01-31 10:00:00,2024-01-31,2024-01-31T10:00:00Z,a,0x1F,\n"
        b"-2,2e3,2.5,FALSE,0,2023-12-01,2024-02-01T11:30:00.123456,2024-02-01 08:00:00,"
        b"2024-01-31T10:00:00+02:00,b,0x20,\n"
        b"30,-0.25,3,True,1,1999-06-15,1999-06-15 00:00:00.123456789,1999-06-15,"
        b"2024-01-31T10:00:00.5Z,3,0x21,\n"
    )

    profile = inspect(data)

    assert types_of(profile) == {
        "int": "integer",
        "float": "float",
        "mixed": "float",
        "bool": "boolean",
        "bits": "integer",
        "date": "date",
        "timestamp": "timestamp",
        "date_time": "timestamp",
        "zoned": "timestamp",
        "text": "string",
        "hex": "string",
        "empty": "string",
    }
    assert {column.type for column in profile.columns} <= set(COLUMN_TYPES)


def test_a_value_that_does_not_fit_after_several_mib_widens_the_column() -> None:
    # pyarrow's own inference settles types on the first block and then fails on a
    # later one; here the odd values come after more than six MiB of fitting ones.
    rows = [b"count,day,code,flag,late"]
    rows.extend(b"%d,2024-01-%02d,%d,true," % (i, i % 28 + 1, i) for i in range(400_000))
    body = b"\n".join(rows) + b"\n"
    assert len(body) > 6 * MiB
    data = body + b"1.5,2024-02-01 12:00:00,A-17,false,42\n"

    profile = inspect(data)

    assert profile.row_count == 400_001
    assert types_of(profile) == {
        "count": "float",
        "day": "timestamp",
        "code": "string",
        "flag": "boolean",
        "late": "integer",
    }
    assert nulls_of(profile)["late"] == 400_000


def test_empty_fields_and_common_null_markers_are_counted_as_nulls() -> None:
    data = b'a,b,c\n1,,x\nNA,2,null\n3,N/A,""\n,4,NULL\n'

    profile = inspect(data)

    assert nulls_of(profile) == {"a": 2, "b": 2, "c": 3}
    assert types_of(profile) == {"a": "integer", "b": "integer", "c": "string"}


def test_a_gzip_file_is_hashed_on_its_compressed_bytes() -> None:
    text = noisy_csv(20_000)
    data = gzip.compress(text)

    profile = inspect(data, "csv.gz")

    assert profile.format == "csv.gz"
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.size_bytes == len(data)
    assert profile.row_count == 20_000
    assert types_of(profile) == {"id": "integer", "value": "integer", "label": "string"}


def test_concatenated_gzip_members_read_as_one_file() -> None:
    data = gzip.compress(b"a,b\n1,x\n") + gzip.compress(b"2,y\n3,z\n")

    profile = inspect(data, "csv.gz")

    assert profile.row_count == 3
    assert profile.size_bytes == len(data)


def test_parquet_types_rows_and_nulls_come_from_its_metadata() -> None:
    table = pa.table(
        {
            "small": pa.array([1, None, 3, 4], pa.int8()),
            "big": pa.array([1, 2, 3, None], pa.uint64()),
            "ratio": pa.array([0.5, None, None, 1.5], pa.float32()),
            "amount": pa.array([Decimal(f"{i}.25") for i in range(4)], pa.decimal128(10, 2)),
            "ok": pa.array([True, False, None, True]),
            "day": pa.array([0, 1, 2, None], pa.int32()).cast(pa.date32()),
            "at": pa.array([0, 1, 2, 3], pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "name": pa.array(["a", None, "c", "d"]),
            "tag": pa.array(["x", "y", "x", None]).dictionary_encode(),
            "items": pa.array([[1], None, [2, 3], []]),
        }
    )
    data = parquet_bytes(table, row_group_size=2)

    profile = inspect(data, "parquet")

    assert profile.format == "parquet"
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.size_bytes == len(data)
    assert profile.row_count == 4
    assert types_of(profile) == {
        "small": "integer",
        "big": "integer",
        "ratio": "float",
        "amount": "float",
        "ok": "boolean",
        "day": "date",
        "at": "timestamp",
        "name": "string",
        "tag": "string",
        "items": "string",
    }
    assert nulls_of(profile) == {
        "small": 1,
        "big": 1,
        "ratio": 2,
        "amount": 0,
        "ok": 1,
        "day": 1,
        "at": 0,
        "name": 1,
        "tag": 1,
        "items": 1,
    }


def test_parquet_without_statistics_has_its_nulls_counted_by_reading_the_column() -> None:
    table = pa.table({"a": [1, None, None, 4, 5], "b": ["x", "y", None, "z", "w"]})
    data = parquet_bytes(table, write_statistics=False, row_group_size=2)

    profile = inspect(data, "parquet")

    assert nulls_of(profile) == {"a": 2, "b": 1}


def test_a_parquet_stream_that_cannot_seek_is_hashed_and_read_from_a_spool() -> None:
    table = pa.table({"id": list(range(1000)), "label": [f"row {i}" for i in range(1000)]})
    data = parquet_bytes(table)
    stream = OneWayStream(data, piece=4096)

    profile = inspect_stream(stream, format="parquet")

    assert stream.bytes_served == len(data)
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.row_count == 1000
    assert types_of(profile) == {"id": "integer", "label": "string"}


def test_progress_is_reported_with_increasing_values_ending_at_the_size() -> None:
    data = noisy_csv(300_000)
    assert len(data) > 8 * MiB
    seen: list[int] = []

    profile = inspect(data, on_progress=seen.append, progress_every=MiB)

    # Reports follow the reader, which takes the file in blocks of a few MiB.
    assert len(seen) >= 2
    assert seen[0] < len(data)
    assert seen == sorted(set(seen))
    assert seen[-1] == profile.size_bytes == len(data)


def test_a_file_smaller_than_the_progress_step_reports_once_at_the_end() -> None:
    data = b"a,b\n1,2\n"
    seen: list[int] = []

    inspect(data, on_progress=seen.append)

    assert seen == [len(data)]


def test_progress_counts_compressed_bytes_for_gzip_and_covers_parquet() -> None:
    compressed = gzip.compress(noisy_csv(100_000))
    parquet = parquet_bytes(pa.table({"a": list(range(300_000))}))
    gzip_seen: list[int] = []
    parquet_seen: list[int] = []

    inspect(compressed, "csv.gz", on_progress=gzip_seen.append, progress_every=256 * 1024)
    inspect(parquet, "parquet", on_progress=parquet_seen.append, progress_every=1)

    assert gzip_seen == sorted(set(gzip_seen)) and gzip_seen[-1] == len(compressed)
    assert parquet_seen == sorted(set(parquet_seen)) and parquet_seen[-1] == len(parquet)


def test_the_profile_describes_itself_as_plain_data() -> None:
    profile = inspect(b"a,b\n1,\n")

    assert profile.schema == [
        {"name": "a", "type": "integer", "nulls": 0},
        {"name": "b", "type": "string", "nulls": 1},
    ]
    assert ColumnProfile("a", "integer", 0).as_dict() == {
        "name": "a",
        "type": "integer",
        "nulls": 0,
    }


def test_memory_stays_flat_while_a_large_generated_stream_is_inspected() -> None:
    # A subprocess, so that the peak resident size (which counts pyarrow's memory and
    # Python's alike) is this inspection's alone. The warm-up pays for thread pools and
    # allocator caches; what is measured is how much more a 150 MiB stream needs.
    script = textwrap.dedent(
        """
        import json, re
        import pyarrow as pa
        from catalog.inspection import inspect_stream

        def peak_rss():
            status = open("/proc/self/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

        class Generated:
            # Serves `total` bytes of CSV made on the fly; nothing is kept.
            def __init__(self, total):
                rows = b"".join(
                    b"%d,%d.%02d,item-%d,2024-01-%02d,%s,\\n"
                    % (i, i % 1000, i % 100, i, i % 28 + 1, b"true" if i % 2 else b"false")
                    for i in range(20000)
                )
                self._rows, self._left = rows, total
                self._pending = b"id,amount,label,day,flag,note\\n"
                self.rows_served = 0

            def read(self, size=-1):
                if not self._pending:
                    if self._left <= 0:
                        return b""
                    self._pending = self._rows
                    self._left -= len(self._rows)
                    self.rows_served += 20000
                out, self._pending = self._pending[:size], self._pending[size:]
                return out

        inspect_stream(Generated(16 << 20), format="csv")
        before = peak_rss()
        stream = Generated(150 << 20)
        profile = inspect_stream(stream, format="csv")
        print(json.dumps({
            "growth": peak_rss() - before,
            "arrow_peak": pa.default_memory_pool().max_memory(),
            "size": profile.size_bytes,
            "rows": profile.row_count,
            "rows_served": stream.rows_served,
            "types": [column.type for column in profile.columns],
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)

    assert facts["size"] > 150 * MiB
    assert facts["rows"] == facts["rows_served"]
    assert facts["types"] == ["integer", "float", "string", "date", "boolean", "string"]
    assert facts["growth"] < 64 * MiB, facts
    assert facts["arrow_peak"] < 64 * MiB, facts


# --- what is refused -------------------------------------------------------------------


@pytest.mark.parametrize("format", FORMATS)
def test_an_empty_file_is_refused(format: str) -> None:
    with pytest.raises(FileRejected) as caught:
        inspect(b"", format)

    assert caught.value.message == "The file is empty."


def test_a_gzip_file_with_nothing_inside_is_refused() -> None:
    with pytest.raises(FileRejected, match="empty once decompressed"):
        inspect(gzip.compress(b""), "csv.gz")


def test_a_binary_file_posing_as_csv_is_refused() -> None:
    with pytest.raises(FileRejected, match="binary data"):
        inspect(b"id,name\n1,\x00\x00\x00\x01\x02\n")


def test_random_bytes_posing_as_csv_are_refused() -> None:
    noise = random.Random(3).randbytes(50_000)

    with pytest.raises(FileRejected, match="does not look like a CSV file"):
        inspect(noise)


def test_a_gzip_file_given_as_plain_csv_is_refused_and_named() -> None:
    with pytest.raises(FileRejected, match="gzip-compressed"):
        inspect(gzip.compress(b"a,b\n1,2\n"), "csv")


def test_a_row_with_more_fields_than_the_header_is_refused() -> None:
    with pytest.raises(FileRejected) as caught:
        inspect(b"a,b\n1,2\n3,4,5\n6,7\n")

    assert "A row has 3 fields but the header has 2 columns" in caught.value.message
    assert "'3,4,5'" in caught.value.message
    assert caught.value.details["row_text"] == "3,4,5"
    assert "Expected 2 columns, got 3" in caught.value.details["reason"]


def test_a_row_with_fewer_fields_than_the_header_is_refused_and_placed() -> None:
    data = b"a,b,c\n" + b"1,2,3\n" * 1_000_000 + b"4,5\n"

    with pytest.raises(FileRejected) as caught:
        inspect(data)

    assert "A row has 2 fields but the header has 3 columns" in caught.value.message
    # pyarrow does not number the rows; what was read before the bad block is known.
    assert "data rows are fine" in caught.value.message


def test_an_unclosed_quote_is_refused_with_a_hint() -> None:
    data = b"a,b\n1,2\n" + b'"oops,3\n' + b"4,5\n" * 1000

    with pytest.raises(FileRejected, match="never closed"):
        inspect(data)


@pytest.mark.parametrize("data", [b"a,b\n", b"a,b", b"a,b\r\n\r\n\r\n"])
def test_a_header_only_file_is_refused(data: bytes) -> None:
    with pytest.raises(FileRejected, match="header row but no data rows"):
        inspect(data)


def test_a_file_of_blank_lines_is_refused() -> None:
    with pytest.raises(FileRejected, match="no header row"):
        inspect(b"\n\n\n")


def test_duplicate_column_names_are_refused_and_named() -> None:
    with pytest.raises(FileRejected) as caught:
        inspect(b"id,name,id,total,name\n1,a,2,3,b\n")

    assert "'id', 'name'" in caught.value.message
    assert caught.value.details["names"] == ["id", "name"]


def test_an_empty_column_name_is_refused_with_its_position() -> None:
    with pytest.raises(FileRejected) as caught:
        inspect(b'id,"  ",total\n1,2,3\n')

    assert caught.value.message.startswith("Column 2 has no name")
    assert caught.value.details["position"] == 2


def test_a_file_that_is_not_utf8_is_refused() -> None:
    data = "id,city\n1,Zürich\n".encode("latin-1")

    with pytest.raises(FileRejected) as caught:
        inspect(data)

    assert "not valid UTF-8" in caught.value.message
    assert "line 2" in caught.value.message


def test_invalid_utf8_far_into_the_file_is_refused_and_its_column_named() -> None:
    data = b"id,city\n" + b"1,Bern\n" * 200_000 + "2,Zürich\n".encode("latin-1")

    with pytest.raises(FileRejected) as caught:
        inspect(data)

    assert "not valid UTF-8" in caught.value.message
    assert "'city'" in caught.value.message


def test_a_truncated_gzip_file_is_refused() -> None:
    data = gzip.compress(noisy_csv(20_000))

    with pytest.raises(FileRejected, match="truncated"):
        inspect(data[: len(data) // 2], "csv.gz")


def test_garbage_after_the_gzip_magic_is_refused() -> None:
    data = b"\x1f\x8b" + random.Random(5).randbytes(4096)

    with pytest.raises(FileRejected, match="not a valid gzip file") as caught:
        inspect(data, "csv.gz")

    # What gzip found wrong (here: no compression method it knows).
    assert "compression method" in caught.value.details["reason"]


def test_garbage_after_a_complete_gzip_member_is_refused() -> None:
    with pytest.raises(FileRejected, match="not a valid gzip file"):
        inspect(gzip.compress(b"a,b\n1,2\n") + b"trailing junk", "csv.gz")


def test_a_truncated_parquet_file_is_refused() -> None:
    data = parquet_bytes(pa.table({"a": list(range(1000))}))

    with pytest.raises(FileRejected, match="Parquet file is damaged") as caught:
        inspect(data[: len(data) - 100], "parquet")

    assert caught.value.details["reason"]


def test_parquet_magic_followed_by_garbage_is_refused() -> None:
    data = b"PAR1" + random.Random(9).randbytes(4096) + b"PAR1"

    with pytest.raises(FileRejected, match="Parquet file is damaged"):
        inspect(data, "parquet")


def test_a_parquet_file_without_rows_is_refused() -> None:
    data = parquet_bytes(pa.table({"a": pa.array([], pa.int64())}))

    with pytest.raises(FileRejected, match="no data rows"):
        inspect(data, "parquet")


def test_a_stream_that_fails_while_being_read_is_refused_not_crashed() -> None:
    class Failing(OneWayStream):
        def read(self, size: int = -1) -> bytes:
            if self.bytes_served > 3 * MiB:
                raise OSError("connection reset by peer")
            return super().read(size)

    with pytest.raises(FileRejected) as caught:
        inspect_stream(Failing(noisy_csv(200_000)), format="csv")

    assert "could not be read" in caught.value.message
    assert "connection reset" in caught.value.details["reason"]


def test_an_unknown_format_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        inspect(b"a\n1\n", "xlsx")


# --- format detection ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filename", "head", "expected"),
    [
        ("data.csv", b"id,name\n1,a\n", "csv"),
        ("DATA.CSV", b"id,name\n", "csv"),
        ("export", b"id,name\n", "csv"),
        ("data.csv.gz", b"\x1f\x8b\x08\x00", "csv.gz"),
        ("data.gz", b"", "csv.gz"),
        ("data.parquet", b"PAR1\x15\x04", "parquet"),
        ("data.pq", b"", "parquet"),
        # The bytes decide before the name does.
        ("data.csv", b"\x1f\x8b\x08\x00", "csv.gz"),
        ("upload.bin", b"PAR1\x15\x04", "parquet"),
    ],
)
def test_the_format_comes_from_the_first_bytes_then_the_name(
    filename: str, head: bytes, expected: str
) -> None:
    assert detect_format(filename, head) == expected


@pytest.mark.parametrize(
    ("filename", "head", "message"),
    [
        ("data.zip", b"PK\x03\x04\x14\x00", "ZIP archive"),
        ("data.csv", b"PK\x03\x04\x14\x00", "ZIP archive"),
        ("chart.png", b"\x89PNG\r\n\x1a\n\x00\x00", "PNG image"),
        ("data.tsv", b"id\tname\n", "Tab-separated"),
        ("data.xlsx", b"", "Excel"),
        ("data.bin", bytes(range(256)), "binary data"),
        ("data.csv", b"id,name\n\x00\x01\x02", "binary data"),
    ],
)
def test_anything_else_is_refused_with_a_reason(filename: str, head: bytes, message: str) -> None:
    with pytest.raises(FileRejected, match=message):
        detect_format(filename, head)


# --- wide files ------------------------------------------------------------------------


def test_a_csv_wider_than_max_columns_is_refused_from_its_header_with_little_memory():
    import tracemalloc

    columns = 100_000
    header = ",".join(f"c{i}" for i in range(columns)).encode()
    data = header + b"\n" + b",".join([b"1"] * columns) + b"\n"
    tracemalloc.start()
    try:
        with pytest.raises(FileRejected) as refused:
            inspect(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert refused.value.details == {
        "reason": "too many columns",
        "columns": columns,
        "limit": 2000,
    }
    assert "100,000 columns; at most 2,000" in refused.value.message
    assert peak < 64 * MiB


def test_the_column_limit_is_a_setting_and_applies_to_parquet_too(settings):
    settings.MAX_COLUMNS = 3
    inspect(b"a,b,c\n1,2,3\n")
    with pytest.raises(FileRejected, match="4 columns; at most 3"):
        inspect(b"a,b,c,d\n1,2,3,4\n")
    table = pa.table({name: [1] for name in "abcd"})
    with pytest.raises(FileRejected, match="4 columns; at most 3"):
        inspect(parquet_bytes(table), format="parquet")


# --- inspecting while uploading ------------------------------------------------------


def _mixed_csv(rows: int) -> bytes:
    lines = [b"id,day,price,flag,note"]
    for n in range(rows):
        note = b"" if n % 7 == 0 else f"text {n}, quoted".encode()
        lines.append(b'%d,2024-01-%02d,%d.25,%s,"%s"' % (n, n % 28 + 1, n, b"true", note))
    return b"\n".join(lines) + b"\n"


def _upload_through(inspector: UploadInspector, chunk: int) -> int:
    """What a storage write does with the inspector: read it to its end in chunks."""
    sent = 0
    while data := inspector.read(chunk):
        sent += len(data)
    return sent


@pytest.mark.parametrize("format", ["csv", "csv.gz"])
@pytest.mark.parametrize("chunk", [1000, 3 * MiB + 7], ids=["small-chunks", "large-chunks"])
def test_a_file_inspected_while_uploading_gets_the_profile_of_the_bytes_sent(
    format: str, chunk: int
) -> None:
    data = _mixed_csv(200_000)
    if format == "csv.gz":
        data = gzip.compress(data, compresslevel=1)
    # Chunks that are not the parser's blocks: they are cut and joined on the way.
    inspector = UploadInspector(io.BytesIO(data), format=format, buffer_bytes=2 * chunk)

    assert _upload_through(inspector, chunk) == len(data)
    profile = inspector.finish()

    assert profile == inspect(data, format)
    assert profile.sha256 == hashlib.sha256(data).hexdigest()


def test_an_abandoned_upload_stops_its_inspection_and_gives_no_profile() -> None:
    data = _mixed_csv(200_000)
    inspector = UploadInspector(io.BytesIO(data), format="csv")
    inspector.read(len(data) // 2)

    inspector.abandon()

    assert inspector.profile is None
    assert "stopped before the end" in inspector.failure.details["reason"]


def test_a_file_refused_while_uploading_gives_no_profile_and_the_upload_goes_on() -> None:
    data = _mixed_csv(100_000) + b"1,2\n" + _mixed_csv(100_000)
    inspector = UploadInspector(io.BytesIO(data), format="csv", buffer_bytes=64 * 1024)

    assert _upload_through(inspector, 64 * 1024) == len(data)
    assert inspector.finish() is None
    assert isinstance(inspector.failure, FileRejected)
