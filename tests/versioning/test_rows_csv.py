"""Rows as CSV: pyarrow's CSV writer, in the form clients have always had."""

from __future__ import annotations

import csv
import datetime
import io

import pyarrow as pa

from versioning.columnar import encode_csv


def test_numbers_keep_their_form_and_nothing_is_quoted_that_needs_no_quotes():
    table = pa.table(
        {
            "revenue": [7.0, 10.5, 1e-05, None, 1e20, float("nan"), -0.0],
            "store": ["ST1", "", None, "x y", "é", "ST2", "ST3"],
            "units": pa.array([1, None, 3, 4, 5, 6, 7], pa.int64()),
            "holiday": [True, False, None, True, False, True, False],
            "day": [datetime.date(2024, 8, 10), None, None, None, None, None, None],
        }
    )
    assert encode_csv(table) == (
        b"revenue,store,units,holiday,day\n"
        b"7.0,ST1,1,true,2024-08-10\n"
        b"10.5,,,false,\n"
        b"1e-05,,3,,\n"
        b",x y,4,true,\n"
        b"1e+20,\xc3\xa9,5,false,\n"
        b",ST2,6,true,\n"
        b"-0.0,ST3,7,false,\n"
    )


def test_text_that_needs_quotes_reads_back_as_written():
    table = pa.table({"note": ["a,b", 'say "hi"', "two\nlines"], "n": [1.5, 2.0, 3.0]})
    rows = list(csv.reader(io.StringIO(encode_csv(table).decode())))
    assert rows == [["note", "n"], ["a,b", "1.5"], ['say "hi"', "2.0"], ["two\nlines", "3.0"]]


def test_a_lone_column_with_empty_values_keeps_every_row():
    table = pa.table({"only": [None, "", "x"]})
    rows = list(csv.reader(io.StringIO(encode_csv(table).decode())))
    assert rows == [["only"], [""], [""], ["x"]]
