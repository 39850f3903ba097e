"""FilterSets of the replication API: one per model."""

from __future__ import annotations

import django_filters
from django.db.models import Q

from replication.models import CopyOutcome, CopyRun, Policy, Replica, ReplicaStatus, ReplicationRule


def _dataset_filter(prefix: str):
    def filter_dataset(self, queryset, name, value):
        layer, _, dataset = value.partition("/")
        return queryset.filter(
            **{f"{prefix}dataset__layer": layer, f"{prefix}dataset__name": dataset}
        )

    return filter_dataset


class RuleFilterSet(django_filters.FilterSet):
    organization = django_filters.CharFilter(field_name="organization__slug", max_length=64)
    policy = django_filters.ChoiceFilter(choices=Policy.choices)
    enabled = django_filters.BooleanFilter()
    region = django_filters.CharFilter(field_name="regions__code", max_length=64)
    search = django_filters.CharFilter(method="filter_search", max_length=200)

    class Meta:
        model = ReplicationRule
        fields = ["organization", "policy", "enabled", "region"]

    def filter_search(self, queryset, name, value):
        return queryset.filter(Q(name__icontains=value) | Q(pattern__icontains=value))


class ReplicaFilterSet(django_filters.FilterSet):
    dataset = django_filters.CharFilter(
        method="filter_dataset", label="`<layer>/<name>`", max_length=90
    )
    region = django_filters.CharFilter(field_name="region__code", max_length=64)
    status = django_filters.ChoiceFilter(choices=ReplicaStatus.choices)
    version = django_filters.CharFilter(field_name="version__version", max_length=64)
    organization = django_filters.CharFilter(
        field_name="version__dataset__organization__slug", max_length=64
    )

    class Meta:
        model = Replica
        fields = ["dataset", "region", "status", "version", "organization"]

    filter_dataset = _dataset_filter("version__")


class CopyRunFilterSet(django_filters.FilterSet):
    replica = django_filters.NumberFilter(field_name="replica_id")
    dataset = django_filters.CharFilter(
        method="filter_dataset", label="`<layer>/<name>`", max_length=90
    )
    region = django_filters.CharFilter(field_name="target_region__code", max_length=64)
    outcome = django_filters.ChoiceFilter(choices=CopyOutcome.choices)

    class Meta:
        model = CopyRun
        fields = ["replica", "dataset", "region", "outcome"]

    filter_dataset = _dataset_filter("replica__version__")
