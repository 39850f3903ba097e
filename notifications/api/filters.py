"""FilterSets of the notifications API."""

from __future__ import annotations

import django_filters

from notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    InboxItem,
    NotificationType,
    Subscription,
)


class SubscriptionFilterSet(django_filters.FilterSet):
    dataset = django_filters.CharFilter(method="filter_dataset", label="<layer>/<name>")

    class Meta:
        model = Subscription
        fields = ["is_active", "frequency", "dataset"]

    def filter_dataset(self, queryset, name, value):
        layer, _, dataset_name = value.partition("/")
        return queryset.filter(dataset__layer=layer, dataset__name=dataset_name)


class InboxFilterSet(django_filters.FilterSet):
    unread = django_filters.BooleanFilter(field_name="read_at", lookup_expr="isnull")
    notification_type = django_filters.ChoiceFilter(choices=NotificationType.choices)

    class Meta:
        model = InboxItem
        fields = ["unread", "notification_type"]


class DeliveryFilterSet(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    channel = django_filters.ChoiceFilter(choices=Channel.choices)
    since = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")

    class Meta:
        model = Delivery
        fields = ["status", "channel", "since"]
