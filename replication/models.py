"""Regions, the rules that say which datasets go where and when, one replica row per
(version, region), every copy attempt, and each region's own manifest.

The rows, not the broker, are the source of truth: a replica that is due (pending, or
backing off after a failure) carries `next_attempt_at`, a scheduled rule carries
`next_run_at`, and a periodic tick claims both with conditional updates. A worker
copying a replica holds it with `claim` and `lease_until`; every change it makes is
fenced by that claim, so a worker that lost its lease changes nothing.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import Organization
from versioning.models import DatasetVersion

REGION_CODE_PATTERN = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"


class AddressingStyle(models.TextChoices):
    PATH = "path", "Path (https://host/bucket/key)"
    VIRTUAL = "virtual", "Virtual host (https://bucket.host/key)"


class Region(models.Model):
    """A place datasets are stored: the primary (the storage publishing writes to) or a
    target that rules copy to.

    Credentials are never stored: a region names the environment variables that hold
    them, and they are read when a copy runs. In the embedded mode a region is a local
    folder.
    """

    code = models.SlugField(max_length=64, unique=True, help_text="e.g. eu-west-1")
    name = models.CharField(max_length=200)
    is_primary = models.BooleanField(
        default=False, help_text="The storage publishing writes to; exactly one region."
    )
    is_active = models.BooleanField(default=True)
    endpoint_url = models.CharField(
        max_length=500, blank=True, help_text="S3-compatible endpoint; empty for AWS itself."
    )
    bucket = models.CharField(max_length=255, blank=True)
    s3_region_name = models.CharField(
        max_length=64, blank=True, help_text="The bucket's region for request signing."
    )
    addressing_style = models.CharField(
        max_length=16, choices=AddressingStyle.choices, default=AddressingStyle.PATH
    )
    access_key_env = models.CharField(
        max_length=128,
        blank=True,
        help_text="Name of the environment variable holding the access key id.",
    )
    secret_key_env = models.CharField(
        max_length=128,
        blank=True,
        help_text="Name of the environment variable holding the secret access key.",
    )
    local_path = models.CharField(
        max_length=500, blank=True, help_text="A folder instead of a bucket (embedded mode)."
    )
    cdn_base_url = models.URLField(max_length=500, blank=True)
    storage_price_gb_month = models.DecimalField(
        max_digits=10, decimal_places=5, default=Decimal("0.023"), help_text="USD per GB-month."
    )
    transfer_price_gb = models.DecimalField(
        max_digits=10,
        decimal_places=5,
        default=Decimal("0.09"),
        help_text="USD per GB sent out of this region.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-is_primary", "code"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_primary"],
                condition=Q(is_primary=True),
                name="region_one_primary",
                violation_error_message="There is already a primary region; there is exactly one.",
            ),
            models.CheckConstraint(
                condition=Q(endpoint_url="")
                | Q(endpoint_url__startswith="http://")
                | Q(endpoint_url__startswith="https://"),
                name="region_endpoint_is_http",
                violation_error_message="The endpoint must be an http:// or https:// URL.",
            ),
            models.CheckConstraint(
                condition=Q(is_primary=False) | Q(is_active=True),
                name="region_primary_is_active",
                violation_error_message="The primary region cannot be inactive.",
            ),
            models.CheckConstraint(
                condition=Q(storage_price_gb_month__gte=0) & Q(transfer_price_gb__gte=0),
                name="region_prices_not_negative",
                violation_error_message="Prices cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return self.code


class Policy(models.TextChoices):
    IMMEDIATE = "immediate", "Immediate (on every publish and rollback)"
    SCHEDULED = "scheduled", "Scheduled (cron)"
    ON_DEMAND = "on_demand", "On demand"


MAX_BANDWIDTH_MBPS = 100_000  # 100 Gbps: beyond any link a region pair has


class ReplicationRule(models.Model):
    """Which datasets of an organisation go to which regions, and when.

    `pattern` is a glob over `<org>/<layer>/<name>` (`scout/gold/*`). The bandwidth is
    the limit for this rule's copies over each link; retention is how long a version no
    longer current stays in the targets.
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="replication_rules"
    )
    name = models.CharField(max_length=200, blank=True)
    pattern = models.CharField(max_length=300, help_text="A glob over <org>/<layer>/<name>.")
    regions = models.ManyToManyField(Region, related_name="rules", help_text="Target regions.")
    policy = models.CharField(max_length=16, choices=Policy.choices, default=Policy.IMMEDIATE)
    cron = models.CharField(
        max_length=100, blank=True, help_text="Scheduled rules: minute hour day month weekday."
    )
    timezone = models.CharField(max_length=64, default="UTC")
    bandwidth_mbps = models.PositiveIntegerField(default=100)
    retention_days = models.PositiveIntegerField(default=90)
    priority = models.IntegerField(default=100, help_text="Higher first.")
    enabled = models.BooleanField(default=True)
    next_run_at = models.DateTimeField(null=True, blank=True, db_index=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["organization__slug", "-priority", "pattern"]
        constraints = [
            models.CheckConstraint(
                condition=Q(bandwidth_mbps__gte=1) & Q(bandwidth_mbps__lte=MAX_BANDWIDTH_MBPS),
                name="replicationrule_bandwidth_range",
                violation_error_message=f"Bandwidth must be 1 to {MAX_BANDWIDTH_MBPS:,} Mbps.",
            ),
            models.CheckConstraint(
                condition=Q(retention_days__gte=1),
                name="replicationrule_retention_at_least_a_day",
                violation_error_message="Retention must be at least one day.",
            ),
            models.CheckConstraint(
                condition=~Q(policy=Policy.SCHEDULED) | ~Q(cron=""),
                name="replicationrule_scheduled_has_cron",
                violation_error_message="A scheduled rule needs a cron expression.",
            ),
            models.CheckConstraint(
                condition=Q(policy__in=Policy.values),
                name="replicationrule_policy_valid",
                violation_error_message="Unknown policy.",
            ),
        ]

    def __str__(self) -> str:
        return self.name or f"{self.pattern} ({self.get_policy_display()})"


# What a steward sets on a rule (besides its organisation and target regions), in the
# order forms and answers show it.
RULE_FIELDS = (
    "name",
    "pattern",
    "policy",
    "cron",
    "timezone",
    "bandwidth_mbps",
    "retention_days",
    "priority",
    "enabled",
)


class ReplicaStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    COPYING = "copying", "Copying"
    VERIFIED = "verified", "Verified"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"


class Replica(models.Model):
    """One version in one target region.

    `verified` means the bytes at `key` in the region hashed to the version's SHA-256
    (`sha256_measured`); nothing else sets it. A failed replica keeps `next_attempt_at`
    while its failure was of infrastructure, so it finishes once the region is back.
    """

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="replicas")
    region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="replicas")
    rule = models.ForeignKey(
        ReplicationRule,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="replicas",
        help_text="The rule that asked for it (empty for an on-demand request).",
    )
    status = models.CharField(
        max_length=16, choices=ReplicaStatus.choices, default=ReplicaStatus.PENDING
    )
    key = models.CharField(max_length=512)
    size_bytes = models.BigIntegerField()
    bandwidth_mbps = models.PositiveIntegerField(default=100)
    bytes_copied = models.BigIntegerField(default=0)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    sha256_measured = models.CharField(max_length=64, blank=True)
    method = models.CharField(max_length=16, blank=True, help_text="stream or server-side")
    claim = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, db_index=True)
    queued_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    verified_at = models.DateTimeField(null=True, blank=True, db_index=True)
    failed_at = models.DateTimeField(null=True, blank=True)
    expired_at = models.DateTimeField(null=True, blank=True)
    scrubbed_at = models.DateTimeField(null=True, blank=True)
    late_recorded_at = models.DateTimeField(null=True, blank=True)
    failure_recorded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-queued_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "region"],
                name="replica_unique_version_region",
                violation_error_message="This version already has a replica in that region.",
            ),
            models.CheckConstraint(
                condition=Q(status__in=ReplicaStatus.values),
                name="replica_status_valid",
                violation_error_message="Unknown replica status.",
            ),
            models.CheckConstraint(
                condition=~Q(status=ReplicaStatus.VERIFIED) | ~Q(sha256_measured=""),
                name="replica_verified_has_measured_hash",
                violation_error_message="A verified replica records the hash measured on "
                "the target.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="replica_due",
                condition=Q(status__in=["pending", "copying", "failed"]),
            )
        ]

    def __str__(self) -> str:
        return f"{self.version} in {self.region.code} ({self.status})"


class CopyOutcome(models.TextChoices):
    VERIFIED = "verified", "Verified"
    RETRY = "retry", "Failed, will retry"
    FAILED = "failed", "Failed for good"
    LOST = "lost", "Lease lost"


class CopyRun(models.Model):
    """One attempt at copying a replica: what moved, how fast, and how it ended. The
    bytes of every run are what the transfer cost is computed from."""

    replica = models.ForeignKey(Replica, on_delete=models.CASCADE, related_name="runs")
    source_region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="+")
    target_region = models.ForeignKey(Region, on_delete=models.PROTECT, related_name="+")
    attempt = models.PositiveIntegerField()
    method = models.CharField(max_length=16)
    worker = models.CharField(max_length=200, blank=True)
    bytes_transferred = models.BigIntegerField(default=0)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_seconds = models.FloatField(null=True, blank=True)
    throughput_bps = models.FloatField(
        null=True, blank=True, help_text="Bytes per second over the run."
    )
    outcome = models.CharField(max_length=16, choices=CopyOutcome.choices, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]

    def __str__(self) -> str:
        return f"{self.replica} attempt {self.attempt}"


class RegionManifest(models.Model):
    """A region's own `latest.json`: the organisation's manifest listing, per dataset,
    the newest version verified in that region. A new row whenever it changes."""

    region = models.ForeignKey(Region, on_delete=models.CASCADE, related_name="manifests")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    body = models.JSONField()
    sha256 = models.CharField(max_length=64)
    generated_at = models.DateTimeField()
    written_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-generated_at", "-id"]
        indexes = [models.Index(fields=["region", "organization", "-generated_at"])]

    def __str__(self) -> str:
        return f"{self.organization.slug} manifest in {self.region.code}"
