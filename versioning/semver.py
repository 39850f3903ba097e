"""Semantic versions (semver.org 2.0.0) as the publish pipeline uses them.

Ordering is the spec's, pre-releases included (`1.0.0-alpha < 1.0.0-alpha.1 <
1.0.0-beta.2 < 1.0.0-beta.11 < 1.0.0-rc.1 < 1.0.0`), as the `semver` package implements it.

What a version number claims about a change (`version_claim`), and which version a change
calls for (`version_next`), follow two rules beyond the spec's text:

* Below 1.0.0 every position moves one place to the right, as Cargo and npm read it:
  `0.3.0 -> 0.4.0` is the breaking step and `0.3.0 -> 0.3.1` may add columns.
* A pre-release promised no compatibility (spec item 9), so anything may change between
  it and a later version with the same MAJOR.MINOR.PATCH (`2.0.0-rc.1 -> 2.0.0`), and the
  next version after a current pre-release is its release.
"""

from __future__ import annotations

import semver

from catalog.exceptions import InvalidInput

Version = semver.Version

MAX_LENGTH = 64  # DatasetVersion.version's column
_RANK = {"patch": 1, "minor": 2, "major": 3}


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
            f"{text!r} is not a semantic version: use MAJOR.MINOR.PATCH, e.g. 1.4.0, or a "
            "pre-release such as 1.4.0-rc.1."
        ) from None
    if version.build:
        raise InvalidInput(f"{text!r}: build metadata (+...) is not allowed in a version.")
    if len(str(version)) > MAX_LENGTH:
        raise InvalidInput(f"A version is at most {MAX_LENGTH} characters long.")
    return version


def next_minor(current: Version | None) -> Version:
    if current is None:
        return Version(1, 0, 0)
    return current.bump_minor()


def change_rank(change: str) -> int:
    """major 3, minor 2, patch 1; anything else (initial, "") 0."""
    return _RANK.get(change, 0)


def version_claim(base: Version, candidate: Version) -> str:
    """The change `candidate` announces over `base`: "major", "minor" or "patch".

    `candidate` is above `base`. A step that only leaves a pre-release (or moves between
    pre-releases of one release) claims "major": nothing was promised.
    """
    if base.prerelease and base.finalize_version() == candidate.finalize_version():
        return "major"
    if base.major == 0 and candidate.major == 0:
        if candidate.minor > base.minor:
            return "major"
        return "minor"
    if candidate.major > base.major:
        return "major"
    if candidate.minor > base.minor:
        return "minor"
    return "patch"


def version_next(base: Version | None, change: str) -> Version:
    """The lowest release after `base` whose number claims `change` (major/minor/patch)."""
    if base is None:
        return Version(1, 0, 0)
    if base.prerelease:
        return base.finalize_version()
    if base.major == 0:
        change = {"major": "minor", "minor": "patch"}.get(change, change)
    if change == "major":
        return base.bump_major()
    if change == "minor":
        return base.bump_minor()
    return base.bump_patch()


def version_fields(version: Version) -> dict:
    return {
        "version": str(version),
        "major": version.major,
        "minor": version.minor,
        "patch": version.patch,
        "prerelease": version.prerelease or "",
    }
