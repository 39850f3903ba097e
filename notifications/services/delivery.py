"""Sending what the fan-out queued: claims, transports, retries, digests, the tick.

A worker claims deliveries by one conditional update that sets a fresh `claim` and a
lease; every later write names that claim, so a worker whose lease ran out (it stalled,
the sweeper handed its rows to another) changes nothing. Before sending, the user's
right to see the dataset is checked again: access lost since the fan-out means no
message. A failure the transport calls temporary is tried again on the retry schedule
(notifications.schedule); a permanent one, or the last attempt, makes the delivery dead.

Everything that waits (quiet hours, digests, retries) is a row with a `due_at`, taken by
`deliveries_tick`, which beat runs every few seconds: no long ETA tasks in the broker.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from datetime import datetime, timedelta
from functools import lru_cache

from django.conf import settings
from django.core import signing as django_signing
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from catalog.models import Dataset
from catalog.queue import send_task
from catalog.selectors import users_who_may_see
from notifications import rendering, schedule
from notifications.channels import TRANSPORTS, Message, Transport, TransportError
from notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    NotificationType,
    WebhookEndpoint,
)
from notifications.services.dispatch import deliveries_dispatch
from notifications.services.preferences import preferences_of

logger = logging.getLogger(__name__)

S = DeliveryStatus
DIGEST_TASK = "notifications.send_digest"
UNSUBSCRIBE_SALT = "notifications.unsubscribe"


def unsubscribe_token(*, user_id: int, subscription_id: int | None) -> str:
    return django_signing.dumps({"u": user_id, "s": subscription_id}, salt=UNSUBSCRIBE_SALT)


@lru_cache(maxsize=1)
def _unsubscribe_url_pattern() -> str:
    path = reverse("notifications:unsubscribe", kwargs={"token": "TOKEN"})
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def unsubscribe_url(*, user_id: int, subscription_id: int | None) -> str:
    token = unsubscribe_token(user_id=user_id, subscription_id=subscription_id)
    return _unsubscribe_url_pattern().replace("TOKEN", token)


# --- Claiming ---------------------------------------------------------------------------


def _claim(filters: Q, *, now: datetime) -> tuple[uuid.UUID, list[Delivery]]:
    claim = uuid.uuid4()
    Delivery.objects.filter(filters).filter(
        Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    ).update(
        status=S.SENDING,
        claim=claim,
        lease_until=now + timedelta(seconds=settings.NOTIFY_LEASE_SECONDS),
        attempts=F("attempts") + 1,
    )
    rows = list(
        Delivery.objects.filter(claim=claim, status=S.SENDING)
        .select_related("endpoint", "user")
        .order_by("id")
    )
    return claim, rows


def _visible(rows: list[Delivery]) -> set[tuple[int, int | None]]:
    """(user, dataset) pairs whose user may still see the dataset; one query a dataset."""
    by_dataset: dict[int, set[int]] = defaultdict(set)
    ok: set[tuple[int, int | None]] = set()
    for d in rows:
        if d.dataset_id is None:
            ok.add((d.user_id, None))
        else:
            by_dataset[d.dataset_id].add(d.user_id)
    datasets = Dataset.objects.in_bulk(list(by_dataset))
    for dataset_id, user_ids in by_dataset.items():
        dataset = datasets.get(dataset_id)
        if dataset is None:
            continue
        for uid in users_who_may_see(dataset).filter(pk__in=user_ids).values_list("pk", flat=True):
            ok.add((uid, dataset_id))
    return ok


# --- Sending ----------------------------------------------------------------------------


# Stands for the recipient's unsubscribe link while a message is rendered once for all
# recipients of the same event; nothing in it is changed by HTML escaping.
_LINK = "https://unsubscribe.invalid/recipient-link"


class _Renderer:
    """Renders each (type, channel, event context) once per batch, and fills in each
    recipient's unsubscribe link after: a batch is usually one event's recipients."""

    def __init__(self) -> None:
        self.parts: dict[tuple[str, str], dict] = {}
        self.rendered: dict[tuple, rendering.Rendered] = {}

    def __call__(self, d: Delivery, unsubscribe: str = "") -> rendering.Rendered:
        key = (d.notification_type, d.channel)
        if key not in self.parts:
            self.parts[key] = rendering.template_for(*key)
        facts = json.dumps(d.context, sort_keys=True, default=str)
        if (key, facts) not in self.rendered:
            context = {**d.context, "unsubscribe_url": _LINK if d.channel == Channel.EMAIL else ""}
            self.rendered[key, facts] = rendering.render(self.parts[key], context)
        text = self.rendered[key, facts]
        if d.channel != Channel.EMAIL:
            return text
        return rendering.Rendered(
            subject=text.subject.replace(_LINK, unsubscribe),
            body=text.body.replace(_LINK, unsubscribe),
            html=text.html.replace(_LINK, unsubscribe),
        )


def _address(d: Delivery, prefs: dict) -> str:
    pref = prefs.get(d.user_id)
    if d.channel == Channel.EMAIL:
        return (pref.email if pref and pref.email else "") or d.user.email
    if d.channel == Channel.SMS:
        return pref.phone if pref else ""
    if d.channel == Channel.SLACK:
        return pref.slack_webhook_url if pref else ""
    return ""


def _message(d: Delivery, text: rendering.Rendered, prefs: dict, unsubscribe: str) -> Message:
    return Message(
        key=d.key,
        message_id=d.message_id,
        user_id=d.user_id,
        notification_type=d.notification_type,
        subject=text.subject,
        body=text.body,
        html=text.html,
        data={k: v for k, v in d.context.items() if k not in ("unsubscribe_url", "event_id")},
        event_type=f"notification.{d.notification_type}",
        address=_address(d, prefs),
        endpoint=d.endpoint,
        dataset_id=d.dataset_id,
        unsubscribe_url=unsubscribe,
    )


def deliveries_send(*, delivery_ids: list[int], now: datetime | None = None) -> int:
    """Sends the due deliveries among `delivery_ids` that nobody holds; returns how many
    went out. Safe to call twice: claimed or finished rows are skipped."""
    now = now or timezone.now()
    claim, rows = _claim(
        Q(pk__in=delivery_ids, status__in=[S.PENDING, S.FAILED], due_at__lte=now), now=now
    )
    if not rows:
        return 0
    visible = _visible(rows)
    prefs = preferences_of({d.user_id for d in rows})
    render = _Renderer()
    sent: dict[int | None, list[int]] = defaultdict(list)
    by_channel: dict[str, list[Delivery]] = defaultdict(list)
    for d in rows:
        if (d.user_id, d.dataset_id) not in visible:
            _finish(d, claim, S.DEAD, "The user may no longer see this dataset.", now=now)
        else:
            by_channel[d.channel].append(d)
    for channel, group in by_channel.items():
        transport: Transport = TRANSPORTS[channel]()
        transport.open()
        failing: dict[int, TransportError] = {}
        try:
            for d in group:
                if d.endpoint_id in failing:
                    # Its receiver just failed: the rest of its batch waits for the retry
                    # instead of waiting for the same timeout once per message.
                    _failed(d, claim, failing[d.endpoint_id], now=now)
                    continue
                unsubscribe = ""
                if channel == Channel.EMAIL:
                    unsubscribe = unsubscribe_url(
                        user_id=d.user_id, subscription_id=d.subscription_id
                    )
                message = _message(d, render(d, unsubscribe), prefs, unsubscribe)
                try:
                    status = transport.send(message)
                except TransportError as exc:
                    _failed(d, claim, exc, now=now)
                    if d.endpoint_id and not exc.permanent:
                        failing[d.endpoint_id] = exc
                    continue
                except Exception as exc:  # a bug must not leave the row claimed
                    logger.exception("Sending delivery %s failed", d.pk)
                    _failed(
                        d, claim, TransportError(f"Unexpected error: {type(exc).__name__}"), now=now
                    )
                    continue
                sent[status].append(d.pk)
                if d.endpoint_id and d.endpoint.failing_since:
                    WebhookEndpoint.objects.filter(pk=d.endpoint_id).update(failing_since=None)
        finally:
            transport.close()
    finished = timezone.now()
    for status, ids in sent.items():
        # One write per batch (per answer status), fenced by the claim.
        Delivery.objects.filter(pk__in=ids, claim=claim).update(
            status=S.SENT, sent_at=finished, lease_until=None, last_error="", response_status=status
        )
    return sum(len(ids) for ids in sent.values())


def _finish(d: Delivery, claim, status: str, error: str, *, now: datetime, **extra) -> bool:
    return bool(
        Delivery.objects.filter(pk=d.pk, claim=claim).update(
            status=status, last_error=error[:2000], lease_until=None, **extra
        )
    )


def _failed(d: Delivery, claim, exc: TransportError, *, now: datetime) -> None:
    delay = None if exc.permanent else schedule.retry_delay(d.attempts)
    if delay is None:
        _finish(d, claim, S.DEAD, exc.message, now=now, response_status=exc.status)
    else:
        _finish(
            d, claim, S.FAILED, exc.message, now=now, due_at=now + delay, response_status=exc.status
        )
    if d.endpoint_id:
        _endpoint_failed(d.endpoint, exc, now=now)


def _endpoint_failed(endpoint: WebhookEndpoint, exc: TransportError, *, now: datetime) -> None:
    """A 410 disables the endpoint at once; failing for NOTIFY_WEBHOOK_DISABLE_DAYS in a
    row disables it too, and its owner is told by email."""
    WebhookEndpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(
        failing_since=now
    )
    endpoint.refresh_from_db(fields=["failing_since", "is_active"])
    if not endpoint.is_active:
        return
    if exc.status == 410:
        reason = "the receiver answered 410 Gone"
    elif endpoint.failing_since and now - endpoint.failing_since >= timedelta(
        days=settings.NOTIFY_WEBHOOK_DISABLE_DAYS
    ):
        reason = f"failing for {settings.NOTIFY_WEBHOOK_DISABLE_DAYS} days in a row: {exc.message}"
    else:
        return
    disabled = WebhookEndpoint.objects.filter(pk=endpoint.pk, is_active=True).update(
        is_active=False, disabled_at=now, disabled_reason=reason[:300]
    )
    if disabled:
        _endpoint_disabled_notice(endpoint, reason, now=now)


def _endpoint_disabled_notice(endpoint: WebhookEndpoint, reason: str, *, now: datetime) -> None:
    context = {
        "type": NotificationType.WEBHOOK_DISABLED,
        "type_label": NotificationType.WEBHOOK_DISABLED.label,
        "endpoint_url": endpoint.url,
        "reason": reason,
    }
    delivery = Delivery.objects.create(
        key=f"webhook-disabled:{endpoint.pk}:{now.isoformat()}",
        user_id=endpoint.user_id,
        channel=Channel.EMAIL,
        notification_type=NotificationType.WEBHOOK_DISABLED,
        context=context,
        status=S.PENDING,
        due_at=now,
    )
    deliveries_dispatch([delivery])


# --- Digests ----------------------------------------------------------------------------


def digest_send(
    *, user_id: int, channel: str, endpoint_id: int | None = None, now: datetime | None = None
) -> int:
    """Sends one message gathering the user's due scheduled deliveries on `channel`;
    returns how many it held."""
    now = now or timezone.now()
    claim, rows = _claim(
        Q(
            user_id=user_id,
            channel=channel,
            endpoint_id=endpoint_id,
            status=S.SCHEDULED,
            due_at__lte=now,
        ),
        now=now,
    )
    if not rows:
        return 0
    visible = _visible(rows)
    keep = []
    for d in rows:
        if (d.user_id, d.dataset_id) in visible:
            keep.append(d)
        else:
            _finish(d, claim, S.DEAD, "The user may no longer see this dataset.", now=now)
    if not keep:
        return 0
    render = _Renderer()
    items = [render(d) for d in keep]
    text = rendering.render_digest(items) if len(items) > 1 else items[0]
    first = keep[0]
    prefs = preferences_of([user_id])
    unsubscribe = (
        unsubscribe_url(user_id=user_id, subscription_id=None) if channel == Channel.EMAIL else ""
    )
    message = _message(first, text, prefs, unsubscribe)
    message.key = f"digest:{first.key}"
    message.message_id = first.message_id
    message.data = {"items": [d.context for d in keep], "count": len(keep)}
    message.event_type = "notification.digest"
    transport = TRANSPORTS[channel]()
    transport.open()
    try:
        transport.send(message)
    except TransportError as exc:
        delay = None if exc.permanent else schedule.retry_delay(first.attempts)
        ids = [d.pk for d in keep]
        if delay is None:
            Delivery.objects.filter(pk__in=ids, claim=claim).update(
                status=S.DEAD, last_error=exc.message[:2000], lease_until=None
            )
        else:
            Delivery.objects.filter(pk__in=ids, claim=claim).update(
                status=S.SCHEDULED,
                last_error=exc.message[:2000],
                lease_until=None,
                due_at=now + delay,
            )
        return 0
    finally:
        transport.close()
    Delivery.objects.filter(pk__in=[d.pk for d in keep], claim=claim).update(
        status=S.SENT, sent_at=timezone.now(), lease_until=None, last_error="", digest_of=len(keep)
    )
    return len(keep)


# --- The tick ---------------------------------------------------------------------------


def deliveries_tick(*, now: datetime | None = None) -> dict[str, int]:
    """The periodic work, in one place: takes back what dead workers held, releases held
    deliveries whose quiet hours ended, sends again retries that are due and tasks the
    broker lost, and starts the digests that are due."""
    now = now or timezone.now()
    swept = Delivery.objects.filter(status=S.SENDING, lease_until__lt=now).update(
        status=S.FAILED, claim=None, lease_until=None, last_error="The worker stopped."
    )
    held = list(
        Delivery.objects.filter(status=S.HELD, due_at__lte=now).values_list("pk", flat=True)
    )
    if held:
        Delivery.objects.filter(pk__in=held, status=S.HELD).update(status=S.PENDING)
    lost_before = now - timedelta(seconds=settings.NOTIFY_REDISPATCH_SECONDS)
    due = list(
        Delivery.objects.filter(
            Q(pk__in=held)
            | Q(status=S.FAILED, due_at__lte=now)
            | Q(status=S.PENDING, due_at__lte=lost_before),
            status__in=[S.PENDING, S.FAILED],
        ).only("pk", "channel", "endpoint_id")[: settings.NOTIFY_TICK_LIMIT]
    )
    deliveries_dispatch(due)
    groups = (
        Delivery.objects.filter(status=S.SCHEDULED, due_at__lte=now)
        .values_list("user_id", "channel", "endpoint_id")
        .distinct()
    )
    digests = 0
    for user_id, channel, endpoint_id in groups[: settings.NOTIFY_TICK_LIMIT]:
        send_task(DIGEST_TASK, user_id, channel, endpoint_id)
        digests += 1
    return {"swept": swept, "released": len(held), "dispatched": len(due), "digests": digests}


# --- Replay and tests ---------------------------------------------------------------------


def deliveries_replay(*, deliveries, now: datetime | None = None) -> int:
    """Sends finished deliveries again, as new attempts of the same message (same
    webhook-id); deliveries still on their way are left alone."""
    now = now or timezone.now()
    ids = list(
        deliveries.filter(status__in=[S.SENT, S.FAILED, S.DEAD]).values_list("pk", flat=True)
    )
    Delivery.objects.filter(pk__in=ids, status__in=[S.SENT, S.FAILED, S.DEAD]).update(
        status=S.PENDING, attempts=0, due_at=now, claim=None, lease_until=None, last_error=""
    )
    deliveries_dispatch(Delivery.objects.filter(pk__in=ids).only("pk", "channel", "endpoint_id"))
    return len(ids)


def webhook_endpoint_test(*, endpoint: WebhookEndpoint, now: datetime | None = None) -> Delivery:
    """Queues a test message to `endpoint`, signed and retried like any other; a disabled
    endpoint gets nothing until it is enabled again."""
    now = now or timezone.now()
    delivery = Delivery.objects.create(
        key=f"test:{endpoint.pk}:{uuid.uuid4().hex}",
        user_id=endpoint.user_id,
        endpoint=endpoint,
        channel=Channel.WEBHOOK,
        notification_type=NotificationType.WEBHOOK_TEST,
        context={
            "type": NotificationType.WEBHOOK_TEST,
            "type_label": NotificationType.WEBHOOK_TEST.label,
            "endpoint_url": endpoint.url,
        },
        status=S.PENDING,
        due_at=now,
    )
    deliveries_dispatch([delivery])
    return delivery
