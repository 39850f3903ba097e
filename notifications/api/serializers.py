"""Shapes of the notifications API: input serializers parse, the services check, output
serializers render. Field checks that need the database or the network (a visible
dataset, a safe URL, a valid phone number) live in the services, so every door applies
the same rules."""

from __future__ import annotations

from rest_framework import serializers

from notifications.models import (
    SUBSCRIBABLE_TYPES,
    Channel,
    Delivery,
    Frequency,
    InboxItem,
    Preference,
    Subscription,
    WebhookEndpoint,
)
from notifications.services.preferences import PREFERENCE_FIELDS


class PreferenceSerializer(serializers.ModelSerializer):
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False
    )
    quiet_start = serializers.TimeField(allow_null=True, required=False, format="%H:%M")
    quiet_end = serializers.TimeField(allow_null=True, required=False, format="%H:%M")
    time_zone = serializers.CharField(required=False, max_length=64)
    phone = serializers.CharField(required=False, allow_blank=True, max_length=40)
    # Plain text: empty when no address waits (an email format would refuse "").
    email_pending = serializers.CharField(
        read_only=True, help_text="A new address waiting to be confirmed from its mailbox."
    )

    class Meta:
        model = Preference
        fields = [*PREFERENCE_FIELDS, "email_pending", "updated_at"]
        read_only_fields = ["updated_at"]
        extra_kwargs = {"slack_webhook_url": {"validators": []}}


class SubscriptionSerializer(serializers.ModelSerializer):
    dataset = serializers.SerializerMethodField()
    organization = serializers.SerializerMethodField()

    class Meta:
        model = Subscription
        fields = [
            "id",
            "dataset",
            "organization",
            "pattern",
            "types",
            "channels",
            "frequency",
            "threshold",
            "is_active",
            "created_at",
        ]

    def get_dataset(self, obj) -> str | None:
        return obj.dataset.path if obj.dataset_id else None

    def get_organization(self, obj) -> str | None:
        return obj.dataset.organization.slug if obj.dataset_id else None


class SubscriptionCreateInput(serializers.Serializer):
    dataset = serializers.CharField(
        required=False, help_text="<layer>/<name> of one dataset you may see."
    )
    organization = serializers.SlugField(
        required=False, help_text="The dataset's organisation, when several use that name."
    )
    pattern = serializers.CharField(
        required=False, max_length=200, help_text="Or a glob over <org>/<layer>/<name>."
    )
    types = serializers.ListField(child=serializers.ChoiceField(choices=SUBSCRIBABLE_TYPES))
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices),
        required=False,
        help_text="Empty: your preferred channels.",
    )
    frequency = serializers.ChoiceField(
        choices=Frequency.choices, required=False, help_text="Empty: your default frequency."
    )
    threshold = serializers.IntegerField(required=False, min_value=0, allow_null=True)


class SubscriptionUpdateInput(serializers.Serializer):
    types = serializers.ListField(
        child=serializers.ChoiceField(choices=SUBSCRIBABLE_TYPES), required=False
    )
    channels = serializers.ListField(
        child=serializers.ChoiceField(choices=Channel.choices), required=False
    )
    frequency = serializers.ChoiceField(
        choices=[("", "default"), *Frequency.choices], required=False
    )
    threshold = serializers.IntegerField(required=False, min_value=0, allow_null=True)
    is_active = serializers.BooleanField(required=False)


class InboxItemSerializer(serializers.ModelSerializer):
    dataset = serializers.SerializerMethodField()
    read = serializers.SerializerMethodField()

    class Meta:
        model = InboxItem
        fields = [
            "id",
            "notification_type",
            "title",
            "body",
            "dataset",
            "read",
            "read_at",
            "created_at",
        ]

    def get_dataset(self, obj) -> str | None:
        return f"{obj.dataset.organization.slug}/{obj.dataset.path}" if obj.dataset_id else None

    def get_read(self, obj) -> bool:
        return obj.read_at is not None


class WebhookEndpointSerializer(serializers.ModelSerializer):
    # Checked by the service (scheme, credentials, where it resolves), which says why.
    url = serializers.CharField(max_length=500)

    class Meta:
        model = WebhookEndpoint
        fields = [
            "id",
            "url",
            "description",
            "is_active",
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "previous_expires_at",
            "created_at",
        ]
        read_only_fields = [
            "disabled_at",
            "disabled_reason",
            "failing_since",
            "previous_expires_at",
            "created_at",
        ]


class WebhookEndpointSecretSerializer(WebhookEndpointSerializer):
    secret = serializers.SerializerMethodField(
        help_text="The whsec_ signing secret: shown only in this answer."
    )

    class Meta(WebhookEndpointSerializer.Meta):
        fields = [*WebhookEndpointSerializer.Meta.fields, "secret"]

    def get_secret(self, obj) -> str:
        return self.context["secret"]


class DeliverySerializer(serializers.ModelSerializer):
    class Meta:
        model = Delivery
        fields = [
            "id",
            "message_id",
            "notification_type",
            "channel",
            "status",
            "attempts",
            "due_at",
            "sent_at",
            "last_error",
            "response_status",
            "created_at",
        ]


class ReplayInput(serializers.Serializer):
    delivery = serializers.IntegerField(
        required=False, min_value=1, help_text="Send this one delivery again."
    )
    since = serializers.DateTimeField(
        required=False,
        help_text="Or send again every failed or dead delivery to this endpoint made since then.",
    )

    def validate(self, data):
        if ("delivery" in data) == ("since" in data):
            raise serializers.ValidationError("Give either delivery or since.")
        return data


class ReplayResult(serializers.Serializer):
    replayed = serializers.IntegerField()


class MarkedResult(serializers.Serializer):
    marked = serializers.IntegerField()
