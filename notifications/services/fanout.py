"""From an event to the deliveries it causes.

An outbox handler calls `event_fan_out` for each event that may interest someone. It
finds the subscriptions that match (a dataset, or a pattern over `<org>/<layer>/<name>`),
keeps the users who may see the dataset now (the catalog's own rule, read for all of them
in one query), and writes one delivery per user and channel. The delivery's key is unique
per event, user and channel, so the outbox delivering the event twice, or two
subscriptions of one user matching it, still notifies once.

An immediate in-app notification outside quiet hours has nothing to wait for: it is
written straight into the inbox, in bulk, which is what keeps a fan-out to ten thousand
subscribers close to the cost of inserting their inbox rows. Everything else becomes a
`Delivery` row, sent after commit by a worker (pending), or taken later by the periodic
tick (held for quiet hours, scheduled for a digest).
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from catalog.models import Dataset, DomainEvent
from catalog.selectors import users_who_may_see
from notifications import rendering, schedule
from notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    Frequency,
    InboxItem,
    NotificationType,
    Preference,
    Subscription,
    WebhookEndpoint,
)
from notifications.services.dispatch import deliveries_dispatch
from notifications.services.preferences import DEFAULT_CHANNELS, pattern_matches, preferences_of

T = NotificationType
_SIMPLE = {
    "version.promoted": [T.NEW_VERSION, T.DATASET_UPDATED],
    "publish.failed": [T.QUALITY_FAILED],
    "dataset.stale": [T.QUALITY_FAILED],
    "version.replicated": [T.REPLICATION_COMPLETED],
    "usage.threshold_crossed": [T.USAGE_THRESHOLD],
    "version.deprecated": [T.VERSION_DEPRECATED],
    "version.rolled_back": [T.VERSION_ROLLED_BACK],
}


def _version_facts(version_id) -> dict:
    """What a version row adds to an event: its diff, rows and note."""
    from versioning.models import DatasetVersion

    row = (
        DatasetVersion.objects.filter(pk=version_id)
        .values("diff", "row_count", "note", "sunset_date", "deprecation_message")
        .first()
    )
    if row is None:
        return {}
    return {
        "diff": row["diff"] or {},
        "row_count": row["row_count"],
        "note": row["note"],
        "sunset": row["sunset_date"].isoformat() if row["sunset_date"] else "",
        "message": row["deprecation_message"],
    }


def event_types(event: DomainEvent) -> list[str]:
    """The notification types `event` may cause, the most specific first: a subscriber
    to several of them gets the first they asked for, once."""
    if event.topic == "version.published":
        diff = event.payload.get("diff") or {}
        changed = any(diff.get(k) for k in ("added", "removed", "retyped", "nulls_appeared"))
        if changed or event.payload.get("breaking"):
            return [T.SCHEMA_CHANGED, T.NEW_VERSION, T.DATASET_UPDATED]
        return [T.NEW_VERSION, T.DATASET_UPDATED]
    return list(_SIMPLE.get(event.topic, []))


def event_enriched(event: DomainEvent) -> DomainEvent:
    """The event with its version's facts merged under the payload's own."""
    if event.topic.startswith("version.") and event.payload.get("version_id"):
        facts = _version_facts(event.payload["version_id"])
        merged = {**facts, **{k: v for k, v in event.payload.items() if v not in (None, "")}}
        event = DomainEvent(
            pk=event.pk,
            topic=event.topic,
            payload=merged,
            organization_id=event.organization_id,
            created_at=event.created_at,
        )
    return event


@dataclass
class Recipient:
    user_id: int
    notification_type: str
    subscription_id: int | None = None
    channels: list[str] = field(default_factory=list)
    frequency: str = ""
    forced: bool = False  # channels as given, not narrowed by preferences


_SUBSCRIPTION_FIELDS = ("id", "user_id", "types", "channels", "frequency", "threshold")


def _subscriptions_for(dataset: Dataset) -> Iterator[tuple]:
    """(id, user_id, types, channels, frequency, threshold) of the active subscriptions
    naming `dataset` or a pattern that matches it. Tuples, not model instances: a popular
    dataset has tens of thousands."""
    yield from Subscription.objects.filter(dataset=dataset, is_active=True).values_list(
        *_SUBSCRIPTION_FIELDS
    )
    for pattern, *row in Subscription.objects.filter(
        dataset__isnull=True, is_active=True
    ).values_list("pattern", *_SUBSCRIPTION_FIELDS):
        if pattern_matches(pattern, dataset):
            yield tuple(row)


def _recipients(
    event: DomainEvent, dataset: Dataset, types: list[str], subscriptions: Iterable[tuple]
) -> list[Recipient]:
    """Who `event` reaches through `subscriptions` (`_subscriptions_for(dataset)`), one
    notification type each, among those who may see the dataset."""
    value = event.payload.get("value", event.payload.get("count"))
    chosen: dict[int, Recipient] = {}
    for sub_id, user_id, sub_types, channels, frequency, threshold in subscriptions:
        wanted = [t for t in types if t in sub_types]
        if not wanted:
            continue
        below = value is None or value < (threshold or 0)
        if wanted[0] == T.USAGE_THRESHOLD and threshold is not None and below:
            continue
        rank = types.index(wanted[0])
        held = chosen.get(user_id)
        if held is None or rank < types.index(held.notification_type):
            chosen[user_id] = Recipient(user_id, wanted[0], sub_id, list(channels), frequency)
        elif rank == types.index(held.notification_type):
            held.channels = list(dict.fromkeys(held.channels + list(channels)))
    if not chosen:
        return []
    allowed = _may_see(dataset, list(chosen))
    return [r for uid, r in chosen.items() if uid in allowed]


def _may_see(dataset: Dataset, user_ids: list[int]) -> set[int]:
    """Which of `user_ids` may see `dataset`, by the catalog's rule, in chunks that keep
    each query's parameter list reasonable."""
    users = users_who_may_see(dataset)
    found: set[int] = set()
    for start in range(0, len(user_ids), 5000):
        chunk = user_ids[start : start + 5000]
        found.update(users.filter(pk__in=chunk).values_list("pk", flat=True))
    return found


def event_fan_out(*, event: DomainEvent, now: datetime | None = None) -> int:
    """Makes the deliveries `event` causes; returns how many notifications it made."""
    types = event_types(event)
    dataset_id = event.payload.get("dataset_id")
    if not types or not dataset_id:
        return 0
    dataset = Dataset.objects.select_related("organization").filter(pk=dataset_id).first()
    if dataset is None:
        return 0
    subscriptions = _subscriptions_for(dataset)
    first = next(subscriptions, None)
    if first is None:
        return 0  # nobody to tell: the version's facts are not read
    subscriptions = itertools.chain([first], subscriptions)
    event = event_enriched(event)
    types = event_types(event)  # the version's diff may make it a schema change
    recipients = _recipients(event, dataset, types, subscriptions)
    return deliveries_make(
        event=event,
        dataset=dataset,
        recipients=recipients,
        key_prefix=str(event.pk),
        now=now,
    )


def deliveries_make(
    *,
    event: DomainEvent,
    dataset: Dataset | None,
    recipients: list[Recipient],
    key_prefix: str,
    now: datetime | None = None,
    extra_context: dict | None = None,
) -> int:
    """Writes the deliveries (and immediate inbox rows) for `recipients`, keyed by
    `key_prefix`, user and channel, skipping keys that exist; dispatches after commit."""
    if not recipients:
        return 0
    now = now or timezone.now()
    user_ids = [r.user_id for r in recipients]
    prefs = preferences_of(user_ids)
    contexts: dict[str, dict] = {}
    rendered_inapp: dict[str, rendering.Rendered] = {}
    endpoints: dict[int, list[int]] = defaultdict(list)
    if any(Channel.WEBHOOK in _channels_of(r, prefs.get(r.user_id)) for r in recipients):
        for uid, eid in WebhookEndpoint.objects.filter(
            user_id__in=user_ids, is_active=True
        ).values_list("user_id", "pk"):
            endpoints[uid].append(eid)

    deliveries: list[Delivery] = []
    inbox: list[InboxItem] = []
    for r in recipients:
        pref = prefs.get(r.user_id)
        ntype = r.notification_type
        if ntype not in contexts:
            contexts[ntype] = {**rendering.event_context(event, ntype), **(extra_context or {})}
        frequency = r.frequency or (pref.frequency if pref else Frequency.IMMEDIATE)
        due, digest = schedule.send_time(pref, frequency, now)
        status = (
            DeliveryStatus.SCHEDULED
            if digest
            else (DeliveryStatus.HELD if due > now else DeliveryStatus.PENDING)
        )
        for channel in _channels_of(r, pref):
            key = f"{key_prefix}:{r.user_id}:{channel}"
            if channel == Channel.INAPP and status == DeliveryStatus.PENDING:
                if ntype not in rendered_inapp:
                    parts = rendering.template_for(ntype, Channel.INAPP)
                    rendered_inapp[ntype] = rendering.render(parts, contexts[ntype])
                text = rendered_inapp[ntype]
                inbox.append(
                    InboxItem(
                        key=key,
                        user_id=r.user_id,
                        dataset=dataset,
                        notification_type=ntype,
                        title=text.subject,
                        body=text.body,
                    )
                )
                continue
            targets = endpoints.get(r.user_id, []) if channel == Channel.WEBHOOK else [None]
            for endpoint_id in targets:
                deliveries.append(
                    Delivery(
                        key=f"{key}:{endpoint_id}" if endpoint_id else key,
                        event_id=event.pk,
                        subscription_id=r.subscription_id,
                        user_id=r.user_id,
                        dataset=dataset,
                        version_id=event.payload.get("version_id"),
                        endpoint_id=endpoint_id,
                        channel=channel,
                        notification_type=ntype,
                        frequency=frequency,
                        context=contexts[ntype],
                        status=status,
                        due_at=due,
                    )
                )
    with transaction.atomic():
        if deliveries:
            existing = set(
                Delivery.objects.filter(key__in=[d.key for d in deliveries]).values_list(
                    "key", flat=True
                )
            )
            deliveries = [d for d in deliveries if d.key not in existing]
            Delivery.objects.bulk_create(deliveries, batch_size=1000)
        if inbox:
            InboxItem.objects.bulk_create(inbox, batch_size=2000, ignore_conflicts=True)
        pending = [d for d in deliveries if d.status == DeliveryStatus.PENDING]
        if pending:
            transaction.on_commit(lambda: deliveries_dispatch(pending))
    return len(deliveries) + len(inbox)


def _channels_of(r: Recipient, pref: Preference | None) -> list[str]:
    """The subscription's channels among those the user accepts (all of theirs if it
    names none): a channel turned off in preferences is off everywhere."""
    if r.forced:
        return list(r.channels)
    accepted = list(pref.channels) if pref is not None else list(DEFAULT_CHANNELS)
    if r.channels:
        return [c for c in r.channels if c in accepted]
    return accepted


def breaking_change_reach(*, event: DomainEvent, now: datetime | None = None) -> int:
    """Tells the users who read the major a breaking version replaces (usage's
    `usage.breaking_change_consumers`), in the inbox and by email, subscribed or not;
    once per version and user, and not again on a channel their subscription used."""
    p = event.payload
    dataset = Dataset.objects.select_related("organization").filter(pk=p.get("dataset_id")).first()
    user_ids = [int(u) for u in p.get("user_ids") or []]
    if dataset is None or not user_ids or not p.get("version_id"):
        return 0
    allowed = _may_see(dataset, user_ids)
    told = set(
        Delivery.objects.filter(version_id=p["version_id"], user_id__in=allowed)
        .exclude(key__startswith="breaking:")
        .values_list("user_id", "channel")
    )
    published = DomainEvent.objects.filter(
        topic="version.published", payload__version_id=p["version_id"]
    ).values_list("pk", flat=True)
    for event_id in published:
        told |= {
            (uid, Channel.INAPP)
            for uid in InboxItem.objects.filter(
                key__startswith=f"{event_id}:", user_id__in=allowed
            ).values_list("user_id", flat=True)
        }
    recipients = []
    for uid in sorted(allowed):
        channels = [c for c in (Channel.INAPP, Channel.EMAIL) if (uid, c) not in told]
        if channels:
            # Breaking news reaches these users whatever they chose for subscriptions,
            # at once (quiet hours still hold it).
            recipients.append(
                Recipient(uid, T.BREAKING_CHANGE, None, channels, Frequency.IMMEDIATE, True)
            )
    return deliveries_make(
        event=event,
        dataset=dataset,
        recipients=recipients,
        key_prefix=f"breaking:{p['version_id']}",
        now=now,
    )
