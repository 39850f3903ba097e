"""Shapes of the catalog's API: tokens."""

from __future__ import annotations

from django.utils import timezone
from rest_framework import serializers

from catalog.models import ApiToken, TokenScope


class TokenCreateInput(serializers.Serializer):
    name = serializers.CharField(max_length=100, help_text="What the token is for.")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=TokenScope.choices),
        required=False,
        allow_empty=False,
        min_length=1,
        max_length=3,
        help_text="read, publish, admin (admin includes the others). A device token is "
        "always publish only.",
    )
    expires_at = serializers.DateTimeField(
        required=False,
        help_text="When it stops working; at most 366 days ahead. Default: 90 days "
        "(personal), 30 days (device).",
    )
    dataset = serializers.RegexField(
        r"^[a-z]{1,16}/[a-z0-9][a-z0-9_-]{0,63}$",
        required=False,
        help_text="`<layer>/<name>`: makes a device token that may only publish to it.",
    )
    organization = serializers.SlugField(
        required=False, help_text="The dataset's organisation, when the name is in several."
    )

    def validate(self, attrs):
        if "organization" in attrs and "dataset" not in attrs:
            raise serializers.ValidationError(
                {"organization": "Only meaningful together with dataset."}
            )
        if "dataset" not in attrs and not attrs.get("scopes"):
            raise serializers.ValidationError({"scopes": "Name at least one scope."})
        return attrs


class TokenSerializer(serializers.ModelSerializer):
    dataset = serializers.SerializerMethodField()
    organization = serializers.SerializerMethodField()
    is_active = serializers.SerializerMethodField()
    scopes = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = ApiToken
        fields = [
            "id",
            "name",
            "kind",
            "scopes",
            "dataset",
            "organization",
            "prefix",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
        ]
        read_only_fields = fields

    def get_dataset(self, token) -> str | None:
        return token.dataset.path if token.dataset_id else None

    def get_organization(self, token) -> str | None:
        return token.dataset.organization.slug if token.dataset_id else None

    def get_is_active(self, token) -> bool:
        return token.revoked_at is None and (
            token.expires_at is None or token.expires_at > timezone.now()
        )


class TokenCreatedSerializer(TokenSerializer):
    token = serializers.SerializerMethodField(
        help_text="The secret. Shown this once; only its hash is kept."
    )

    class Meta(TokenSerializer.Meta):
        fields = [*TokenSerializer.Meta.fields, "token"]
        read_only_fields = fields

    def get_token(self, token) -> str:
        return self.context["raw_token"]
