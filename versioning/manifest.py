"""The manifest: the client contract's `latest.json` (seed 001).

    {"generated_at", "version", "total_datasets",
     "datasets": {"<layer>/<name>": {"latest_csv", "date", "row_count", "sha256",
                                     "size_bytes", "content_type", "schema_version",
                                     "last_modified", "description"}},
     "integrity": {"manifest_sha256", "total_size_bytes"}}

`integrity.manifest_sha256` is the SHA-256 of the canonical JSON (keys sorted, no
whitespace, UTF-8) of the manifest with that one field set to "", so any client can
check it with `manifest_checksum()`'s three lines.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, OuterRef, QuerySet, Subquery
from django.utils import timezone

from catalog import events
from catalog.keys import manifest_history_key
from catalog.models import Organization
from versioning.models import DatasetVersion, Manifest

MANIFEST_FORMAT_VERSION = "1.0.0"


def isoformat_z(moment: datetime) -> str:
    """`2024-08-10T02:15:00.000Z`, the timestamp form of the contract."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + (
        f"{moment.microsecond // 1000:03d}Z"
    )


def canonical_json(body: dict) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def manifest_checksum(body: dict) -> str:
    blank = {**body, "integrity": {**body["integrity"], "manifest_sha256": ""}}
    return hashlib.sha256(canonical_json(blank)).hexdigest()


def manifest_build(*, organization: Organization, generated_at: datetime) -> dict:
    versions = (
        DatasetVersion.objects.filter(dataset__organization=organization, is_current=True)
        .select_related("dataset")
        # What the manifest lists, not each version's schema, diff and note: they are
        # most of a row, and every publish lists every dataset of its organisation.
        .only(*_LISTED_FIELDS)
        .order_by("dataset__layer", "dataset__name")
    )
    return manifest_body(versions=versions, generated_at=generated_at)


_LISTED_FIELDS = (
    "key",
    "published_at",
    "row_count",
    "sha256",
    "size_bytes",
    "content_type",
    "version",
    "dataset__layer",
    "dataset__name",
    "dataset__description",
    "dataset__title",
)


def manifest_body(*, versions: Iterable[DatasetVersion], generated_at: datetime) -> dict:
    """The manifest listing `versions` (one per dataset, `dataset` loaded): the same
    format and integrity hash whoever lists them (a region lists its verified copies)."""
    datasets = {
        v.dataset.path: {
            # The leading slash keeps seed 001's form, which clients append to a bucket URL.
            "latest_csv": f"/{v.key}",
            "date": v.published_at.date().isoformat(),
            "row_count": v.row_count,
            "sha256": v.sha256,
            "size_bytes": v.size_bytes,
            "content_type": v.content_type,
            "schema_version": v.version,
            "last_modified": isoformat_z(v.published_at),
            "description": v.dataset.description or v.dataset.title,
        }
        for v in versions
    }
    body = {
        "generated_at": isoformat_z(generated_at),
        "version": MANIFEST_FORMAT_VERSION,
        "total_datasets": len(datasets),
        "datasets": datasets,
        "integrity": {
            "manifest_sha256": "",
            "total_size_bytes": sum(d["size_bytes"] for d in datasets.values()),
        },
    }
    body["integrity"]["manifest_sha256"] = manifest_checksum(body)
    return body


def manifest_merge(bodies: dict[str, dict]) -> dict:
    """One manifest of the same shape listing several organisations' (keyed by slug): a
    `<layer>/<name>` found in two is keyed `<org>/<layer>/<name>`, with its own checksum."""
    counts: dict[str, int] = {}
    for body in bodies.values():
        for path in body["datasets"]:
            counts[path] = counts.get(path, 0) + 1
    datasets = {}
    for slug, body in sorted(bodies.items()):
        for path, entry in body["datasets"].items():
            datasets[path if counts[path] == 1 else f"{slug}/{path}"] = entry
    merged = {
        "generated_at": max(body["generated_at"] for body in bodies.values()),
        "version": next(iter(bodies.values()))["version"],
        "total_datasets": len(datasets),
        "datasets": dict(sorted(datasets.items())),
        "integrity": {
            "manifest_sha256": "",
            "total_size_bytes": sum(entry["size_bytes"] for entry in datasets.values()),
        },
    }
    merged["integrity"]["manifest_sha256"] = manifest_checksum(merged)
    return merged


def manifest_generate(*, organization: Organization) -> Manifest:
    """Builds and stores the organisation's manifest from its current versions.

    Call it inside the transaction that changed a current version: the row and the
    `manifest.generated` event commit with that change, and a handler writes the file to
    storage after commit.

    The organisation's row is locked first, until the transaction ends: two publishes to
    two of its datasets (each under its own dataset's lock) would otherwise each build a
    manifest without the other's uncommitted version, and the newer of the two would
    miss a version that is committed, until some later publish. Under the lock each
    manifest is built, stamped and numbered after every earlier one committed.
    """
    list(Organization.objects.select_for_update().filter(pk=organization.pk).values_list("pk"))
    generated_at = timezone.now()
    body = manifest_build(organization=organization, generated_at=generated_at)
    sha = body["integrity"]["manifest_sha256"]
    manifest = Manifest.objects.create(
        organization=organization,
        body=body,
        sha256=sha,
        generated_at=generated_at,
        key=manifest_history_key(org=organization.slug, generated_at=generated_at, sha256=sha),
    )
    events.event_record(
        topic="manifest.generated",
        payload={"manifest_id": manifest.pk, "organization": organization.slug, "sha256": sha},
        organization=organization,
    )
    return manifest


def manifests_newest_first(*, organization_id: int) -> QuerySet[Manifest]:
    """An organisation's manifests, the latest first."""
    return Manifest.objects.filter(organization_id=organization_id).order_by("-generated_at", "-id")


def manifest_latest(*, organization: Organization) -> Manifest | None:
    return manifests_newest_first(organization_id=organization.pk).first()


def manifests_prune(*, older_than: timedelta | None = None, batch: int = 1000) -> int:
    """Deletes manifest rows superseded more than MANIFEST_RETENTION_DAYS (or
    `older_than`) ago; returns how many. Each organisation's latest manifest stays, and
    so does any not yet written to storage: every manifest's immutable copy stays in the
    bucket under `manifests/history/` (a rollback's backup is named by that key)."""
    age = older_than if older_than is not None else timedelta(days=settings.MANIFEST_RETENTION_DAYS)
    cutoff = timezone.now() - age
    latest = Manifest.objects.filter(organization=OuterRef("organization")).order_by(
        "-generated_at", "-id"
    )
    prunable = (
        Manifest.objects.filter(generated_at__lt=cutoff, written_at__isnull=False)
        .annotate(latest_id=Subquery(latest.values("id")[:1]))
        .exclude(id=F("latest_id"))
    )
    pruned = 0
    while ids := list(prunable.order_by("id").values_list("id", flat=True)[:batch]):
        with transaction.atomic():
            pruned += Manifest.objects.filter(id__in=ids).delete()[0]
    return pruned
