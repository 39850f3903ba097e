"""Shapes of the datasets API.

Output serializers declare their fields for the OpenAPI schema, and build their dicts
by hand in `to_representation`: a list page is fifty datasets, and DRF's generic field
machinery costs more per field than the rest of the request together.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.utils import timezone
from rest_framework import serializers

from catalog.models import NAME_PATTERN, Compatibility, Layer, UpdateFrequency, Visibility
from versioning import columnar
from versioning.manifest import isoformat_z
from versioning.models import DatasetVersion, PublishJob, VersionStatus
from versioning.services.jobs import MAX_WAIT_SECONDS

API_ROOT = "/api/v1"


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else isoformat_z(moment)


def dataset_url(dataset) -> str:
    return f"{API_ROOT}/orgs/{dataset.organization.slug}/datasets/{dataset.layer}/{dataset.name}/"


def freshness_cutoff(now: datetime, hours: int) -> datetime | None:
    """The moment before which a last publish is late; None when `hours` reaches back
    past year 1 (nothing is late then)."""
    try:
        return now - timedelta(hours=hours)
    except OverflowError:
        return None


def is_stale(dataset, last_published_at: datetime | None, now: datetime) -> bool:
    if not dataset.freshness_hours:
        return False
    if last_published_at is None:
        return True
    cutoff = freshness_cutoff(now, dataset.freshness_hours)
    return cutoff is not None and last_published_at < cutoff


# --- Versions ----------------------------------------------------------------------


class ColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField(help_text="integer, float, boolean, date, timestamp, string")
    nulls = serializers.IntegerField()


class CurrentVersionSerializer(serializers.Serializer):
    version = serializers.CharField()
    published_at = serializers.DateTimeField()
    row_count = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    content_type = serializers.CharField()
    format = serializers.CharField(help_text="csv, csv.gz or parquet")


class CurrentVersionDetailSerializer(CurrentVersionSerializer):
    schema = ColumnSerializer(many=True)


def _current_facts(version: DatasetVersion | None, *, schema: bool) -> dict | None:
    if version is None:
        return None
    facts = {
        "version": version.version,
        "published_at": _iso(version.published_at),
        "row_count": version.row_count,
        "size_bytes": version.size_bytes,
        "sha256": version.sha256,
        "content_type": version.content_type,
        "format": version.format,
    }
    if schema:
        facts["schema"] = version.schema
    return facts


# --- Datasets ----------------------------------------------------------------------


class DatasetSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="This dataset's address in the API.")
    organization = serializers.CharField()
    layer = serializers.ChoiceField(choices=Layer.choices)
    name = serializers.CharField()
    path = serializers.CharField(help_text="`<layer>/<name>`, the manifest's key.")
    title = serializers.CharField()
    description = serializers.CharField()
    tags = serializers.ListField(child=serializers.CharField())
    visibility = serializers.ChoiceField(choices=Visibility.choices)
    update_frequency = serializers.ChoiceField(choices=UpdateFrequency.choices)
    freshness_hours = serializers.IntegerField(allow_null=True)
    compatibility = serializers.ChoiceField(
        choices=Compatibility.choices,
        help_text="What a new version must claim: major (a breaking change needs a major "
        "bump or allow_breaking), strict (breaking changes refused), none (no checks).",
    )
    stale = serializers.BooleanField(help_text="A new version was expected and is late.")
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()
    current_version = CurrentVersionSerializer(allow_null=True)

    with_schema = False

    def to_representation(self, dataset) -> dict:
        current = getattr(dataset, "current_versions", None)
        if current is None:
            current = list(
                DatasetVersion.objects.filter(dataset=dataset, is_current=True).defer(
                    *(() if self.with_schema else ("schema",))
                )
            )
        version = current[0] if current else None
        now = self.context.get("now") or timezone.now()
        return {
            "url": dataset_url(dataset),
            "organization": dataset.organization.slug,
            "layer": dataset.layer,
            "name": dataset.name,
            "path": f"{dataset.layer}/{dataset.name}",
            "title": dataset.title,
            "description": dataset.description,
            "tags": dataset.tags,
            "visibility": dataset.visibility,
            "update_frequency": dataset.update_frequency,
            "freshness_hours": dataset.freshness_hours,
            "compatibility": dataset.compatibility,
            "stale": is_stale(dataset, version.published_at if version else None, now),
            "created_at": _iso(dataset.created_at),
            "updated_at": _iso(dataset.updated_at),
            "current_version": _current_facts(version, schema=self.with_schema),
        }


class DatasetDetailSerializer(DatasetSerializer):
    current_version = CurrentVersionDetailSerializer(allow_null=True)
    with_schema = True


class DatasetUpdateInput(serializers.Serializer):
    title = serializers.CharField(max_length=200, allow_blank=True, required=False)
    description = serializers.CharField(max_length=20000, allow_blank=True, required=False)
    tags = serializers.ListField(
        child=serializers.RegexField(r"^[\w .:-]{1,50}$"), max_length=20, required=False
    )
    visibility = serializers.ChoiceField(choices=Visibility.choices, required=False)
    update_frequency = serializers.ChoiceField(choices=UpdateFrequency.choices, required=False)
    freshness_hours = serializers.IntegerField(
        min_value=1, max_value=8760, allow_null=True, required=False
    )
    compatibility = serializers.ChoiceField(choices=Compatibility.choices, required=False)


class DatasetCreateInput(DatasetUpdateInput):
    organization = serializers.SlugField(
        required=False,
        help_text="Slug of an organisation you steward; needed only if you steward several.",
    )
    layer = serializers.ChoiceField(choices=Layer.choices)
    name = serializers.RegexField(NAME_PATTERN, max_length=64)


# --- Versions, jobs --------------------------------------------------------------------


class DeprecationSerializer(serializers.Serializer):
    message = serializers.CharField(help_text="Why, and what to use instead.")
    sunset = serializers.DateField(help_text="The day after which it may stop being served.")
    deprecated_at = serializers.DateTimeField(allow_null=True)


def deprecation_facts(version: DatasetVersion) -> dict | None:
    if version.status != VersionStatus.DEPRECATED:
        return None
    return {
        "message": version.deprecation_message,
        "sunset": version.sunset_date.isoformat() if version.sunset_date else None,
        "deprecated_at": _iso(version.deprecated_at),
    }


class VersionSerializer(serializers.Serializer):
    url = serializers.CharField()
    dataset = serializers.CharField(help_text="`<layer>/<name>`")
    organization = serializers.CharField()
    version = serializers.CharField()
    status = serializers.CharField()
    is_current = serializers.BooleanField()
    key = serializers.CharField(help_text="The immutable object key.")
    format = serializers.CharField()
    content_type = serializers.CharField()
    size_bytes = serializers.IntegerField()
    sha256 = serializers.CharField()
    row_count = serializers.IntegerField()
    schema = ColumnSerializer(many=True)
    change_type = serializers.CharField()
    breaking = serializers.BooleanField()
    note = serializers.CharField(help_text="The changelog note.")
    parent = serializers.CharField(allow_null=True, help_text="The version it replaced.")
    deprecation = DeprecationSerializer(
        allow_null=True,
        help_text="Set while the version is deprecated (the response then also carries "
        "Deprecation, Sunset, Link and Warning headers).",
    )
    published_by = serializers.CharField(allow_null=True)
    published_at = serializers.DateTimeField()
    rows_ready = serializers.BooleanField(
        help_text="Rows are read the fast way: from the columnar copy, or from the file "
        "itself when it is too small to need one (rows work either way)."
    )

    def to_representation(self, version: DatasetVersion) -> dict:
        dataset = self.context["dataset"]
        return {
            "url": f"{dataset_url(dataset)}versions/{version.version}/",
            "dataset": dataset.path,
            "organization": dataset.organization.slug,
            "version": version.version,
            "status": version.status,
            "is_current": version.is_current,
            "key": version.key,
            "format": version.format,
            "content_type": version.content_type,
            "size_bytes": version.size_bytes,
            "sha256": version.sha256,
            "row_count": version.row_count,
            "schema": version.schema,
            "change_type": version.change_type,
            "breaking": version.breaking,
            "note": version.note,
            "parent": version.parent.version if version.parent_id else None,
            "deprecation": deprecation_facts(version),
            "published_by": version.published_by.get_username() if version.published_by else None,
            "published_at": _iso(version.published_at),
            "rows_ready": columnar.rows_ready(version),
        }


class InputsField(serializers.ListField):
    """`<layer>/<name>@<version>` entries: a list in JSON; in a form, repeated fields or
    one comma-separated field (or both)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(
            child=serializers.CharField(max_length=200), max_length=100, required=False, **kwargs
        )

    def to_internal_value(self, data):
        if isinstance(data, list) and all(isinstance(item, str) for item in data):
            data = [entry.strip() for item in data for entry in item.split(",") if entry.strip()]
        return super().to_internal_value(data)


class PublishOptionsInput(serializers.Serializer):
    version = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        help_text="Semantic version; default: the one the schema diff calls for.",
    )
    note = serializers.CharField(
        max_length=20000, required=False, allow_blank=True, help_text="Changelog note."
    )
    allow_breaking = serializers.BooleanField(
        default=False,
        help_text="Let a breaking change through with less than a major bump (the changelog "
        "records it); a dataset in strict mode refuses it anyway.",
    )
    draft = serializers.BooleanField(
        default=False,
        help_text="Publish without making it current; a steward promotes it later "
        "(implied by a pre-release version such as 1.3.0-rc.1).",
    )
    inputs = InputsField(
        help_text="The versions this one is built from, `<layer>/<name>@<version>` (or "
        "`<layer>/<name>` for its current version), in the same organisation."
    )
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        help_text="The file's SHA-256 in hex, as the publisher computed it: a file whose "
        "bytes do not match is refused (400 `digest_mismatch`, naming both digests).",
    )

    def validate_sha256(self, value: str) -> str:
        return value.lower()


class PublishJobQuery(serializers.Serializer):
    """`?wait=N`: hold the answer until the job is finished, at most N seconds."""

    wait = serializers.IntegerField(
        min_value=0,
        max_value=MAX_WAIT_SECONDS,
        required=False,
        default=0,
        help_text=f"Seconds (0-{MAX_WAIT_SECONDS}) to wait for the job to finish before "
        "answering; it answers as soon as the job is finished.",
    )


class PublishFromObjectInput(PublishOptionsInput):
    object_key = serializers.CharField(
        max_length=1024,
        help_text="An object already in the bucket, under `<org>/` of the dataset's organisation.",
    )


class PublishUploadInput(PublishOptionsInput):
    """Documents the multipart form (every field before `file`); the view reads it as a
    stream and checks the fields with `PublishOptionsInput`."""

    file = serializers.FileField(help_text="CSV, gzip-compressed CSV or Parquet. Last.")


class PublishJobSerializer(serializers.Serializer):
    id = serializers.UUIDField()
    url = serializers.CharField()
    dataset = serializers.CharField()
    organization = serializers.CharField()
    status = serializers.CharField(help_text="queued, running, succeeded, failed")
    outcome = serializers.CharField(help_text="published, unchanged, or empty until done")
    message = serializers.CharField()
    error_code = serializers.CharField()
    error_details = serializers.DictField(
        help_text="What a failure is about, e.g. `breaking_columns` for a refused version."
    )
    requested_version = serializers.CharField()
    version = serializers.CharField(allow_null=True, help_text="The version it made or kept.")
    bytes_total = serializers.IntegerField(allow_null=True)
    bytes_done = serializers.IntegerField()
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)

    def to_representation(self, job: PublishJob) -> dict:
        return {
            "id": str(job.pk),
            "url": f"{API_ROOT}/publish-jobs/{job.pk}/",
            "dataset": job.dataset.path,
            "organization": job.dataset.organization.slug,
            "status": job.status,
            "outcome": job.outcome,
            "message": job.message,
            "error_code": job.error_code,
            "error_details": job.error_details,
            "requested_version": job.requested_version,
            "version": job.version.version if job.version_id else None,
            "bytes_total": job.bytes_total,
            "bytes_done": job.bytes_done,
            "created_at": _iso(job.created_at),
            "started_at": _iso(job.started_at),
            "finished_at": _iso(job.finished_at),
        }


# --- Signed URLs, manifest, rows -------------------------------------------------------


class DatasetInfoSerializer(serializers.Serializer):
    row_count = serializers.IntegerField()
    size_bytes = serializers.IntegerField()
    last_updated = serializers.CharField(help_text="`2024-08-10T02:15:00.000Z`")
    sha256 = serializers.CharField(help_text="Check the downloaded bytes against it.")
    version = serializers.CharField()
    region = serializers.CharField(
        required=False, help_text="The region whose copy the URL reads (when regions are set up)."
    )


class SignedUrlSerializer(serializers.Serializer):
    signed_url = serializers.URLField(help_text="A GET of exactly this object, until expires_at.")
    expires_at = serializers.CharField(help_text="`2024-08-10T15:30:00.000Z`")
    dataset_info = DatasetInfoSerializer()
    cdn_url = serializers.URLField(
        required=False, help_text="Public datasets: the object at the region's CDN."
    )


class ManifestEntrySerializer(serializers.Serializer):
    latest_csv = serializers.CharField()
    date = serializers.CharField()
    row_count = serializers.IntegerField()
    sha256 = serializers.CharField()
    size_bytes = serializers.IntegerField()
    content_type = serializers.CharField()
    schema_version = serializers.CharField()
    last_modified = serializers.CharField()
    description = serializers.CharField(allow_blank=True)


class ManifestIntegritySerializer(serializers.Serializer):
    manifest_sha256 = serializers.CharField()
    total_size_bytes = serializers.IntegerField()


class ManifestSerializer(serializers.Serializer):
    generated_at = serializers.CharField()
    version = serializers.CharField()
    total_datasets = serializers.IntegerField()
    datasets = serializers.DictField(child=ManifestEntrySerializer())
    integrity = ManifestIntegritySerializer()


class RowsSerializer(serializers.Serializer):
    count = serializers.IntegerField(help_text="Rows in the version.")
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    version = serializers.CharField()
    columns = serializers.ListField(child=serializers.CharField())
    results = serializers.ListField(child=serializers.DictField())
