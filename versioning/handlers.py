"""Reactions of the versioning app to its own events."""

from __future__ import annotations

import contextlib
import io

from django.utils import timezone

from catalog.exceptions import Conflict
from catalog.keys import manifest_latest_key
from catalog.models import DomainEvent
from catalog.storage import get_object_store
from versioning.manifest import canonical_json, manifests_newest_first
from versioning.models import Manifest


def write_manifest_to_storage(event: DomainEvent) -> None:
    """Writes the manifest's immutable history copy and, if it is still the newest,
    `latest.json`. Idempotent: a redelivery finds its history copy written and writes
    `latest.json` again only if it is still the newest.

    A manifest already superseded leaves `latest.json` to the newest one's own event
    (delivered at least once, like this one): when publishes come fast, only the last
    of a burst is uploaded twice."""
    manifest = (
        Manifest.objects.select_related("organization")
        .filter(pk=event.payload["manifest_id"])
        .first()
    )
    if manifest is None:
        return
    store = get_object_store()
    # One request, not an existence check and a write: storage refuses a second copy.
    with contextlib.suppress(Conflict):
        store.write(
            manifest.key,
            io.BytesIO(canonical_json(manifest.body)),
            content_type="application/json",
            if_absent=True,
        )
    # Two handlers may race; whoever writes last checks again that it wrote the newest.
    # Which one is newest is asked by id: a body is read only to be written (a large
    # organisation's manifest is a large JSON document, and most are superseded).
    newest = manifests_newest_first(organization_id=manifest.organization_id)
    latest_id = newest.values_list("pk", flat=True).first()
    written = None if latest_id == manifest.pk else latest_id
    while latest_id != written:
        body = (
            manifest.body
            if latest_id == manifest.pk
            else Manifest.objects.filter(pk=latest_id).values_list("body", flat=True).first()
        )
        if body is None:  # pruned meanwhile: a newer one exists
            break
        store.write(
            manifest_latest_key(org=manifest.organization.slug),
            io.BytesIO(canonical_json(body)),
            content_type="application/json",
        )
        written = latest_id
        latest_id = newest.values_list("pk", flat=True).first()
    Manifest.objects.filter(pk=manifest.pk, written_at__isnull=True).update(
        written_at=timezone.now()
    )


def openlineage_wanted(payload: dict) -> bool:
    """Whether a published version is sent to OpenLineage at all (it is configured)."""
    from versioning.services.lineage import openlineage_enabled

    return openlineage_enabled()


def emit_openlineage(event: DomainEvent) -> None:
    """Sends the OpenLineage run event of a published version (when OPENLINEAGE_URL or
    OPENLINEAGE_FILE is set). The publish has committed already, so a failure here never
    undoes it: it raises, and the outbox tries again with backoff."""
    from versioning.models import DatasetVersion
    from versioning.services.lineage import openlineage_emit, openlineage_enabled

    if not openlineage_enabled():
        return
    version = (
        DatasetVersion.objects.select_related("dataset__organization")
        .filter(pk=event.payload.get("version_id"))
        .first()
    )
    if version is None:
        return
    openlineage_emit(version=version)
