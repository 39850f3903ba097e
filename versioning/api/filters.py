"""FilterSets of the datasets API: one per model."""

from __future__ import annotations

import json
from datetime import UTC, timedelta

import django_filters
from django.db import connection
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Now

from catalog.models import Dataset, Layer, Visibility
from versioning.models import DatasetVersion, VersionStatus


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    """ISO 8601 in any offset Python accepts (up to 24 h), passed on in UTC: PostgreSQL
    refuses offsets past 15:59."""

    def filter(self, qs, value):
        if value is not None and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return super().filter(qs, value)


class DatasetFilterSet(django_filters.FilterSet):
    layer = django_filters.ChoiceFilter(choices=Layer.choices)
    organization = django_filters.CharFilter(
        field_name="organization__slug", max_length=64, label="Organisation slug."
    )
    tag = django_filters.CharFilter(method="filter_tag", max_length=50, label="Has this tag.")
    visibility = django_filters.ChoiceFilter(choices=Visibility.choices)
    updated_since = UtcDateTimeFilter(
        field_name="updated_at", lookup_expr="gte", label="Changed (or published) since."
    )
    stale = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_stale",
        label="true: a new version was expected (freshness_hours) and has not come.",
    )
    search = django_filters.CharFilter(
        method="filter_search", max_length=200, label="Words in name, title or description."
    )
    ordering = django_filters.OrderingFilter(
        fields=(
            ("name", "name"),
            ("layer", "layer"),
            ("organization__slug", "organization"),
            ("updated_at", "updated_at"),
            ("created_at", "created_at"),
            ("last_published_at", "last_published_at"),
        )
    )

    class Meta:
        model = Dataset
        fields = ["layer", "organization", "tag", "visibility", "updated_since", "stale"]

    def filter_tag(self, queryset, name, value):
        if connection.vendor == "postgresql":
            return queryset.filter(tags__contains=[value])
        # SQLite has no JSON containment: match the quoted value in the JSON text.
        return queryset.filter(tags__icontains=json.dumps(value))

    def filter_search(self, queryset, name, value):
        query = Q()
        for word in value.split():
            query &= (
                Q(name__icontains=word) | Q(title__icontains=word) | Q(description__icontains=word)
            )
        return queryset.filter(query)

    def filter_stale(self, queryset, name, value):
        # The deadline is the last publish plus freshness_hours; the view annotates
        # last_published_at from the current version.
        deadline = ExpressionWrapper(
            F("last_published_at")
            + ExpressionWrapper(
                F("freshness_hours") * Value(timedelta(hours=1)), output_field=DurationField()
            ),
            output_field=DateTimeField(),
        )
        queryset = queryset.alias(deadline=deadline)
        late = Q(freshness_hours__isnull=False) & (
            Q(last_published_at__isnull=True) | Q(deadline__lt=Now())
        )
        return queryset.filter(late) if value == "true" else queryset.exclude(late)


class VersionFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=VersionStatus.choices)
    is_current = django_filters.TypedChoiceFilter(
        choices=[("true", "true"), ("false", "false")], coerce=lambda v: v == "true"
    )
    published_since = UtcDateTimeFilter(field_name="published_at", lookup_expr="gte")

    class Meta:
        model = DatasetVersion
        fields = ["status", "is_current", "published_since"]
