"""Who wants to hear about what, how, and every message on its way to them.

- `Preference`: one per user: channels, addresses, default frequency, quiet hours, the
  digest's hour and weekday.
- `Subscription`: a user's interest in one dataset or in a glob of them.
- `WebhookEndpoint`: where a user's webhooks go, and the seed of the signing secret.
- `Template`: the words of one notification type on one channel.
- `Delivery`: one event for one user on one channel (one endpoint for webhooks); the
  queue row that a worker claims with a lease, like a publish job. Its `key` is unique,
  so an event delivered twice by the outbox, or matched by two subscriptions, notifies
  once.
- `InboxItem`: the in-app channel's messages.
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxLengthValidator, MaxValueValidator, URLValidator
from django.db import models
from django.db.models import Q

from catalog.fields import EncryptedTextField
from catalog.models import Dataset, DomainEvent


class NotificationType(models.TextChoices):
    DATASET_UPDATED = "dataset_updated", "Dataset updated"
    NEW_VERSION = "new_version", "New version"
    SCHEMA_CHANGED = "schema_changed", "Schema changed"
    QUALITY_FAILED = "quality_failed", "Quality check failed"
    REPLICATION_COMPLETED = "replication_completed", "Replication completed"
    USAGE_THRESHOLD = "usage_threshold", "Usage threshold"
    VERSION_DEPRECATED = "version_deprecated", "Version deprecated"
    VERSION_ROLLED_BACK = "version_rolled_back", "Version rolled back"
    BREAKING_CHANGE = "breaking_change", "Breaking change to a version you read"
    WEBHOOK_DISABLED = "webhook_disabled", "Webhook endpoint disabled"
    WEBHOOK_TEST = "webhook_test", "Webhook test"


# Types a user may subscribe to; the others reach people without a subscription.
SUBSCRIBABLE_TYPES = [
    t
    for t in NotificationType.values
    if t not in ("breaking_change", "webhook_disabled", "webhook_test")
]


class Channel(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook"
    SLACK = "slack", "Slack"
    SMS = "sms", "SMS"
    INAPP = "inapp", "In-app inbox"


class Frequency(models.TextChoices):
    IMMEDIATE = "immediate", "Immediately"
    HOURLY = "hourly", "Hourly digest"
    DAILY = "daily", "Daily digest"
    WEEKLY = "weekly", "Weekly digest"


class Preference(models.Model):
    """A user's channels, addresses and rhythm. Quiet hours run from `quiet_start` to
    `quiet_end` in `time_zone` and may cross midnight (22:00 to 07:00)."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference"
    )
    channels = models.JSONField(
        default=list, blank=True, help_text="The channels the user accepts notifications on."
    )
    email = models.EmailField(
        blank=True, help_text="Confirmed from its mailbox; empty: the account's own address."
    )
    email_pending = models.EmailField(
        blank=True, help_text="An address set but not yet confirmed: mail does not go to it."
    )
    phone = models.CharField(max_length=20, blank=True, help_text="E.164, e.g. +14155550100.")
    # The URL is the Slack channel's credential: stored encrypted (catalog/fields.py).
    slack_webhook_url = EncryptedTextField(
        blank=True,
        validators=[URLValidator(schemes=["http", "https"]), MaxLengthValidator(500)],
        help_text="A Slack incoming-webhook URL; kept encrypted.",
    )
    frequency = models.CharField(
        max_length=16, choices=Frequency.choices, default=Frequency.IMMEDIATE
    )
    quiet_start = models.TimeField(null=True, blank=True)
    quiet_end = models.TimeField(null=True, blank=True)
    time_zone = models.CharField(max_length=64, default="UTC")
    digest_hour = models.PositiveSmallIntegerField(
        default=8, validators=[MaxValueValidator(23)], help_text="Local hour digests go out."
    )
    digest_weekday = models.PositiveSmallIntegerField(
        default=0,
        validators=[MaxValueValidator(6)],
        help_text="Weekly digests: 0 is Monday, 6 is Sunday.",
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(quiet_start__isnull=True) & Q(quiet_end__isnull=True))
                | (
                    Q(quiet_start__isnull=False)
                    & Q(quiet_end__isnull=False)
                    & ~Q(quiet_start=models.F("quiet_end"))
                ),
                name="preference_quiet_hours_valid",
                violation_error_message="Quiet hours need a start and an end that differ.",
            ),
            models.CheckConstraint(
                condition=Q(digest_hour__lte=23) & Q(digest_weekday__lte=6),
                name="preference_digest_time_valid",
                violation_error_message="The digest hour is 0 to 23, the weekday 0 to 6.",
            ),
        ]

    def __str__(self) -> str:
        return f"Preferences of {self.user}"


class Subscription(models.Model):
    """A user's interest: one dataset, or a glob over `<org>/<layer>/<name>` (`acme/gold/*`)
    matched within the organisations whose datasets the user may see. Channels empty means
    the user's preferred channels; frequency empty means their default."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="subscriptions"
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="subscriptions"
    )
    pattern = models.CharField(
        max_length=200, blank=True, help_text="A glob over <org>/<layer>/<name>, e.g. acme/gold/*."
    )
    types = models.JSONField(default=list, help_text="The notification types wanted.")
    channels = models.JSONField(default=list, blank=True)
    frequency = models.CharField(max_length=16, choices=Frequency.choices, blank=True)
    threshold = models.PositiveBigIntegerField(
        null=True, blank=True, help_text="Usage thresholds: notify at or above this count."
    )
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(dataset__isnull=False) & Q(pattern=""))
                | (Q(dataset__isnull=True) & ~Q(pattern="")),
                name="subscription_one_target",
                violation_error_message="A subscription names one dataset or one pattern.",
            ),
        ]
        indexes = [models.Index(fields=["dataset", "is_active"], name="subscription_dataset")]

    def __str__(self) -> str:
        return f"{self.user} on {self.target}"

    @property
    def target(self) -> str:
        if self.dataset_id:
            return f"{self.dataset.organization.slug}/{self.dataset.path}"
        return self.pattern


class WebhookEndpoint(models.Model):
    """A URL that receives signed webhooks (Standard Webhooks).

    The database keeps only a random seed per secret; the `whsec_` secret is derived from
    it with the deployment's SECRET_KEY (notifications.signing), so a copy of the database
    alone signs nothing. During a rotation the previous seed keeps signing until
    `previous_expires_at`, so receivers can switch without missing a message.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="webhook_endpoints"
    )
    url = models.URLField(max_length=500)
    description = models.CharField(max_length=200, blank=True)
    secret_seed = models.CharField(max_length=64, editable=False)
    previous_secret_seed = models.CharField(max_length=64, blank=True, editable=False)
    previous_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=300, blank=True)
    failing_since = models.DateTimeField(
        null=True, blank=True, help_text="The first failure since the last success."
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.url


class Template(models.Model):
    """The words of one notification type on one channel, in the Django template language,
    rendered with the event's context only (notifications.rendering)."""

    notification_type = models.CharField(max_length=32, choices=NotificationType.choices)
    channel = models.CharField(max_length=16, choices=Channel.choices)
    subject = models.CharField(
        max_length=300, help_text="One line: the email subject, the inbox title, the SMS."
    )
    body = models.TextField(help_text="Plain text (email text part, Slack, inbox, webhook).")
    html = models.TextField(blank=True, help_text="Email only: the HTML part.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["notification_type", "channel"]
        constraints = [
            models.UniqueConstraint(
                fields=["notification_type", "channel"],
                name="template_unique_type_channel",
                violation_error_message="There is already a template for this type and channel.",
            )
        ]

    def __str__(self) -> str:
        return f"{self.get_notification_type_display()} by {self.get_channel_display()}"

    def clean(self) -> None:
        """Each part must compile; the error names the part and the line."""
        from notifications.rendering import TemplateInvalid, template_check

        errors = {}
        for field in ("subject", "body", "html"):
            try:
                template_check(getattr(self, field) or "", field=field)
            except TemplateInvalid as exc:
                errors[field] = exc.message
        if errors:
            raise ValidationError(errors)


def message_id_new() -> str:
    """A webhook-id: unique per message, the same on every retry of it."""
    return f"msg_{uuid.uuid4().hex}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    HELD = "held", "Held (quiet hours)"
    SCHEDULED = "scheduled", "Scheduled (digest)"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed (will retry)"
    DEAD = "dead", "Dead (gave up)"


# A delivery in one of these has finished its way and may be sent again (replayed).
DELIVERY_FINISHED = (DeliveryStatus.SENT, DeliveryStatus.FAILED, DeliveryStatus.DEAD)


class Delivery(models.Model):
    """One notification for one user on one channel: the queue row.

    `due_at` is when a tick may next take it (the end of quiet hours, the digest time, the
    next retry). A worker claims it by a conditional update that sets `claim` and
    `lease_until`; every later change is fenced by that claim, so a worker that lost its
    lease changes nothing. `message_id` stays the same on every retry (webhook-id).
    """

    key = models.CharField(max_length=200, unique=True)
    event = models.ForeignKey(
        DomainEvent, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    subscription = models.ForeignKey(
        Subscription, on_delete=models.SET_NULL, null=True, blank=True, related_name="deliveries"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_deliveries"
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    version_id = models.BigIntegerField(null=True, blank=True)
    endpoint = models.ForeignKey(
        WebhookEndpoint,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="deliveries",
    )
    channel = models.CharField(max_length=16, choices=Channel.choices)
    notification_type = models.CharField(max_length=32, choices=NotificationType.choices)
    frequency = models.CharField(
        max_length=16, choices=Frequency.choices, default=Frequency.IMMEDIATE
    )
    context = models.JSONField(default=dict, help_text="The event's context for the template.")
    status = models.CharField(
        max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    due_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    claim = models.UUIDField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    message_id = models.CharField(max_length=64, default=message_id_new, editable=False)
    last_error = models.TextField(blank=True)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    digest_of = models.PositiveIntegerField(
        default=0, help_text="How many deliveries the digest message sent with this one held."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values),
                name="delivery_status_valid",
                violation_error_message="Unknown delivery status.",
            ),
            models.CheckConstraint(
                condition=~Q(channel=Channel.WEBHOOK) | Q(endpoint__isnull=False),
                name="delivery_webhook_has_endpoint",
                violation_error_message="A webhook delivery names its endpoint.",
            ),
        ]
        indexes = [
            models.Index(
                fields=["due_at"],
                name="delivery_waiting",
                condition=Q(status__in=["pending", "held", "scheduled", "failed", "sending"]),
            ),
            models.Index(fields=["user", "channel", "status"], name="delivery_user_channel"),
        ]

    def __str__(self) -> str:
        return f"{self.get_notification_type_display()} to {self.user} by {self.channel}"


class InboxItem(models.Model):
    """A message in a user's in-app inbox. An immediate in-app notification is written
    here directly by the fan-out (it has nothing to wait for or retry); held and digested
    ones go through `Delivery` first. Either way `key` keeps it to one row."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="inbox_items"
    )
    key = models.CharField(
        max_length=200, unique=True, help_text="The delivery's key: one inbox row per message."
    )
    dataset = models.ForeignKey(
        Dataset, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    notification_type = models.CharField(max_length=32, choices=NotificationType.choices)
    title = models.CharField(max_length=300)
    body = models.TextField(blank=True)
    read_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="inboxitem_user_unread")]

    def __str__(self) -> str:
        return self.title
