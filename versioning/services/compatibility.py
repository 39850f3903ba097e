"""Versions follow the diff: the dataset's compatibility mode (the schema registry's
setting, `catalog.Dataset.compatibility`) decides what a version number must claim.

    major   (default) a breaking change needs a major bump, unless the publisher passes
            `allow_breaking` (the changelog records that); a schema change needs at least
            a minor one
    strict  breaking changes are refused, whatever the version or override
    none    no checks; the change type and breaking flag are still recorded

A change is judged against the current version, the one consumers read now.
"""

from __future__ import annotations

from collections.abc import Collection

from catalog.exceptions import InvalidInput
from catalog.models import Compatibility
from versioning.semver import Version, change_rank, version_claim, version_next
from versioning.services.diff import INITIAL, MINOR, SchemaDiff


def _columns(diff: SchemaDiff) -> str:
    return ", ".join(diff.breaking_columns)


def _details(diff: SchemaDiff) -> dict:
    return {
        "change_type": diff.change_type,
        "breaking_columns": diff.breaking_columns,
        "diff": diff.as_dict(),
    }


def _refuse_strict(dataset_path: str, diff: SchemaDiff) -> None:
    raise InvalidInput(
        f"{dataset_path} accepts no breaking change (compatibility: strict), and this "
        f"file breaks the columns {_columns(diff)} ({diff.summary()}).",
        details=_details(diff),
    )


def compatibility_check(
    *,
    dataset_path: str,
    mode: str,
    diff: SchemaDiff,
    base: Version | None,
    candidate: Version,
    allow_breaking: bool = False,
) -> str | None:
    """Raises InvalidInput when `candidate` claims less than `diff` needs over `base`.

    Returns the claim ("minor", "patch") when a breaking change passes only because of
    `allow_breaking`, so the caller can record the override; None otherwise.
    """
    if base is None or mode == Compatibility.NONE:
        return None
    details = _details(diff)
    if diff.breaking and mode == Compatibility.STRICT:
        _refuse_strict(dataset_path, diff)
    claim = version_claim(base, candidate)
    if diff.breaking:
        if claim == "major":
            return None
        if allow_breaking:
            return claim
        raise InvalidInput(
            f"Version {candidate} claims a {claim} change over {base}, but the change is "
            f"breaking for the columns {_columns(diff)} ({diff.summary()}). Publish it as "
            f"{version_next(base, 'major')} or higher, or allow the breaking change "
            "explicitly.",
            details=details,
        )
    needed = diff.change_type
    if change_rank(claim) < change_rank(needed):
        raise InvalidInput(
            f"Version {candidate} claims a {claim} change over {base}, but the schema "
            f"changed ({diff.summary()}): publish it as {version_next(base, needed)} or "
            "higher.",
            details=details,
        )
    return None


def version_for_change(
    *, dataset_path: str, mode: str, diff: SchemaDiff, base: Version | None, taken: Collection[str]
) -> Version:
    """The next version the diff calls for over `base`, skipping numbers already taken
    (after a rollback, higher numbers may exist)."""
    if diff.breaking and base is not None and mode == Compatibility.STRICT:
        _refuse_strict(dataset_path, diff)
    change = MINOR if diff.change_type == INITIAL else diff.change_type
    version = version_next(base, change)
    while str(version) in taken:
        version = version_next(version, change)
    return version
