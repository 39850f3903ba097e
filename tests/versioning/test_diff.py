"""Schema diff, the type lattice, and what version numbers claim (no database)."""

from __future__ import annotations

import pytest

from catalog.exceptions import InvalidInput
from versioning.semver import parse_version, version_claim, version_next
from versioning.services.diff import COLUMN_TYPES, schema_diff, type_change_is_breaking


def col(name, type_="string", nulls=0):
    return {"name": name, "type": type_, "nulls": nulls}


OLD = [col("day", "date"), col("store"), col("revenue", "float"), col("units", "integer")]


def diff(new, **kwargs):
    return schema_diff(old=OLD, new=new, base_version="1.0.0", **kwargs)


def test_a_removed_column_is_breaking_and_named():
    d = diff([col("day", "date"), col("revenue", "float"), col("units", "integer")])
    assert d.change_type == "major"
    assert d.breaking_columns == ["store"]
    assert d.as_dict()["removed"] == [{"name": "store", "type": "string"}]


def test_an_added_column_is_minor():
    d = diff([*OLD, col("region")])
    assert (d.change_type, d.breaking) == ("minor", False)
    assert d.added == [{"name": "region", "type": "string"}]


def test_the_same_schema_with_other_data_is_a_patch_with_its_deltas():
    d = diff(OLD, old_rows=10, new_rows=14, old_size=100, new_size=90)
    assert d.change_type == "patch"
    assert (d.row_delta, d.size_delta) == (4, -10)


def test_a_column_that_gains_nulls_where_it_had_none_is_breaking():
    d = diff([col("day", "date"), col("store", nulls=2), OLD[2], OLD[3]])
    assert d.change_type == "major"
    assert d.breaking_columns == ["store"]


def test_a_column_that_loses_its_nulls_is_only_data():
    old = [col("a", "integer", nulls=3)]
    assert schema_diff(old=old, new=[col("a", "integer")], base_version="1.0.0").change_type == (
        "patch"
    )


@pytest.mark.parametrize(
    "old, new",
    [("integer", "float"), ("date", "timestamp")],
)
def test_widening_up_a_chain_is_minor(old, new):
    d = schema_diff(old=[col("a", old)], new=[col("a", new)], base_version="1.0.0")
    assert (d.change_type, d.breaking) == ("minor", False)
    assert d.retyped[0].breaking is False


@pytest.mark.parametrize(
    "old, new",
    [
        ("float", "integer"),
        ("timestamp", "date"),
        ("string", "integer"),
        ("integer", "string"),
        ("date", "string"),
        ("boolean", "integer"),
        ("integer", "boolean"),
        ("integer", "timestamp"),
    ],
)
def test_narrowing_or_changing_kind_is_breaking(old, new):
    d = schema_diff(old=[col("a", old)], new=[col("a", new)], base_version="1.0.0")
    assert d.change_type == "major"
    assert d.breaking_columns == ["a"]


def test_the_lattice_has_exactly_two_widenings():
    widenings = {
        (a, b)
        for a in COLUMN_TYPES
        for b in COLUMN_TYPES
        if a != b and not type_change_is_breaking(a, b)
    }
    assert widenings == {("integer", "float"), ("date", "timestamp")}


def test_a_column_without_any_value_has_no_type_to_compare():
    old = [col("a", "integer"), col("b", "integer")]
    new = [col("a", "string", nulls=5), col("b", "integer")]
    d = schema_diff(old=old, new=new, old_rows=5, new_rows=5, base_version="1.0.0")
    assert d.retyped == []
    assert d.breaking_columns == ["a"]  # it gained nulls, which is what matters


def test_reordered_columns_are_minor():
    d = diff([OLD[1], OLD[0], OLD[2], OLD[3]])
    assert (d.change_type, d.reordered) == ("minor", True)


def test_without_an_older_version_the_change_is_initial():
    assert schema_diff(old=None, new=OLD).change_type == "initial"


def test_two_two_thousand_column_schemas_diff_in_one_pass():
    old = [col(f"c{i}", "integer") for i in range(2000)]
    new = [col(f"c{i}", "float" if i % 2 else "integer") for i in range(1, 2001)]
    d = schema_diff(old=old, new=new, base_version="1.0.0")
    assert d.breaking_columns == ["c0"]
    assert len(d.retyped) == 1000 and d.added == [{"name": "c2000", "type": "integer"}]


# --- Version numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    "base, candidate, claim",
    [
        ("1.2.3", "2.0.0", "major"),
        ("1.2.3", "1.3.0", "minor"),
        ("1.2.3", "1.2.4", "patch"),
        ("1.2.3", "1.3.0-rc.1", "minor"),
        ("1.2.3", "2.0.0-rc.1", "major"),
        # Leaving a pre-release promised nothing.
        ("2.0.0-rc.1", "2.0.0", "major"),
        ("2.0.0-rc.1", "2.0.0-rc.2", "major"),
        # Below 1.0.0 every position moves one place to the right.
        ("0.3.1", "0.4.0", "major"),
        ("0.3.1", "0.3.2", "minor"),
        ("0.3.1", "1.0.0", "major"),
    ],
)
def test_what_a_version_number_claims(base, candidate, claim):
    assert version_claim(parse_version(base), parse_version(candidate)) == claim


@pytest.mark.parametrize(
    "base, change, expected",
    [
        (None, "minor", "1.0.0"),
        ("1.2.3", "major", "2.0.0"),
        ("1.2.3", "minor", "1.3.0"),
        ("1.2.3", "patch", "1.2.4"),
        ("0.3.1", "major", "0.4.0"),
        ("0.3.1", "minor", "0.3.2"),
        ("2.0.0-rc.1", "major", "2.0.0"),
        ("2.0.0-rc.1", "patch", "2.0.0"),
    ],
)
def test_the_next_version_a_change_calls_for(base, change, expected):
    assert str(version_next(parse_version(base) if base else None, change)) == expected


def test_pre_releases_follow_the_semver_ordering():
    ordered = [
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0-alpha.beta",
        "1.0.0-beta",
        "1.0.0-beta.2",
        "1.0.0-beta.11",
        "1.0.0-rc.1",
        "1.0.0",
    ]
    versions = [parse_version(v) for v in ordered]
    assert sorted(reversed(versions)) == versions
    # Numeric identifiers compare as numbers, alphanumeric ones in ASCII order, and
    # numeric ones sort before alphanumeric ones.
    assert parse_version("1.0.0-rc.2") < parse_version("1.0.0-rc.10")
    assert parse_version("1.0.0-1") < parse_version("1.0.0-alpha")
    assert parse_version("1.0.0-Beta") < parse_version("1.0.0-alpha")


@pytest.mark.parametrize(
    "text",
    ["1.0.0-rc.01", "1.0.0-rc..1", "1.0.0-", "1.0.0-rc_1", "1.0.0+build.7", "1.0.0-" + "a" * 64],
)
def test_malformed_pre_releases_are_refused(text):
    with pytest.raises(InvalidInput):
        parse_version(text)
