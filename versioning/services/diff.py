"""Schema diff and change classification: what changed between two versions of a dataset,
and what that means for the consumers of the older one.

A schema is what inspection reads from a file (`catalog.inspection`): a list of
`{"name", "type", "nulls"}`, types integer, float, boolean, date, timestamp, string.
Columns are matched by name; their position is not part of the contract.

The type lattice. Two chains, and two types that stand alone:

    integer -> float        date -> timestamp        boolean        string

Moving up a chain widens a column: every value it held before still fits, so it is a
minor change. Every other change of type is breaking: down a chain (float -> integer,
timestamp -> date), across kinds (string -> integer, date -> string, boolean -> integer),
and that includes a move to string, because consumer code that computes with the values
stops working. A column without a single value has no type of its own (inspection calls
it string for want of anything better), so its type is not compared; its nulls are.

Classification:

    breaking (major)  a column removed, retyped other than by widening, or holding nulls
                      where the older version had none
    minor             a column added or widened, or the columns reordered
    patch             the same schema, other data
    initial           nothing to compare with

The row and size deltas ride along for the changelog and the admin; they never change the
classification.
"""

from __future__ import annotations

from dataclasses import dataclass, field

COLUMN_TYPES = ("integer", "float", "boolean", "date", "timestamp", "string")

# For each type, the types it may widen to without breaking a consumer.
WIDENINGS: dict[str, frozenset[str]] = {
    "integer": frozenset({"float"}),
    "float": frozenset(),
    "boolean": frozenset(),
    "date": frozenset({"timestamp"}),
    "timestamp": frozenset(),
    "string": frozenset(),
}

MAJOR, MINOR, PATCH, INITIAL = "major", "minor", "patch", "initial"


def type_change_is_breaking(old: str, new: str) -> bool:
    return old != new and new not in WIDENINGS.get(old, frozenset())


@dataclass(frozen=True)
class Retyped:
    name: str
    old_type: str
    new_type: str
    breaking: bool


@dataclass(frozen=True)
class NullsAppeared:
    name: str
    nulls: int


@dataclass(frozen=True)
class SchemaDiff:
    """What changed from `base` to `target`; `as_dict()` is what versions store."""

    base_version: str | None
    target_version: str | None
    added: list[dict] = field(default_factory=list)  # {"name", "type"}
    removed: list[dict] = field(default_factory=list)  # {"name", "type"}
    retyped: list[Retyped] = field(default_factory=list)
    nulls_appeared: list[NullsAppeared] = field(default_factory=list)
    reordered: bool = False
    row_delta: int | None = None
    size_delta: int | None = None

    @property
    def breaking_columns(self) -> list[str]:
        """The columns that make this change breaking, in the target's column order
        (removed ones last), each named once."""
        names = [r["name"] for r in self.removed]
        names += [r.name for r in self.retyped if r.breaking]
        names += [n.name for n in self.nulls_appeared]
        seen: set[str] = set()
        return [n for n in names if not (n in seen or seen.add(n))]

    @property
    def breaking(self) -> bool:
        return bool(self.breaking_columns)

    @property
    def schema_changed(self) -> bool:
        return bool(self.added or self.removed or self.retyped or self.reordered)

    @property
    def change_type(self) -> str:
        if self.base_version is None:
            return INITIAL
        if self.breaking:
            return MAJOR
        if self.schema_changed:
            return MINOR
        return PATCH

    def as_dict(self) -> dict:
        # Built by hand: dataclasses.asdict deep-copies, which costs more than the diff.
        return {
            "base_version": self.base_version,
            "target_version": self.target_version,
            "added": [dict(a) for a in self.added],
            "removed": [dict(r) for r in self.removed],
            "retyped": [
                {
                    "name": r.name,
                    "old_type": r.old_type,
                    "new_type": r.new_type,
                    "breaking": r.breaking,
                }
                for r in self.retyped
            ],
            "nulls_appeared": [{"name": n.name, "nulls": n.nulls} for n in self.nulls_appeared],
            "reordered": self.reordered,
            "row_delta": self.row_delta,
            "size_delta": self.size_delta,
            "change_type": self.change_type,
            "breaking": self.breaking,
            "breaking_columns": self.breaking_columns,
        }

    def summary(self) -> str:
        """One line for a steward: `2 columns removed (a, b); 1 added (c)`."""
        parts = []
        if self.removed:
            parts.append(_names("removed", [r["name"] for r in self.removed]))
        if self.retyped:
            parts.append(
                "retyped "
                + ", ".join(f"{r.name} ({r.old_type} -> {r.new_type})" for r in self.retyped)
            )
        if self.nulls_appeared:
            parts.append(_names("now with nulls", [n.name for n in self.nulls_appeared]))
        if self.added:
            parts.append(_names("added", [a["name"] for a in self.added]))
        if self.reordered:
            parts.append("columns reordered")
        return "; ".join(parts) or "same schema"


def _names(what: str, names: list[str]) -> str:
    shown = ", ".join(names[:10]) + (f" and {len(names) - 10} more" if len(names) > 10 else "")
    return f"{what} {shown}"


def schema_diff(
    *,
    old: list[dict] | None,
    new: list[dict],
    old_rows: int | None = None,
    new_rows: int | None = None,
    old_size: int | None = None,
    new_size: int | None = None,
    base_version: str | None = None,
    target_version: str | None = None,
) -> SchemaDiff:
    """Compares two schemas column by column (by name). `old` None means there is no
    older version: the diff is the initial one. Linear in the number of columns."""
    if old is None:
        return SchemaDiff(base_version=None, target_version=target_version)
    old_by_name = {c["name"]: c for c in old}
    new_by_name = {c["name"]: c for c in new}
    added = [{"name": c["name"], "type": c["type"]} for c in new if c["name"] not in old_by_name]
    removed = [{"name": c["name"], "type": c["type"]} for c in old if c["name"] not in new_by_name]
    retyped: list[Retyped] = []
    nulls_appeared: list[NullsAppeared] = []
    for column in new:
        before = old_by_name.get(column["name"])
        if before is None:
            continue
        if (
            before["type"] != column["type"]
            and _has_values(before, old_rows)
            and _has_values(column, new_rows)
        ):
            retyped.append(
                Retyped(
                    name=column["name"],
                    old_type=before["type"],
                    new_type=column["type"],
                    breaking=type_change_is_breaking(before["type"], column["type"]),
                )
            )
        if before.get("nulls", 0) == 0 and column.get("nulls", 0) > 0:
            nulls_appeared.append(NullsAppeared(name=column["name"], nulls=column["nulls"]))
    kept_old = [c["name"] for c in old if c["name"] in new_by_name]
    kept_new = [c["name"] for c in new if c["name"] in old_by_name]
    return SchemaDiff(
        base_version=base_version,
        target_version=target_version,
        added=added,
        removed=removed,
        retyped=retyped,
        nulls_appeared=nulls_appeared,
        reordered=kept_old != kept_new,
        row_delta=None if old_rows is None or new_rows is None else new_rows - old_rows,
        size_delta=None if old_size is None or new_size is None else new_size - old_size,
    )


def _has_values(column: dict, rows: int | None) -> bool:
    return rows is None or column.get("nulls", 0) < rows
