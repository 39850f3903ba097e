"""A generated sales table written as CSV, for the publish benchmark.

Twelve columns of the types the inspection reports (integers, floats, booleans, dates,
timestamps, strings), some with nulls, drawn by pyarrow's own random generator so that
a GiB is written in seconds without a Python loop per row. Each chunk is seeded
differently, so no two chunks of the file are alike.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

MiB = 1024 * 1024
_ROWS_PER_CHUNK = 200_000
_STORES = pa.array([f"ST{n:04d}" for n in range(500)])
_COUNTRIES = pa.array(["DE", "FR", "NL", "BE", "AT", "CH", "IT", "ES", "PL", "SE", "GB", "IE"])
_STATUSES = pa.array(["paid", "shipped", "delivered", "returned", "cancelled", "pending"])
_WORDS = pa.array(["gift", "express", "bulk order", "call first", "fragile", "repeat"])
_DAY_2020 = 18262  # 2020-01-01 as days since the epoch
_SECOND_2020 = _DAY_2020 * 86400


def _uniform(n: int, seed: int) -> pa.Array:
    return pc.random(n, initializer=seed)


def _ints(n: int, seed: int, low: int, high: int) -> pa.Array:
    """Integers in [low, high)."""
    scaled = pc.add(pc.multiply(_uniform(n, seed), high - low), low)
    return pc.cast(pc.floor(scaled), pa.int64())


def _with_nulls(values: pa.Array, n: int, seed: int, share: float) -> pa.Array:
    return pc.if_else(pc.less(_uniform(n, seed), share), pa.scalar(None, values.type), values)


def _chunk(first_row: int, n: int, seed: int) -> pa.Table:
    s = seed * 100
    quantity = _with_nulls(_ints(n, s + 1, 1, 50), n, s + 2, 0.05)
    price = pc.round(pc.add(pc.multiply(_uniform(n, s + 3), 500.0), 0.5), 2)
    discount = _with_nulls(pc.round(pc.multiply(_uniform(n, s + 4), 0.3), 3), n, s + 5, 0.2)
    day = pc.add(_ints(n, s + 6, 0, 5 * 365), _DAY_2020)
    second = pc.add(_ints(n, s + 7, 0, 5 * 365 * 86400), _SECOND_2020)
    note = pc.binary_join_element_wise(
        pc.take(_WORDS, _ints(n, s + 8, 0, len(_WORDS))),
        pc.cast(_ints(n, s + 9, 0, 100_000), pa.string()),
        " #",
    )
    return pa.table(
        {
            "order_id": pa.array(range(first_row, first_row + n), pa.int64()),
            "customer_id": _ints(n, s + 10, 100_000, 9_999_999),
            "store": pc.take(_STORES, _ints(n, s + 11, 0, len(_STORES))),
            "country": pc.take(_COUNTRIES, _ints(n, s + 12, 0, len(_COUNTRIES))),
            "quantity": quantity,
            "unit_price": price,
            "discount": discount,
            "is_gift": pc.less(_uniform(n, s + 13), 0.1),
            "order_date": pc.cast(pc.cast(day, pa.int32()), pa.date32()),
            "created_at": pc.cast(second, pa.timestamp("s")),
            "status": pc.take(_STATUSES, _ints(n, s + 14, 0, len(_STATUSES))),
            "note": _with_nulls(note, n, s + 15, 0.6),
        }
    )


def write_csv(path: Path, size_bytes: int, *, seed: int = 1) -> int:
    """Writes about `size_bytes` of CSV (header included) to `path`; returns the rows."""
    rows = 0
    chunk = 0
    with pa.OSFile(str(path), "wb") as sink:
        writer = None
        while sink.tell() < size_bytes:
            table = _chunk(rows, _ROWS_PER_CHUNK, seed * 100_000 + chunk)
            if writer is None:
                writer = pacsv.CSVWriter(sink, table.schema)
            # The last chunk is cut to the rows that still fit, judged by its first rows.
            probe = pa.BufferOutputStream()
            pacsv.write_csv(table.slice(0, 1000), probe, pacsv.WriteOptions(include_header=False))
            fits = max(1, (size_bytes - sink.tell()) * 1000 // probe.tell())
            writer.write_table(table.slice(0, fits))
            rows += min(fits, table.num_rows)
            chunk += 1
        if writer is not None:
            writer.close()
    return rows
