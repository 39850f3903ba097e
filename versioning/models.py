"""Versions of datasets, the jobs that publish them, and the manifests that list them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import Dataset, Organization


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"
    ARCHIVED = "archived", "Archived"


class ChangeType(models.TextChoices):
    INITIAL = "initial", "Initial"
    MAJOR = "major", "Major"
    MINOR = "minor", "Minor"
    PATCH = "patch", "Patch"


class DatasetVersion(models.Model):
    """One immutable published file of a dataset, with the facts read from it.

    Exactly one version of a dataset is current (the one the manifest lists); the
    database enforces that there is never more than one.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="versions")
    version = models.CharField(max_length=64)
    major = models.PositiveIntegerField()
    minor = models.PositiveIntegerField()
    patch = models.PositiveIntegerField()
    prerelease = models.CharField(max_length=64, blank=True)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.ACTIVE
    )
    is_current = models.BooleanField(default=False)
    key = models.CharField(max_length=512, unique=True)
    format = models.CharField(max_length=16)
    content_type = models.CharField(max_length=100)
    size_bytes = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, db_index=True)
    row_count = models.BigIntegerField()
    schema = models.JSONField(default=list)
    columnar_key = models.CharField(
        max_length=512,
        blank=True,
        help_text="A Parquet copy with small row groups, made after publish for fast row reads.",
    )
    change_type = models.CharField(max_length=16, choices=ChangeType.choices, blank=True)
    breaking = models.BooleanField(default=False)
    note = models.TextField(blank=True, help_text="The publisher's changelog note (markdown).")
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    published_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    published_at = models.DateTimeField()

    class Meta:
        ordering = ["-published_at", "-id"]
        get_latest_by = "published_at"
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "version"],
                name="datasetversion_unique_version",
                violation_error_message="This dataset already has a version with that number.",
            ),
            models.UniqueConstraint(
                fields=["dataset"],
                condition=Q(is_current=True),
                name="datasetversion_one_current_per_dataset",
                violation_error_message="A dataset has exactly one current version.",
            ),
            models.CheckConstraint(
                condition=Q(is_current=False) | Q(status=VersionStatus.ACTIVE),
                name="datasetversion_current_is_active",
                violation_error_message="Only an active version can be current.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.path}@{self.version}"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"


class JobSource(models.TextChoices):
    ADMIN = "admin", "Admin upload"
    API = "api", "API upload"
    COMMAND = "command", "Management command"
    DEVICE = "device", "Device upload"
    OBJECT = "object", "Object in the bucket"


class JobOutcome(models.TextChoices):
    PUBLISHED = "published", "Published a new version"
    UNCHANGED = "unchanged", "Identical to the current version"


class PublishJob(models.Model):
    """A request to publish a staged file as a new version.

    The row, not the broker, is the source of truth: a queued job whose task was lost is
    sent again by the sweeper, and a running job whose worker stopped reporting (its lease
    ran out) is taken over by another worker.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="publish_jobs")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16, choices=JobSource.choices)
    source_name = models.CharField(max_length=300, blank=True)
    staging_key = models.CharField(max_length=512)
    format = models.CharField(max_length=16)
    requested_version = models.CharField(max_length=64, blank=True)
    note = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    outcome = models.CharField(max_length=16, choices=JobOutcome.choices, blank=True)
    message = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    target_version = models.CharField(max_length=64, blank=True)
    target_key = models.CharField(max_length=512, blank=True)
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="publishjob_unfinished",
                condition=Q(status__in=["queued", "running"]),
            )
        ]

    def __str__(self) -> str:
        return f"Publish {self.dataset.path} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def duration(self):
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @property
    def progress_percent(self) -> int | None:
        if not self.bytes_total:
            return None
        return min(100, round(100 * self.bytes_done / self.bytes_total))


class Manifest(models.Model):
    """The list of an organisation's current versions, as clients read it (seed 001's
    `latest.json`). A new row on every change; the newest is the latest."""

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="manifests"
    )
    body = models.JSONField()
    sha256 = models.CharField(max_length=64)
    key = models.CharField(max_length=512, help_text="The immutable copy in storage.")
    generated_at = models.DateTimeField()
    written_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-generated_at", "-id"]
        get_latest_by = "generated_at"

    def __str__(self) -> str:
        return f"{self.organization.slug} manifest {self.generated_at:%Y-%m-%d %H:%M:%S}"
