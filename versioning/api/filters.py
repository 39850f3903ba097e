"""FilterSets of the datasets API: one per model."""

from __future__ import annotations

import json
from datetime import UTC

import django_filters
from django import forms
from django.db import connection
from django.db.models import Q
from django.utils import timezone
from django_filters.fields import IsoDateTimeField

from catalog.models import Dataset, Layer, Visibility
from versioning.api.serializers import freshness_cutoff
from versioning.models import DatasetVersion, VersionStatus


class UtcIsoDateTimeField(IsoDateTimeField):
    """ISO 8601 in any offset Python accepts (up to 24 h), converted to UTC while the
    form is cleaned: PostgreSQL refuses offsets past 15:59, and a moment whose UTC time
    falls outside years 1 to 9999 (`9999-12-31T23:59:59-14:00`) is refused as invalid
    input rather than overflowing later."""

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None or moment.tzinfo is None:
            return moment
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise forms.ValidationError(
                "This moment is outside the years 1 to 9999 in UTC.", code="invalid"
            ) from None


class UtcDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


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
        """Late: a freshness expectation and no publish since `now - freshness_hours`.

        SQLite cannot multiply an interval, so the deadline is not computed per row:
        the few distinct `freshness_hours` values in use are read first, and each gets
        its own cut-off moment, compared with the annotated `last_published_at`.
        """
        now = timezone.now()
        hours = (
            queryset.filter(freshness_hours__isnull=False)
            .order_by()
            .values_list("freshness_hours", flat=True)
            .distinct()
        )
        late = Q(freshness_hours__isnull=False, last_published_at__isnull=True)
        for value_hours in hours:
            cutoff = freshness_cutoff(now, value_hours)
            if cutoff is not None:
                late |= Q(freshness_hours=value_hours, last_published_at__lt=cutoff)
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
