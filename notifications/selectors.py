"""Reads for pages: subscriber counts per dataset, a user's inbox, subscriptions and
webhook endpoints, and the header's unread count."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from django.db.models import Case, Count, QuerySet, Value, When

from catalog.models import Dataset
from notifications.models import (
    Delivery,
    DeliveryStatus,
    InboxItem,
    Subscription,
    WebhookEndpoint,
)
from notifications.services.preferences import pattern_matches


def _subscribers(datasets: Sequence[Dataset]) -> dict[int, set[int]]:
    """The users subscribed to each dataset, directly or by a pattern: two queries."""
    users: dict[int, set[int]] = defaultdict(set)
    ids = [d.pk for d in datasets]
    for dataset_id, user_id in Subscription.objects.filter(
        dataset_id__in=ids, is_active=True
    ).values_list("dataset_id", "user_id"):
        users[dataset_id].add(user_id)
    patterns = list(
        Subscription.objects.filter(dataset__isnull=True, is_active=True).values_list(
            "pattern", "user_id"
        )
    )
    if patterns:
        for dataset in datasets:
            for pattern, user_id in patterns:
                if pattern_matches(pattern, dataset):
                    users[dataset.pk].add(user_id)
    return users


def subscriber_counts(datasets: Sequence[Dataset]) -> dict[int, int]:
    """The registry column: how many users are subscribed to each dataset."""
    found = _subscribers(datasets)
    return {d.pk: len(found.get(d.pk, ())) for d in datasets}


def subscribers_panel_context(request, dataset: Dataset | None) -> dict | None:
    """The steward's panel: subscribers, by notification type, and the last week's
    deliveries by status."""
    if dataset is None:
        return None
    from datetime import timedelta

    from django.utils import timezone

    by_type: dict[str, int] = defaultdict(int)
    for sub in Subscription.objects.filter(dataset=dataset, is_active=True).only("types"):
        for t in sub.types:
            by_type[t] += 1
    since = timezone.now() - timedelta(days=7)
    statuses = dict(
        Delivery.objects.filter(dataset=dataset, created_at__gte=since)
        .values_list("status")
        .annotate(n=Count("id"))
        .values_list("status", "n")
    )
    return {
        "dataset": dataset,
        "count": subscriber_counts([dataset])[dataset.pk],
        "by_type": sorted(by_type.items()),
        "statuses": [(DeliveryStatus(s).label, n) for s, n in sorted(statuses.items())],
    }


def inbox_of(user) -> QuerySet[InboxItem]:
    return InboxItem.objects.filter(user=user).select_related("dataset__organization")


def subscribe_panel_context(request, dataset: Dataset | None) -> dict | None:
    """The subscriber's dataset page: a one-click subscribe (or unsubscribe) form for the
    signed-in viewer, and how many follow the dataset. Left out for anonymous visitors."""
    user = getattr(request, "user", None)
    if dataset is None or user is None or not user.is_authenticated:
        return None
    mine = Subscription.objects.filter(user=user, dataset=dataset, is_active=True).first()
    return {
        "dataset": dataset,
        "subscription": mine,
        "count": subscriber_counts([dataset])[dataset.pk],
        "next": request.get_full_path(),
    }


# --- The subscriber's own pages ---------------------------------------------------------

INBOX_ORDERS = {"unread": "Unread first", "newest": "Newest first"}


def inbox_ordered(user, *, order: str = "unread") -> QuerySet[InboxItem]:
    """The user's inbox, unread messages first (then newest) or simply newest first."""
    items = inbox_of(user)
    if order == "newest":
        return items.order_by("-created_at", "-id")
    unread_first = Case(When(read_at__isnull=True, then=Value(0)), default=Value(1))
    return items.order_by(unread_first, "-created_at", "-id")


def unread_count(user) -> int:
    return InboxItem.objects.filter(user=user, read_at__isnull=True).count()


def unread_badge_context(request) -> dict | None:
    """The header's unread count: one query, on every page a signed-in user sees."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    return {"unread": unread_count(user)}


def subscriptions_of(user) -> QuerySet[Subscription]:
    """The user's subscriptions, active ones first, with what their target names."""
    return (
        Subscription.objects.filter(user=user)
        .select_related("dataset__organization")
        .order_by("-is_active", "-created_at", "-id")
    )


def subscribable_datasets(user) -> QuerySet[Dataset]:
    """The datasets the user may see, for the subscription form's picker."""
    from catalog.selectors import datasets_visible_to

    return (
        datasets_visible_to(user)
        .select_related("organization")
        .order_by("organization__slug", "layer", "name")
    )


def webhook_endpoints_of(user) -> QuerySet[WebhookEndpoint]:
    return WebhookEndpoint.objects.filter(user=user).order_by("-created_at", "-id")


def endpoint_deliveries(endpoint: WebhookEndpoint, *, limit: int = 50) -> list[Delivery]:
    """The endpoint's most recent deliveries, newest first."""
    return list(
        Delivery.objects.filter(endpoint=endpoint)
        .defer("context")
        .order_by("-created_at", "-id")[:limit]
    )
