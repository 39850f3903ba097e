"""Where a download is signed, and which local folders the embedded download view may
serve (registered in `catalog.hooks` by apps.py)."""

from __future__ import annotations

from catalog.exceptions import InvalidInput
from catalog.hooks import Location
from catalog.models import Visibility
from catalog.storage import LocalObjectStore, get_object_store
from replication.engine import region_store
from replication.models import Region, Replica, ReplicaStatus


def _cdn_url(region: Region, version) -> str:
    if region.cdn_base_url and version.dataset.visibility == Visibility.PUBLIC:
        return f"{region.cdn_base_url.rstrip('/')}/{version.key}"
    return ""


def download_locate(*, version, region: str) -> Location | None:
    """The region's verified copy of `version` when `region` names one, else the
    primary's. An unknown region is a 400 naming the valid ones; a known region without
    a verified copy falls back to the primary. Without `region` the primary serves as
    before, at no cost: a warm download asks the database nothing."""
    if not region:
        return None
    regions = {r.code: r for r in Region.objects.filter(is_active=True)}
    primary = next((r for r in regions.values() if r.is_primary), None)
    if region not in regions:
        raise InvalidInput(
            f"Unknown region {region!r}.",
            details={"region": region, "valid": sorted(regions)},
        )
    chosen = regions[region]
    if not chosen.is_primary:
        verified = Replica.objects.filter(
            version_id=version.pk, region=chosen, status=ReplicaStatus.VERIFIED
        ).exists()
        if verified:
            return Location(
                store=region_store(chosen), region=chosen.code, cdn_url=_cdn_url(chosen, version)
            )
    if primary is None:
        return None
    return Location(
        store=get_object_store(), region=primary.code, cdn_url=_cdn_url(primary, version)
    )


def local_store(name: str) -> LocalObjectStore | None:
    """A target region's local folder, for signed URLs that name it."""
    region = Region.objects.filter(code=name, is_primary=False).exclude(local_path="").first()
    if region is None:
        return None
    store = region_store(region)
    return store if isinstance(store, LocalObjectStore) else None
