"""FilterSets of the catalog's API."""

from __future__ import annotations

import django_filters
from django.db.models import Q
from django.utils import timezone

from catalog.models import ApiToken, TokenKind


class TokenFilterSet(django_filters.FilterSet):
    kind = django_filters.ChoiceFilter(choices=TokenKind.choices)
    active = django_filters.ChoiceFilter(
        choices=[("true", "true"), ("false", "false")],
        method="filter_active",
        label="Only tokens that still work (true) or only dead ones.",
    )

    class Meta:
        model = ApiToken
        fields = ["kind", "active"]

    def filter_active(self, queryset, name, value):
        live = Q(revoked_at__isnull=True) & (
            Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())
        )
        return queryset.filter(live) if value == "true" else queryset.exclude(live)
