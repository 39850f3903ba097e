"""What a user asks for: preferences, subscriptions, webhook endpoints.

Every write checks its input here, whichever door it came through (API, admin, tests),
and raises `InvalidInput` with a message that names the field and says what is wanted.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from datetime import datetime, time, timedelta
from functools import cache
from zoneinfo import available_timezones

import phonenumbers
from django.conf import settings
from django.core import signing as django_signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from catalog.exceptions import InvalidInput, NotFound
from catalog.models import Dataset
from catalog.selectors import dataset_get_by_path
from notifications import outbound, signing
from notifications.models import (
    SUBSCRIBABLE_TYPES,
    Channel,
    Frequency,
    NotificationType,
    Preference,
    Subscription,
    WebhookEndpoint,
)

logger = logging.getLogger(__name__)

DEFAULT_CHANNELS = [Channel.INAPP, Channel.EMAIL]
# What a user may change in their preferences.
PREFERENCE_FIELDS = (
    "channels",
    "email",
    "phone",
    "slack_webhook_url",
    "frequency",
    "quiet_start",
    "quiet_end",
    "time_zone",
    "digest_hour",
    "digest_weekday",
)
PATTERN = re.compile(r"^[a-z0-9_*?\[\]-]+/[a-z0-9_*?\[\]-]+/[a-z0-9_*?\[\]-]+$")


@cache
def _time_zones() -> frozenset[str]:
    return frozenset(available_timezones())


def _channels(value: list, *, field: str = "channels") -> list[str]:
    if not isinstance(value, list | tuple):
        raise InvalidInput(f"{field}: give a list of channels.", details={"field": field})
    unknown = [c for c in value if c not in Channel.values]
    if unknown:
        raise InvalidInput(
            f"{field}: unknown channel {unknown[0]!r}; use {', '.join(Channel.values)}.",
            details={"field": field, "choices": Channel.values},
        )
    return list(dict.fromkeys(value))


def phone_normalize(raw: str) -> str:
    """An E.164 number (+14155550100) that is a valid number somewhere; '' stays ''."""
    if not raw:
        return ""
    try:
        number = phonenumbers.parse(raw, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidInput(
            f"phone: {raw!r} is not a valid phone number; write it in E.164 form with the "
            "country code, e.g. +14155550100.",
            details={"field": "phone"},
        )
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def preference_get(*, user) -> Preference:
    pref, _ = Preference.objects.get_or_create(
        user=user, defaults={"channels": list(DEFAULT_CHANNELS)}
    )
    return pref


def preferences_of(user_ids) -> dict[int, Preference]:
    return {p.user_id: p for p in Preference.objects.filter(user_id__in=list(user_ids))}


def preference_update(*, user, **fields) -> Preference:
    """Changes the given fields of the user's preferences, checked together.

    A new email address is not used until it is confirmed from its mailbox: it waits as
    `email_pending`, and a link to confirm it is mailed to it (`preference_email_confirm`).
    Mail keeps going to the address used so far meanwhile. The account's own address, or
    an empty one (meaning it), needs no confirmation."""
    unknown = set(fields) - set(PREFERENCE_FIELDS)
    if unknown:
        raise InvalidInput(f"Unknown preference fields: {', '.join(sorted(unknown))}.")
    pref = preference_get(user=user)
    confirm_to = _email_change(pref, user, fields.pop("email")) if "email" in fields else ""
    for name, value in fields.items():
        setattr(pref, name, value)
    pref.channels = _channels(pref.channels or [])
    if pref.time_zone not in _time_zones():
        raise InvalidInput(
            f"time_zone: {pref.time_zone!r} is not a known IANA time zone (e.g. Europe/Paris).",
            details={"field": "time_zone"},
        )
    if pref.frequency not in Frequency.values:
        raise InvalidInput(
            f"frequency: use one of {', '.join(Frequency.values)}.",
            details={"field": "frequency"},
        )
    if (pref.quiet_start is None) != (pref.quiet_end is None):
        raise InvalidInput(
            "Quiet hours need both a start and an end (or neither).",
            details={"field": "quiet_end" if pref.quiet_end is None else "quiet_start"},
        )
    if pref.quiet_start is not None and _same_minute(pref.quiet_start, pref.quiet_end):
        raise InvalidInput(
            "Quiet hours that start and end at the same time would be all day or never; "
            "choose different times (a range may cross midnight, e.g. 22:00 to 07:00).",
            details={"field": "quiet_end"},
        )
    if not 0 <= pref.digest_hour <= 23 or not 0 <= pref.digest_weekday <= 6:
        raise InvalidInput(
            "digest_hour is 0 to 23 and digest_weekday 0 (Monday) to 6 (Sunday).",
            details={"field": "digest_hour"},
        )
    pref.phone = phone_normalize(pref.phone)
    if pref.slack_webhook_url:
        _url_field(pref.slack_webhook_url, field="slack_webhook_url")
    pref.save()
    if confirm_to:
        transaction.on_commit(lambda: _email_confirmation_send(user=user, address=confirm_to))
    return pref


EMAIL_CONFIRM_SALT = "notifications.email-confirm"


def _email_change(pref: Preference, user, value) -> str:
    """Applies an email address given in the preferences; returns the address a
    confirmation link must be mailed to, or "" when none is needed."""
    address = (value or "").strip()
    if address:
        try:
            validate_email(address)
        except ValidationError:
            raise InvalidInput(
                "email: enter a valid email address.", details={"field": "email"}
            ) from None
    if not address or address.lower() == (user.email or "").lower():
        pref.email, pref.email_pending = "", ""
        return ""
    if address.lower() == pref.email.lower():
        pref.email_pending = ""
        return ""
    if address.lower() == pref.email_pending.lower():
        return ""  # asked again: the link already sent still works
    pref.email_pending = address
    return address


def email_confirm_link(*, user, address: str) -> str:
    token = django_signing.dumps({"u": user.pk, "e": address}, salt=EMAIL_CONFIRM_SALT)
    path = reverse("notifications:email-confirm", args=[token])
    return settings.PUBLIC_BASE_URL.rstrip("/") + path


def _email_confirmation_send(*, user, address: str) -> None:
    link = email_confirm_link(user=user, address=address)
    context = {
        "user": user,
        "address": address,
        "link": link,
        "hours": settings.NOTIFY_EMAIL_CONFIRM_HOURS,
    }
    try:
        send_mail(
            subject="Confirm your address for Dataset Publisher notifications",
            message=render_to_string("notifications/email_confirm_email.txt", context),
            from_email=None,
            recipient_list=[address],
        )
    except Exception:
        # The link is a credential: log neither it nor the message.
        logger.exception("The address confirmation for user %s could not be sent.", user.pk)


def email_confirm_claims(token: str) -> dict:
    """The user id and address a confirmation link stands for; NotFound for a link that
    was altered or cut short, InvalidInput for one past its time."""
    try:
        return django_signing.loads(
            token, salt=EMAIL_CONFIRM_SALT, max_age=settings.NOTIFY_EMAIL_CONFIRM_HOURS * 3600
        )
    except django_signing.SignatureExpired:
        raise InvalidInput(
            "This confirmation link has expired. Set the address again in your "
            "notification preferences to get a new one."
        ) from None
    except django_signing.BadSignature:
        raise NotFound(
            "This confirmation link is not valid. It may have been cut short by your mail "
            "program; copy the whole link from the email."
        ) from None


def preference_email_confirm(*, token: str) -> Preference:
    """Makes the address a confirmation link names the user's notification address,
    if it is still the one waiting: a link for an address replaced since is refused."""
    claims = email_confirm_claims(token)
    with transaction.atomic():
        pref = Preference.objects.select_for_update().filter(user_id=claims["u"]).first()
        if pref is None or pref.email_pending.lower() != claims["e"].lower():
            raise InvalidInput(
                "This link is no longer valid: another address was set, or this one was "
                "confirmed already."
            )
        pref.email, pref.email_pending = claims["e"], ""
        pref.save(update_fields=["email", "email_pending", "updated_at"])
    return pref


def _same_minute(a: time, b: time) -> bool:
    return (a.hour, a.minute) == (b.hour, b.minute)


def _url_field(url: str, *, field: str) -> None:
    try:
        outbound.url_check(url)
    except outbound.UnsafeUrl as exc:
        raise InvalidInput(f"{field}: {exc.message}", details={"field": field}) from None


# --- Subscriptions --------------------------------------------------------------------


def _types(value) -> list[str]:
    if not isinstance(value, list | tuple) or not value:
        raise InvalidInput(
            "types: name at least one notification type.",
            details={"field": "types", "choices": SUBSCRIBABLE_TYPES},
        )
    unknown = [t for t in value if t not in SUBSCRIBABLE_TYPES]
    if unknown:
        raise InvalidInput(
            f"types: unknown notification type {unknown[0]!r}.",
            details={"field": "types", "choices": SUBSCRIBABLE_TYPES},
        )
    return list(dict.fromkeys(value))


def _checked(sub: Subscription) -> Subscription:
    sub.types = _types(sub.types)
    sub.channels = _channels(sub.channels or [])
    if sub.frequency and sub.frequency not in Frequency.values:
        raise InvalidInput(
            f"frequency: use one of {', '.join(Frequency.values)}.", details={"field": "frequency"}
        )
    if sub.threshold is not None and NotificationType.USAGE_THRESHOLD not in sub.types:
        raise InvalidInput(
            "threshold: only a subscription to usage_threshold takes a threshold.",
            details={"field": "threshold"},
        )
    if sub.pattern and not PATTERN.match(sub.pattern):
        raise InvalidInput(
            "pattern: write a glob over <org>/<layer>/<name>, e.g. acme/gold/* or */*/txn_*.",
            details={"field": "pattern"},
        )
    return sub


def subscription_create(
    *,
    user,
    dataset: str | Dataset | None = None,
    organization: str | None = None,
    pattern: str = "",
    types: list[str],
    channels: list[str] | None = None,
    frequency: str = "",
    threshold: int | None = None,
) -> Subscription:
    """Subscribes `user` to one dataset (`<layer>/<name>`, as they may see it) or to a
    pattern; a dataset the user may not see answers NotFound, as if it did not exist."""
    if bool(dataset) == bool(pattern):
        raise InvalidInput(
            "Name either a dataset (<layer>/<name>) or a pattern (<org>/<layer>/<name>).",
            details={"field": "dataset"},
        )
    if isinstance(dataset, str):
        org = None
        if organization:
            from catalog.models import Organization

            org = Organization.objects.filter(slug=organization).first()
            if org is None:
                raise NotFound(f"No dataset {dataset!r} in organisation {organization!r}.")
        dataset = dataset_get_by_path(path=dataset, organization=org, user=user)
    sub = _checked(
        Subscription(
            user=user,
            dataset=dataset,
            pattern=(pattern or "").strip().lower(),
            types=types,
            channels=channels or [],
            frequency=frequency or "",
            threshold=threshold,
        )
    )
    sub.save()
    return sub


def subscription_update(*, subscription: Subscription, **fields) -> Subscription:
    allowed = {"types", "channels", "frequency", "threshold", "is_active"}
    unknown = set(fields) - allowed
    if unknown:
        raise InvalidInput(
            f"These cannot change: {', '.join(sorted(unknown))}; make a new subscription."
        )
    for name, value in fields.items():
        setattr(subscription, name, value)
    _checked(subscription).save()
    return subscription


def pattern_matches(pattern: str, dataset: Dataset) -> bool:
    return fnmatch.fnmatchcase(f"{dataset.organization.slug}/{dataset.path}", pattern)


# --- Webhook endpoints ----------------------------------------------------------------


def webhook_endpoint_create(
    *, user, url: str, description: str = ""
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its `whsec_` secret, which is shown this once."""
    _url_field(url, field="url")
    endpoint = WebhookEndpoint.objects.create(
        user=user, url=url.strip(), description=description, secret_seed=signing.seed_new()
    )
    return endpoint, signing.secret_from_seed(endpoint.secret_seed)


def webhook_endpoint_update(*, endpoint: WebhookEndpoint, **fields) -> WebhookEndpoint:
    if "url" in fields:
        _url_field(fields["url"], field="url")
    for name in ("url", "description"):
        if name in fields:
            setattr(endpoint, name, fields[name])
    if fields.get("is_active") and not endpoint.is_active:
        # Enabling again starts a fresh count of failing days.
        endpoint.is_active, endpoint.disabled_at, endpoint.disabled_reason = True, None, ""
        endpoint.failing_since = None
    elif fields.get("is_active") is False:
        endpoint.is_active, endpoint.disabled_at = False, timezone.now()
        endpoint.disabled_reason = "Disabled by its owner."
    endpoint.save()
    return endpoint


def webhook_endpoint_rotate(
    *, endpoint: WebhookEndpoint, now: datetime | None = None
) -> tuple[WebhookEndpoint, str]:
    """A new secret; the old one keeps signing alongside for NOTIFY_WEBHOOK_ROTATION_HOURS
    so the receiver can switch over without missing a message."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
        locked.previous_secret_seed = locked.secret_seed
        locked.previous_expires_at = now + timedelta(hours=settings.NOTIFY_WEBHOOK_ROTATION_HOURS)
        locked.secret_seed = signing.seed_new()
        locked.save()
    return locked, signing.secret_from_seed(locked.secret_seed)


def unsubscribe_apply(*, user_id: int, subscription_id: int | None) -> str:
    """What an unsubscribe link does: ends the email channel of that subscription (the
    whole subscription if email was its only channel), or, for mail sent without one,
    turns email off in the user's preferences. Says what it did."""
    sub = Subscription.objects.filter(pk=subscription_id, user_id=user_id).first()
    if sub is not None:
        pref = Preference.objects.filter(user_id=user_id).first()
        current = sub.channels or (pref.channels if pref else list(DEFAULT_CHANNELS))
        channels = [c for c in current if c != Channel.EMAIL]
        if channels:
            sub.channels = channels
            sub.save(update_fields=["channels"])
            return f"you get no more emails about {sub.target}; its other channels stay on."
        sub.is_active = False
        sub.save(update_fields=["is_active"])
        return f"you are no longer subscribed to {sub.target}."
    pref = Preference.objects.filter(user_id=user_id).first()
    if pref is None:
        pref = Preference(user_id=user_id, channels=list(DEFAULT_CHANNELS))
    pref.channels = [c for c in pref.channels if c != Channel.EMAIL]
    pref.save()
    return "email notifications are turned off in your preferences."


def inbox_mark_read(*, user, item_ids: list[int] | None = None) -> int:
    """Marks the user's unread inbox items read (all of them when `item_ids` is None)."""
    from notifications.models import InboxItem

    items = InboxItem.objects.filter(user=user, read_at__isnull=True)
    if item_ids is not None:
        items = items.filter(pk__in=item_ids)
    return items.update(read_at=timezone.now())
