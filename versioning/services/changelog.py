"""The changelog of each version, and the reads behind the "changes" and "diff" views.

A version's changelog is written in the transaction that publishes it (or promotes it
onto another base): one entry per change the schema diff found, one for the data, the
override of the compatibility check if the publisher used one, and the publisher's note.
"""

from __future__ import annotations

from catalog.exceptions import InvalidInput, NotFound
from catalog.models import Dataset
from versioning.models import ChangeKind, ChangelogEntry, DatasetVersion
from versioning.services.diff import SchemaDiff, schema_diff


def _signed(n: int) -> str:
    return f"{n:+,}"


def changelog_entries(
    *, diff: SchemaDiff, note: str = "", override: str = "", columns: int = 0, rows: int = 0
) -> list[ChangelogEntry]:
    """The entries (unsaved, without their version) that describe `diff`."""
    entries: list[ChangelogEntry] = []

    def add(kind: str, text: str, **fields) -> None:
        entries.append(ChangelogEntry(position=len(entries), kind=kind, text=text, **fields))

    if diff.base_version is None:
        add(ChangeKind.INITIAL, f"First version: {columns:,} columns, {rows:,} rows.")
    for column in diff.removed:
        add(
            ChangeKind.COLUMN_REMOVED,
            f"Removed column `{column['name']}` ({column['type']}).",
            column=column["name"],
            old_type=column["type"],
            breaking=True,
        )
    for change in diff.retyped:
        how = "changed its type" if change.breaking else "was widened"
        add(
            ChangeKind.COLUMN_RETYPED,
            f"Column `{change.name}` {how}: {change.old_type} -> {change.new_type}.",
            column=change.name,
            old_type=change.old_type,
            new_type=change.new_type,
            breaking=change.breaking,
        )
    for change in diff.nulls_appeared:
        add(
            ChangeKind.NULLS_APPEARED,
            f"Column `{change.name}` now has empty values ({change.nulls:,}); it had none.",
            column=change.name,
            breaking=True,
        )
    for column in diff.added:
        add(
            ChangeKind.COLUMN_ADDED,
            f"Added column `{column['name']}` ({column['type']}).",
            column=column["name"],
            new_type=column["type"],
        )
    if diff.reordered:
        add(ChangeKind.COLUMNS_REORDERED, "The columns are in a different order.")
    if diff.base_version is not None:
        parts = []
        # A change that only dropped a column says nothing of rows, not "+0 rows".
        if diff.row_delta:
            parts.append(f"{_signed(diff.row_delta)} rows")
        if diff.size_delta:
            parts.append(f"{_signed(diff.size_delta)} bytes")
        add(
            ChangeKind.DATA_CHANGED,
            f"New data since {diff.base_version}" + (f": {', '.join(parts)}." if parts else "."),
        )
    if override:
        add(ChangeKind.BREAKING_ALLOWED, override, breaking=True)
    if note.strip():
        add(ChangeKind.NOTE, note.strip())
    return entries


def changelog_write(
    *, version: DatasetVersion, diff: SchemaDiff, note: str = "", override: str = ""
) -> list[ChangelogEntry]:
    """Replaces the version's changelog with the entries for `diff`; call it inside the
    transaction that records the version (or rebases it)."""
    entries = changelog_entries(
        diff=diff,
        note=note,
        override=override,
        columns=len(version.schema),
        rows=version.row_count,
    )
    for entry in entries:
        entry.version = version
    ChangelogEntry.objects.filter(version=version).delete()
    return ChangelogEntry.objects.bulk_create(entries)


def breaking_override_text(*, claim: str, columns: list[str], who: str) -> str:
    return (
        f"Published as a {claim} release although the change breaks "
        f"{', '.join(f'`{c}`' for c in columns)}: {who or 'the publisher'} overrode the "
        "compatibility check."
    )


# --- Reads ----------------------------------------------------------------------------


def version_get(*, dataset: Dataset, version: str) -> DatasetVersion:
    """The version `version` (e.g. "1.2.0", "v1.2.0") of `dataset`; NotFound otherwise."""
    wanted = (version or "").strip()
    if wanted[:1] in ("v", "V"):
        wanted = wanted[1:]
    found = (
        DatasetVersion.objects.select_related("dataset__organization", "parent", "published_by")
        .filter(dataset=dataset, version=wanted)
        .first()
    )
    if found is None:
        raise NotFound(f"{dataset.path} has no version {version!r}.")
    return found


def version_changes(*, version: DatasetVersion) -> dict:
    """What `GET .../versions/<v>/changes/` answers: the version's classification, its
    changelog entries in order, and the structured diff against its parent."""
    entries = list(version.changes.order_by("position"))
    return {
        "dataset": version.dataset.path,
        "version": version.version,
        "parent": version.parent.version if version.parent_id else None,
        "status": version.status,
        "change_type": version.change_type,
        "breaking": version.breaking,
        "published_at": version.published_at,
        "published_by": version.published_by.get_username() if version.published_by else None,
        "note": version.note,
        "entries": [
            {
                "kind": e.kind,
                "column": e.column or None,
                "old_type": e.old_type or None,
                "new_type": e.new_type or None,
                "breaking": e.breaking,
                "text": e.text,
            }
            for e in entries
        ],
        "diff": version.diff,
    }


def versions_diff(*, dataset: Dataset, from_version: str, to_version: str) -> SchemaDiff:
    """The diff between any two versions of a dataset, as `GET .../diff/?from=&to=`
    answers it (`.as_dict()`), and as the admin shows it side by side. Both versions
    must exist; they may come in either order."""
    if not from_version or not to_version:
        raise InvalidInput("Name both versions: from and to.")
    old = version_get(dataset=dataset, version=from_version)
    new = version_get(dataset=dataset, version=to_version)
    return schema_diff(
        old=old.schema,
        new=new.schema,
        old_rows=old.row_count,
        new_rows=new.row_count,
        old_size=old.size_bytes,
        new_size=new.size_bytes,
        base_version=old.version,
        target_version=new.version,
    )
