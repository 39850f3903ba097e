"""The demo's regions and rules (seed 000, section 3), added by `manage.py demo` through
`catalog.hooks.demo_extend` before the demo versions are published.

us-east-1 is the primary (the storage publishing uses). In the embedded mode the two
other regions are folders under `VAR_DIR/regions/`; in the services mode they are
buckets `<S3_BUCKET>-<code>` on the primary's endpoint with its credential variables
(created when missing), which also exercises the server-side copy path.
"""

from __future__ import annotations

import logging
import os
from decimal import Decimal

from django.conf import settings

from catalog.audit import Actor
from catalog.models import Organization
from replication.models import Policy, Region, ReplicationRule
from replication.services import region_save, rule_create

logger = logging.getLogger(__name__)

REGIONS = [
    ("us-east-1", "US East (N. Virginia)", "https://cdn-us-east.scout.io", True),
    ("ap-southeast-1", "Asia Pacific (Singapore)", "https://cdn-ap.scout.io", False),
    ("eu-west-1", "Europe (Ireland)", "https://cdn-eu.scout.io", False),
]
RULES = [
    ("Gold everywhere", "gold/*", Policy.IMMEDIATE, "", ["ap-southeast-1", "eu-west-1"]),
    ("Platinum to APAC, hourly", "platinum/*", Policy.SCHEDULED, "0 * * * *", ["ap-southeast-1"]),
]


def _storage_fields(code: str) -> dict:
    if not settings.S3_BUCKET:
        return {"local_path": str(settings.VAR_DIR / "regions" / code)}
    from django.core.files.storage import storages

    primary = storages["datasets"]
    bucket = f"{settings.S3_BUCKET}-{code}"[:63]
    try:
        client = primary.connection.meta.client
        try:
            client.head_bucket(Bucket=bucket)
        except Exception:
            client.create_bucket(Bucket=bucket)
    except Exception as exc:
        logger.warning("Could not create the demo bucket %s: %s", bucket, exc)
    return {
        "bucket": bucket,
        "endpoint_url": primary.endpoint_url or "",
        "s3_region_name": code,
        "access_key_env": "S3_ACCESS_KEY_ID" if os.environ.get("S3_ACCESS_KEY_ID") else "",
        "secret_key_env": "S3_SECRET_ACCESS_KEY" if os.environ.get("S3_SECRET_ACCESS_KEY") else "",
    }


def demo_regions_and_rules(*, organization: Organization, stdout) -> None:
    actor = Actor.system(via="command")
    added = 0
    for code, name, cdn, primary in REGIONS:
        if Region.objects.filter(code=code).exists():
            continue
        if primary and Region.objects.filter(is_primary=True).exists():
            continue
        region = Region(
            code=code,
            name=name,
            cdn_base_url=cdn,
            is_primary=primary,
            storage_price_gb_month=Decimal("0.023"),
            transfer_price_gb=Decimal("0.09"),
            **({} if primary else _storage_fields(code)),
        )
        region_save(region=region, actor=actor)
        added += 1
    for title, tail, policy, cron, codes in RULES:
        pattern = f"{organization.slug}/{tail}"
        if ReplicationRule.objects.filter(organization=organization, pattern=pattern).exists():
            continue
        rule_create(
            organization=organization,
            regions=list(Region.objects.filter(code__in=codes)),
            actor=actor,
            name=title,
            pattern=pattern,
            policy=policy,
            cron=cron,
        )
        added += 1
    if added:
        stdout.write(f"Replication: {len(REGIONS)} regions and {len(RULES)} rules.")
