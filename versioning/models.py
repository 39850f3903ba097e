"""Versions of datasets, the jobs that publish them, and the manifests that list them."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from catalog.models import Dataset, Organization
from catalog.validators import validate_header_text


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
    diff = models.JSONField(
        default=dict,
        blank=True,
        help_text="The schema diff against the parent (versioning.services.diff).",
    )
    note = models.TextField(blank=True, help_text="The publisher's changelog note (markdown).")
    deprecation_message = models.TextField(
        blank=True,
        validators=[validate_header_text],
        help_text="Why the version is deprecated and what to use instead (one line: "
        "clients get it in a Warning header).",
    )
    sunset_date = models.DateField(
        null=True, blank=True, help_text="After this day the version may be archived."
    )
    deprecated_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    status_before_archive = models.CharField(
        max_length=16,
        choices=VersionStatus.choices,
        blank=True,
        help_text="What restoring the archived version brings it back to.",
    )
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
        indexes = [
            # The numbers a new version must skip (`version_numbers_taken`).
            models.Index(
                fields=["dataset", "major", "minor", "patch"], name="datasetversion_by_number"
            ),
        ]
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
            models.CheckConstraint(
                condition=Q(status__in=VersionStatus.values),
                name="datasetversion_status_valid",
                violation_error_message="Unknown version status.",
            ),
            models.CheckConstraint(
                condition=~Q(status=VersionStatus.DEPRECATED)
                | (Q(sunset_date__isnull=False) & ~Q(deprecation_message="")),
                name="datasetversion_deprecated_has_message_and_sunset",
                violation_error_message="A deprecated version needs a message and a sunset date.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.path}@{self.version}"

    @property
    def is_draft(self) -> bool:
        return self.status == VersionStatus.DRAFT


class ChangeKind(models.TextChoices):
    INITIAL = "initial", "First version"
    COLUMN_ADDED = "column_added", "Column added"
    COLUMN_REMOVED = "column_removed", "Column removed"
    COLUMN_RETYPED = "column_retyped", "Column retyped"
    NULLS_APPEARED = "nulls_appeared", "Column gained nulls"
    COLUMNS_REORDERED = "columns_reordered", "Columns reordered"
    DATA_CHANGED = "data_changed", "Data changed"
    BREAKING_ALLOWED = "breaking_allowed", "Breaking change allowed"
    NOTE = "note", "Publisher's note"


class ChangelogEntry(models.Model):
    """One line of a version's changelog: written from the schema diff when the version
    is published (or rebased on promotion), plus the publisher's note and any override of
    the compatibility check. Read-only afterwards."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="changes")
    position = models.PositiveIntegerField()
    kind = models.CharField(max_length=32, choices=ChangeKind.choices)
    column = models.CharField(max_length=300, blank=True)
    old_type = models.CharField(max_length=16, blank=True)
    new_type = models.CharField(max_length=16, blank=True)
    breaking = models.BooleanField(default=False)
    text = models.TextField(help_text="Markdown.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "position"]
        verbose_name_plural = "changelog entries"
        constraints = [
            models.UniqueConstraint(
                fields=["version", "position"], name="changelogentry_unique_position"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version}: {self.text[:80]}"


class VersionInput(models.Model):
    """An edge of the lineage graph: `version` was built from `upstream`.

    Edges are written with the version they lead to and only ever point at versions
    that existed before it, so the graph has no cycles.
    """

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="inputs")
    upstream = models.ForeignKey(DatasetVersion, on_delete=models.PROTECT, related_name="outputs")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["version", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["version", "upstream"],
                name="versioninput_unique_edge",
                violation_error_message="This input is already recorded.",
            ),
            models.CheckConstraint(
                condition=~Q(version=F("upstream")),
                name="versioninput_not_itself",
                violation_error_message="A version cannot be its own input.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.upstream} -> {self.version}"


class DatasetRollback(models.Model):
    """A steward made an older (or newer) version current again. Nothing is deleted: the
    row keeps both versions, the reason, and the key of the manifest that was in force
    before, whose immutable copy stays in storage as the backup."""

    dataset = models.ForeignKey(Dataset, on_delete=models.PROTECT, related_name="rollbacks")
    from_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="rollbacks_from"
    )
    to_version = models.ForeignKey(
        DatasetVersion, on_delete=models.PROTECT, related_name="rollbacks_to"
    )
    reason = models.TextField()
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True)
    backup_manifest_key = models.CharField(
        max_length=512, blank=True, help_text="The manifest in force before the rollback."
    )
    manifest = models.ForeignKey(
        "Manifest", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(from_version=F("to_version")),
                name="datasetrollback_changes_version",
                violation_error_message="A rollback goes to another version.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset.path}: {self.from_version.version} -> {self.to_version.version}"


class JobStatus(models.TextChoices):
    # The file is on its way to storage; the row holds its key meanwhile
    # (`versioning.services.intake`), and becomes a queued job once every byte is there.
    UPLOADING = "uploading", "Uploading"
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
    allow_breaking = models.BooleanField(
        default=False, help_text="The publisher accepted a breaking change without a major bump."
    )
    draft = models.BooleanField(
        default=False, help_text="Publish as a draft for a steward to promote."
    )
    inputs = models.JSONField(
        default=list, blank=True, help_text='Lineage inputs, as ["gold/txn_daily@1.2.0", ...].'
    )
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    outcome = models.CharField(max_length=16, choices=JobOutcome.choices, blank=True)
    message = models.TextField(blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_details = models.JSONField(
        default=dict, blank=True, help_text="What a failure is about, e.g. the breaking columns."
    )
    attempts = models.PositiveIntegerField(default=0)
    bytes_total = models.BigIntegerField(null=True, blank=True)
    bytes_done = models.BigIntegerField(default=0)
    target_version = models.CharField(max_length=64, blank=True)
    target_key = models.CharField(max_length=512, blank=True)
    profile = models.JSONField(
        null=True,
        blank=True,
        help_text="The file's facts, read while it was uploaded (catalog.inspection."
        "FileProfile); the worker decides from them without reading the file again.",
    )
    expected_sha256 = models.CharField(
        max_length=64,
        blank=True,
        help_text="The SHA-256 the publisher sent, for a file no one has hashed yet (a "
        "resumable upload's parts went straight to storage): the worker's read checks it.",
    )
    version = models.ForeignKey(
        DatasetVersion, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    cleanup_pending = models.BooleanField(
        default=False,
        help_text="The job finished while storage was unreachable: what it staged is "
        "removed by the sweeper once storage answers.",
    )

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["created_at"],
                name="publishjob_unfinished",
                condition=Q(status__in=["uploading", "queued", "running"]),
            )
        ]
        constraints = [
            # A key is held by at most one publish that has not finished: two uploads
            # that chose the same version's key at the same moment cannot both write it.
            models.UniqueConstraint(
                fields=["target_key"],
                name="publishjob_target_key_held_once",
                condition=Q(status__in=["uploading", "queued", "running"]) & ~Q(target_key=""),
            )
        ]

    def __str__(self) -> str:
        return f"Publish {self.dataset.path} ({self.status})"

    @property
    def is_finished(self) -> bool:
        return self.status in (JobStatus.SUCCEEDED, JobStatus.FAILED)

    @property
    def options(self):
        """What the publisher asked for (`versioning.options.PublishOptions`)."""
        from versioning.options import PublishOptions

        return PublishOptions.of_job(self)

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


class UploadStatus(models.TextChoices):
    OPEN = "open", "Receiving parts"
    COMPLETING = "completing", "Parts checked, waiting for a worker to join them"
    JOINING = "joining", "A worker is joining the parts"
    COMPLETED = "completed", "Completed (a publish job took it)"
    REFUSED = "refused", "Refused at completion (its SHA-256 or format)"
    ABORTED = "aborted", "Aborted (by its client or a steward)"
    EXPIRED = "expired", "Expired unfinished"


class PartChecksum(models.TextChoices):
    NONE = "", "None"
    CRC32 = "crc32", "CRC32 of each part, checked by storage"


class ResumableUpload(models.Model):
    """A file sent in parts straight to storage, resumable after a break.

    The parts go to the staging key the publish job will read (an S3 multipart upload,
    or part files in the embedded mode); on completion the job is created for that key
    with the id chosen here, so the bytes are never copied again. What the publisher
    asked for is kept as the job's options will be.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="uploads")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=16)
    filename = models.CharField(max_length=300)
    format = models.CharField(max_length=16)
    size = models.BigIntegerField()
    part_size = models.BigIntegerField()
    sha256 = models.CharField(max_length=64, blank=True)
    checksum = models.CharField(
        max_length=16,
        blank=True,
        choices=PartChecksum.choices,
        default=PartChecksum.NONE,
        help_text="What every part is sent with, for storage to check.",
    )
    options = models.JSONField(
        default=dict, help_text="The publish options, as the job takes them."
    )
    job_id = models.UUIDField(help_text="The publish job's id, chosen up front for its key.")
    staging_key = models.CharField(max_length=512)
    storage_upload_id = models.CharField(
        max_length=1024, help_text="The S3 multipart upload id (a local one when embedded)."
    )
    status = models.CharField(
        max_length=16, choices=UploadStatus.choices, default=UploadStatus.OPEN
    )
    message = models.TextField(blank=True, help_text="Why it was refused, for the publisher.")
    error_code = models.CharField(max_length=64, blank=True)
    error_details = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["expires_at"],
                name="resumableupload_unfinished",
                condition=Q(status__in=["open", "completing", "joining"]),
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(size__gt=0) & Q(part_size__gt=0),
                name="resumableupload_sizes_positive",
                violation_error_message="An upload and its parts have at least one byte.",
            )
        ]

    def __str__(self) -> str:
        return f"Upload {self.filename} to {self.dataset.path} ({self.status})"

    @property
    def part_count(self) -> int:
        return -(-self.size // self.part_size)

    def part_length(self, number: int) -> int:
        """The exact size part `number` (1-based) must have: the last holds the rest."""
        if number < self.part_count:
            return self.part_size
        return self.size - self.part_size * (self.part_count - 1)
