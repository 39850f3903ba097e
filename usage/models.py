"""Usage: the raw event log, the sessions and daily rollups made from it, segments,
thresholds and the anomalies found.

The raw log (`UsageEvent`) is written only by the ingest task, in batches with COPY,
and read by the rollups; every page and API answer reads the rollups, which are small
(one row per dataset, user or version per day) and so stay fast however long the log.
In PostgreSQL the log is a table partitioned by month (made by the migration, not by
Django: see `usage/partitions.py`), so old months are dropped whole once rolled up.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from catalog.models import Dataset, Organization
from versioning.models import DatasetVersion


class Kind(models.TextChoices):
    """What a request did. COUNTER's *investigations* and *requests* are kinds below."""

    LIST = "list", "Dataset list"
    DETAIL = "detail", "Dataset detail"
    VERSIONS = "versions", "Version list"
    VERSION = "version", "Version detail"
    CHANGES = "changes", "Changes"
    DIFF = "diff", "Schema diff"
    LINEAGE = "lineage", "Lineage"
    ROWS = "rows", "Rows (JSON)"
    DOWNLOAD = "download", "Signed URL"
    RAW = "raw", "Raw redirect"
    EXPORT = "export", "Rows export (CSV, NDJSON)"
    OBJECT = "object", "Object served"
    MANIFEST = "manifest", "Manifest"
    PUBLISH = "publish", "Publish"
    LIFECYCLE = "lifecycle", "Lifecycle action"
    JOB = "job", "Publish job"
    TOKENS = "tokens", "Tokens"
    USAGE = "usage", "Usage reports"
    OTHER = "other", "Other"


# COUNTER Code of Practice for Research Data: viewing a dataset's description is an
# investigation, getting its data is a request (which is also an investigation).
INVESTIGATION_KINDS = frozenset(
    {Kind.DETAIL, Kind.VERSIONS, Kind.VERSION, Kind.CHANGES, Kind.DIFF, Kind.LINEAGE, Kind.ROWS}
)
# A signed URL is the download; the embedded mode's object serving that follows it is
# recorded (bytes, completion) but not counted again.
REQUEST_KINDS = frozenset({Kind.DOWNLOAD, Kind.RAW, Kind.EXPORT})
DOWNLOAD_KINDS = frozenset({Kind.DOWNLOAD, Kind.RAW})


class AccessMethod(models.TextChoices):
    REGULAR = "regular", "Regular (people)"
    MACHINE = "machine", "Machine (scripts)"
    ROBOT = "robot", "Robot (excluded from counts)"


class UsageEvent(models.Model):
    """One recorded request. Written only by the ingest task; never changed.

    The primary key includes the time because a partitioned table's unique keys must
    include the partition key; the event id alone makes a replayed event a no-op.
    Foreign keys are not enforced by the database (a partitioned log outlives deleted
    rows and takes COPY without a lookup per row).
    """

    pk = models.CompositePrimaryKey("occurred_at", "event_id")
    event_id = models.UUIDField()
    occurred_at = models.DateTimeField()
    organization = models.ForeignKey(
        Organization, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.DO_NOTHING, db_constraint=False, null=True, related_name="+"
    )
    version = models.ForeignKey(
        DatasetVersion,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        null=True,
        related_name="+",
    )
    token_id = models.BigIntegerField(null=True)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.SmallIntegerField()
    response_ms = models.IntegerField()
    bytes = models.BigIntegerField()
    country = models.CharField(max_length=2)
    agent_family = models.CharField(max_length=64)
    access_method = models.CharField(max_length=8, choices=AccessMethod.choices)
    # A keyed hash of address and user agent: tells anonymous visitors apart without
    # keeping their address.
    client = models.CharField(max_length=32)
    request_id = models.CharField(max_length=64)

    class Meta:
        managed = False  # made by the migration: partitioned in PostgreSQL
        db_table = "usage_event"

    def __str__(self) -> str:
        return f"{self.kind} {self.status} at {self.occurred_at:%Y-%m-%d %H:%M:%S}"

    @property
    def visitor(self) -> str:
        return visitor_of(user_id=self.user_id, client=self.client)


def visitor_of(*, user_id: int | None, client: str) -> str:
    """Who an event is from, for sessions and unique counts: the user, else the client."""
    return f"u{user_id}" if user_id is not None else f"c{client}"


class RollupDue(models.Model):
    """A day whose rollups must be (re)computed: the ingest marks every day it wrote
    events for; the rollup task clears the mark only if it was not moved meanwhile."""

    day = models.DateField(unique=True)
    marked_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"rollup of {self.day}"


class DatasetDay(models.Model):
    """One dataset's usage on one day (UTC), all access methods but robots."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="usage_days")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    downloads = models.PositiveIntegerField(default=0, help_text="COUNTER total requests.")
    unique_downloads = models.PositiveIntegerField(default=0)
    investigations = models.PositiveIntegerField(default=0)
    unique_investigations = models.PositiveIntegerField(default=0)
    api_calls = models.PositiveIntegerField(default=0)
    exports = models.PositiveIntegerField(default=0)
    unique_users = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    p50_ms = models.PositiveIntegerField(default=0)
    p95_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-day", "dataset_id"]
        verbose_name = verbose_name_plural = "daily dataset usage"
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "day"],
                name="datasetday_unique_dataset_day",
                violation_error_message="This dataset already has a rollup for that day.",
            )
        ]
        indexes = [models.Index(fields=["day", "dataset"], name="datasetday_day_dataset")]

    def __str__(self) -> str:
        return f"{self.dataset_id} on {self.day}"


class CounterDay(models.Model):
    """COUNTER's four metrics for one dataset, day and access method (robots never)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    access_method = models.CharField(max_length=8, choices=AccessMethod.choices)
    total_investigations = models.PositiveIntegerField(default=0)
    unique_investigations = models.PositiveIntegerField(default=0)
    total_requests = models.PositiveIntegerField(default=0)
    unique_requests = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "day", "access_method"],
                name="counterday_unique_dataset_day_method",
                violation_error_message="This dataset already has COUNTER figures for that "
                "day and access method.",
            ),
            models.CheckConstraint(
                condition=Q(access_method__in=["regular", "machine"]),
                name="counterday_no_robots",
                violation_error_message="Robots are never counted.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.dataset_id} {self.access_method} on {self.day}"


class UserDay(models.Model):
    """One user's activity on one day."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    events = models.PositiveIntegerField(default=0)
    downloads = models.PositiveIntegerField(default=0)
    exports = models.PositiveIntegerField(default=0)
    datasets = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    bytes = models.BigIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day"],
                name="userday_unique_user_day",
                violation_error_message="This user already has a rollup for that day.",
            )
        ]
        indexes = [models.Index(fields=["day"], name="userday_day")]

    def __str__(self) -> str:
        return f"user {self.user_id} on {self.day}"


class VersionDay(models.Model):
    """Reads of one version on one day: version adoption."""

    version = models.ForeignKey(DatasetVersion, on_delete=models.CASCADE, related_name="+")
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    reads = models.PositiveIntegerField(default=0, help_text="Downloads, exports and rows.")
    users = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["version", "day"],
                name="versionday_unique_version_day",
                violation_error_message="This version already has a rollup for that day.",
            )
        ]
        indexes = [models.Index(fields=["dataset", "day"], name="versionday_dataset_day")]

    def __str__(self) -> str:
        return f"version {self.version_id} on {self.day}"


class SiteDay(models.Model):
    """The whole system on one day, including requests for no dataset (and their
    errors), for the admin home."""

    day = models.DateField(unique=True)
    api_calls = models.PositiveIntegerField(default=0)
    downloads = models.PositiveIntegerField(default=0)
    errors = models.PositiveIntegerField(default=0)
    active_users = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    p95_ms = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"site on {self.day}"


class CountryDay(models.Model):
    """Requests per country per dataset per day (geography); `dataset` is empty for
    requests about no dataset (the list, the manifest, tokens)."""

    day = models.DateField()
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, null=True, related_name="+")
    country = models.CharField(max_length=2, help_text="ISO 3166 code; empty when unknown.")
    events = models.PositiveIntegerField(default=0)
    users = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["day", "dataset", "country"], name="countryday_unique_day_dataset_country"
            )
        ]

    def __str__(self) -> str:
        return f"{self.country} on {self.day}"


class UsageSession(models.Model):
    """A visitor's events with no gap over 30 minutes, within one day (UTC)."""

    day = models.DateField()
    visitor = models.CharField(max_length=40)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField()
    events = models.PositiveIntegerField()
    datasets = models.PositiveIntegerField()

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["day", "visitor", "started_at"], name="usagesession_unique_start"
            ),
            models.CheckConstraint(
                condition=Q(ended_at__gte=models.F("started_at")),
                name="usagesession_ends_after_start",
                violation_error_message="A session cannot end before it starts.",
            ),
        ]
        indexes = [models.Index(fields=["day"], name="usagesession_day")]

    def __str__(self) -> str:
        return f"{self.visitor} from {self.started_at:%Y-%m-%d %H:%M}"

    @property
    def duration_seconds(self) -> int:
        return int((self.ended_at - self.started_at).total_seconds())


class Segment(models.TextChoices):
    POWER = "power", "Power"
    REGULAR = "regular", "Regular"
    OCCASIONAL = "occasional", "Occasional"
    NEW = "new", "New"


class UserSegment(models.Model):
    """A user's segment as computed on `day`; one row per user per day, kept as history."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    day = models.DateField()
    segment = models.CharField(max_length=16, choices=Segment.choices)
    active_days_30 = models.PositiveIntegerField()
    active_days_90 = models.PositiveIntegerField()
    events_30 = models.PositiveIntegerField()

    class Meta:
        ordering = ["-day", "user_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "day"],
                name="usersegment_unique_user_day",
                violation_error_message="This user already has a segment for that day.",
            )
        ]
        indexes = [models.Index(fields=["day", "segment"], name="usersegment_day_segment")]

    def __str__(self) -> str:
        return f"user {self.user_id}: {self.segment} on {self.day}"


class Metric(models.TextChoices):
    DOWNLOADS = "downloads", "Downloads per day"
    API_CALLS = "api_calls", "API calls per day"
    EXPORTS = "exports", "Exports per day"
    ERRORS = "errors", "Errors per day"
    UNIQUE_USERS = "unique_users", "Unique users per day"


class Direction(models.TextChoices):
    ABOVE = "above", "Above"
    BELOW = "below", "Below"


class UsageThreshold(models.Model):
    """A steward's alert: a dataset's daily `metric` above (or below) `value`.

    Each crossing is recorded once, as a `usage.threshold_crossed` event; the threshold
    stays crossed until a day back on the right side resets it.
    """

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="usage_thresholds")
    metric = models.CharField(max_length=16, choices=Metric.choices, default=Metric.DOWNLOADS)
    direction = models.CharField(max_length=8, choices=Direction.choices, default=Direction.ABOVE)
    value = models.PositiveIntegerField()
    is_crossed = models.BooleanField(default=False, editable=False)
    crossed_on = models.DateField(null=True, blank=True, editable=False)
    last_checked_on = models.DateField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["dataset_id", "metric"]
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "metric", "direction"],
                name="usagethreshold_unique_dataset_metric_direction",
                violation_error_message="This dataset already has that threshold.",
            ),
            models.CheckConstraint(
                condition=Q(metric__in=Metric.values) & Q(direction__in=Direction.values),
                name="usagethreshold_metric_direction_valid",
                violation_error_message="Unknown metric or direction.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_metric_display()} {self.direction} {self.value}"


class UsageAnomaly(models.Model):
    """A daily count outside K standard deviations of its trailing 28 days."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="usage_anomalies")
    day = models.DateField()
    metric = models.CharField(max_length=16, choices=Metric.choices)
    value = models.PositiveIntegerField()
    mean = models.FloatField()
    stdev = models.FloatField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-day", "dataset_id"]
        verbose_name_plural = "usage anomalies"
        constraints = [
            models.UniqueConstraint(
                fields=["dataset", "day", "metric"], name="usageanomaly_unique_dataset_day_metric"
            )
        ]

    def __str__(self) -> str:
        return f"{self.metric} {self.value} on {self.day} (mean {self.mean:.1f})"


class BreakingChangeNotice(models.Model):
    """The consumers of the major a breaking version replaced, recorded once per version
    (the outbox may deliver `version.published` twice)."""

    version = models.OneToOneField(DatasetVersion, on_delete=models.CASCADE, related_name="+")
    previous_major = models.PositiveIntegerField()
    user_ids = models.JSONField(default=list)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{len(self.user_ids)} consumers of major {self.previous_major}"
