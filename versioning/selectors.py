"""Reads of versioning state that take more than one query or some assembly."""

from __future__ import annotations

import hashlib

from django.db.models import OuterRef, Subquery

from catalog.exceptions import NotFound
from catalog.selectors import organizations_of
from versioning.manifest import canonical_json, manifest_build, manifest_merge
from versioning.models import Manifest


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
