"""What the subscriber pages read, each in a fixed number of queries.

Every read starts from `catalog.selectors.datasets_visible_to`, the rule the API uses,
so a page never shows (or admits the existence of) a dataset its viewer may not see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pyarrow as pa
from django.db.models import OuterRef, Prefetch, QuerySet, Subquery
from django.utils import timezone

from catalog.exceptions import DomainError, NotFound
from catalog.models import Dataset, Organization
from catalog.selectors import datasets_visible_to, user_can_steward
from versioning import columnar
from versioning.models import ChangelogEntry, DatasetVersion, VersionStatus

PREVIEW_ROWS = 20
VERSIONS_SHOWN = 25


def _current(field_name: str) -> Subquery:
    return Subquery(
        DatasetVersion.objects.filter(dataset=OuterRef("pk"), is_current=True).values(field_name)[
            :1
        ]
    )


def catalog_datasets(user) -> QuerySet[Dataset]:
    """The datasets `user` may see, with their current version's number, publish time and
    row count, for the catalog list (one query per page of it)."""
    return (
        datasets_visible_to(user)
        .annotate(
            current_version=_current("version"),
            last_published_at=_current("published_at"),
            current_rows=_current("row_count"),
        )
        .order_by("layer", "name", "organization__slug")
    )


def catalog_facets(user) -> dict[str, list]:
    """The organisations and tags among the datasets `user` may see, for the filters."""
    visible = datasets_visible_to(user)
    organizations = Organization.objects.filter(pk__in=visible.values("organization_id")).order_by(
        "slug"
    )
    tags: set[str] = set()
    for dataset_tags in visible.values_list("tags", flat=True):
        tags.update(t for t in dataset_tags or [] if isinstance(t, str))
    return {"organizations": list(organizations), "tags": sorted(tags)}


def freshness(dataset: Dataset, last_published_at: datetime | None, *, now=None) -> str:
    """ "fresh" or "stale" against the dataset's `freshness_hours`, "" without one."""
    if not dataset.freshness_hours:
        return ""
    if last_published_at is None:
        return "stale"
    now = now or timezone.now()
    due = last_published_at + timedelta(hours=dataset.freshness_hours)
    return "fresh" if now <= due else "stale"


def dataset_for_page(*, user, org: str, layer: str, name: str) -> Dataset:
    """The dataset at that address as `user` sees it; NotFound for a hidden one too."""
    found = (
        datasets_visible_to(user)
        .select_related("owner")
        .filter(organization__slug=org, layer=layer, name=name)
        .first()
    )
    if found is None:
        raise NotFound(f"No dataset {layer}/{name} in {org}.")
    return found


@dataclass
class DatasetPage:
    """Everything the dataset page shows about one dataset, read in a fixed number of
    queries whatever the number of versions, columns or links."""

    dataset: Dataset
    may_steward: bool
    current: DatasetVersion | None
    versions: list[DatasetVersion]
    more_versions: int
    upstream: list[DatasetVersion] = field(default_factory=list)
    downstream: list[DatasetVersion] = field(default_factory=list)
    freshness: str = ""


def dataset_page(*, user, dataset: Dataset) -> DatasetPage:
    may_steward = bool(
        getattr(user, "is_authenticated", False)
        and (user.is_superuser or user_can_steward(user, dataset.organization))
    )
    versions = DatasetVersion.objects.filter(dataset=dataset).select_related("published_by")
    if not may_steward:
        versions = versions.exclude(status__in=[VersionStatus.DRAFT, VersionStatus.ARCHIVED])
    total = versions.count()
    shown = list(
        versions.prefetch_related(
            Prefetch("changes", queryset=ChangelogEntry.objects.order_by("position"))
        ).order_by("-published_at", "-id")[:VERSIONS_SHOWN]
    )
    current = next((v for v in shown if v.is_current), None)
    if current is None:
        current = versions.filter(is_current=True).first()
    page = DatasetPage(
        dataset=dataset,
        may_steward=may_steward,
        current=current,
        versions=shown,
        more_versions=max(0, total - len(shown)),
        freshness=freshness(dataset, current.published_at if current else None),
    )
    if current is not None:
        page.upstream = _lineage(current, "upstream", user)
        page.downstream = _lineage(current, "downstream", user)
    return page


def _lineage(version: DatasetVersion, direction: str, user) -> list[DatasetVersion]:
    """The versions `version` was built from (upstream) or that were built from it
    (downstream), one step away, only of datasets `user` may see; one query."""
    if direction == "upstream":
        linked = DatasetVersion.objects.filter(outputs__version=version)
    else:
        linked = DatasetVersion.objects.filter(inputs__upstream=version)
    return list(
        linked.filter(dataset__in=datasets_visible_to(user).values("pk"))
        .select_related("dataset__organization")
        .order_by("dataset__layer", "dataset__name", "-published_at")
    )


@dataclass
class Preview:
    columns: list[str]
    rows: list[list[Any]]
    error: str = ""


def version_preview(*, version: DatasetVersion, limit: int = PREVIEW_ROWS) -> Preview:
    """The first rows of `version`, read as the rows API reads them (only those rows, from
    the columnar copy when there is one); an unreadable file gives a message, not an
    error page."""
    columns = [c["name"] for c in version.schema]
    try:
        table = columnar.rows_read(version=version, columns=columns, offset=0, limit=limit)
    except (pa.ArrowException, OSError, DomainError):
        return Preview(columns=columns, rows=[], error="The preview could not be read just now.")
    records = columnar.rows_as_dicts(table)
    return Preview(columns=columns, rows=[[r.get(c) for c in columns] for r in records])
