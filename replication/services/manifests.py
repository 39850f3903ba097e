"""Region manifests: each region's own `<org>/v1/manifests/latest.json`.

The same format and integrity hash as the primary's (`versioning.manifest`), listing per
dataset the version the region can serve: the current version when it is verified there,
else the newest version verified there. It changes only when a copy verifies (or a
replica stops being verified), so a client reading a region's manifest never gets a key
that region does not hold. The row is written in the transaction that verified the
copy; the file is written after commit, and the tick writes any a crash left unwritten.
"""

from __future__ import annotations

import io

from django.utils import timezone

from catalog.keys import manifest_latest_key
from catalog.models import Organization
from replication.engine import region_store
from replication.models import Region, RegionManifest, Replica, ReplicaStatus
from versioning.manifest import canonical_json, manifest_body
from versioning.models import DatasetVersion, VersionStatus


def region_versions(*, region: Region, organization: Organization) -> list[DatasetVersion]:
    """Per dataset, the version this region's manifest lists."""
    replicas = (
        Replica.objects.filter(
            region=region,
            status=ReplicaStatus.VERIFIED,
            version__dataset__organization=organization,
        )
        .exclude(version__status__in=[VersionStatus.DRAFT, VersionStatus.ARCHIVED])
        .select_related("version__dataset")
    )
    chosen: dict[int, DatasetVersion] = {}
    for replica in replicas:
        version = replica.version
        held = chosen.get(version.dataset_id)
        if (
            held is None
            or (version.is_current and not held.is_current)
            or (held.is_current == version.is_current and version.published_at > held.published_at)
        ):
            chosen[version.dataset_id] = version
    return sorted(chosen.values(), key=lambda v: (v.dataset.layer, v.dataset.name))


def region_manifest_latest(*, region: Region, organization: Organization) -> RegionManifest | None:
    return (
        RegionManifest.objects.filter(region=region, organization=organization)
        .order_by("-generated_at", "-id")
        .first()
    )


def region_manifest_generate(*, region: Region, organization: Organization) -> RegionManifest:
    """A new manifest row for the region when what it lists changed; else the latest."""
    now = timezone.now()
    body = manifest_body(
        versions=region_versions(region=region, organization=organization), generated_at=now
    )
    latest = region_manifest_latest(region=region, organization=organization)
    if latest is not None and latest.body["datasets"] == body["datasets"]:
        return latest
    return RegionManifest.objects.create(
        region=region,
        organization=organization,
        body=body,
        sha256=body["integrity"]["manifest_sha256"],
        generated_at=now,
    )


def region_manifest_write(*, manifest_id: int) -> bool:
    """Writes the region's `latest.json` if this row is still the newest; idempotent."""
    manifest = (
        RegionManifest.objects.select_related("region", "organization")
        .filter(pk=manifest_id)
        .first()
    )
    if manifest is None:
        return False
    latest = region_manifest_latest(region=manifest.region, organization=manifest.organization)
    if latest is not None and latest.pk == manifest.pk:
        region_store(manifest.region).write(
            manifest_latest_key(org=manifest.organization.slug),
            io.BytesIO(canonical_json(manifest.body)),
            content_type="application/json",
        )
    RegionManifest.objects.filter(pk=manifest.pk, written_at__isnull=True).update(
        written_at=timezone.now()
    )
    return True


def region_manifests_unwritten() -> list[int]:
    return list(
        RegionManifest.objects.filter(written_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)[:100]
    )
