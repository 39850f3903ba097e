"""Semantic versions (semver.org 2.0.0) as the publish pipeline uses them."""

from __future__ import annotations

import semver

from catalog.exceptions import InvalidInput

Version = semver.Version


def parse_version(text: str) -> Version:
    """Parses `1.2.3` or `1.2.3-rc.1`; build metadata (`+...`) is refused because it does
    not order versions and would let two numbers name one release."""
    cleaned = (text or "").strip()
    if cleaned.startswith(("v", "V")):
        cleaned = cleaned[1:]
    try:
        version = Version.parse(cleaned)
    except (ValueError, TypeError):
        raise InvalidInput(
            f"{text!r} is not a semantic version: use MAJOR.MINOR.PATCH, e.g. 1.4.0."
        ) from None
    if version.build:
        raise InvalidInput(f"{text!r}: build metadata (+...) is not allowed in a version.")
    return version


def next_minor(current: Version | None) -> Version:
    if current is None:
        return Version(1, 0, 0)
    return current.bump_minor()


def version_fields(version: Version) -> dict:
    return {
        "version": str(version),
        "major": version.major,
        "minor": version.minor,
        "patch": version.patch,
        "prerelease": version.prerelease or "",
    }
