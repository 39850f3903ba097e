"""Reads of versioning state that take more than one query or some assembly."""

from __future__ import annotations

import hashlib

from django.db.models import OuterRef, Q, Subquery

from catalog.exceptions import NotFound
from catalog.selectors import organizations_of
from versioning.manifest import canonical_json, manifest_build, manifest_merge
from versioning.models import DatasetVersion, Manifest
from versioning.semver import Version


def manifest_for_user(*, user, slug: str | None = None) -> tuple[str, bytes]:
    """The ETag and canonical JSON of the manifest a user reads: the stored `latest.json`
    of their one organisation (or of `slug`), or one manifest merging all of theirs.

    The ETag is the stored manifest's SHA-256 for one organisation, and a hash of every
    organisation's for several, so it changes exactly when one of them does. Two
    queries: the organisations with their newest manifest's id and checksum, then the
    bodies. Raises NotFound when the user belongs to no such organisation.
    """
    organizations = organizations_of(user)
    if slug is not None:
        organizations = organizations.filter(slug=slug)
    newest = Manifest.objects.filter(organization=OuterRef("pk")).order_by("-generated_at", "-id")
    organizations = list(
        organizations.annotate(
            head_pk=Subquery(newest.values("pk")[:1]),
            head_sha=Subquery(newest.values("sha256")[:1]),
        )
    )
    if not organizations:
        raise NotFound(
            f"You are not a member of the organisation {slug!r}."
            if slug is not None
            else "You are not a member of any organisation."
        )
    heads = {o.pk: (o.head_pk, o.head_sha) for o in organizations if o.head_pk}
    shas = [heads[o.pk][1] if o.pk in heads else f"empty-{o.pk}" for o in organizations]
    if len(organizations) == 1 and organizations[0].pk in heads:
        etag = f'"{shas[0]}"'
    else:
        etag = '"' + hashlib.sha256("\n".join(shas).encode()).hexdigest() + '"'
    stored = Manifest.objects.in_bulk([pk for pk, _ in heads.values()])
    bodies = {
        organization.slug: (
            stored[heads[organization.pk][0]].body
            if organization.pk in heads
            else manifest_build(organization=organization, generated_at=organization.created_at)
        )
        for organization in organizations
    }
    body = next(iter(bodies.values())) if len(bodies) == 1 else manifest_merge(bodies)
    return etag, canonical_json(body)


def version_numbers_taken(*, dataset_id: int, base: Version | None) -> set[str]:
    """The numbers a new version of the dataset must skip (`version_for_change`): those
    of its versions at or above `base`'s major.minor.patch (all of them when there is no
    base). A new number is always above `base` (or `base`'s release, for a prerelease),
    so nothing below can be in its way, and only a rollback leaves numbers above: a
    dataset with a long history costs a publish what a new one does (one index range,
    `datasetversion_by_number`)."""
    versions = DatasetVersion.objects.filter(dataset_id=dataset_id)
    if base is not None:
        major, minor, patch = base.major, base.minor, base.patch
        versions = versions.filter(
            Q(major__gt=major)
            | Q(major=major, minor__gt=minor)
            | Q(major=major, minor=minor, patch__gte=patch)
        )
    return set(versions.values_list("version", flat=True))
