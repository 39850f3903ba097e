"""Serializers of the replication API: input serializers check shapes, services check
meaning (the rule checks live in `replication.services.rules`)."""

from __future__ import annotations

from rest_framework import serializers

from replication.models import (
    MAX_BANDWIDTH_MBPS,
    RULE_FIELDS,
    CopyRun,
    Policy,
    Region,
    Replica,
    ReplicationRule,
)


class RegionSerializer(serializers.ModelSerializer):
    storage = serializers.SerializerMethodField(help_text="s3, local or primary")

    class Meta:
        model = Region
        fields = [
            "code",
            "name",
            "is_primary",
            "is_active",
            "storage",
            "endpoint_url",
            "bucket",
            "cdn_base_url",
            "storage_price_gb_month",
            "transfer_price_gb",
        ]

    def get_storage(self, obj) -> str:
        return "primary" if obj.is_primary else ("local" if obj.local_path else "s3")


class RuleSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    regions = serializers.SlugRelatedField(slug_field="code", many=True, read_only=True)
    matched_datasets = serializers.SerializerMethodField(
        help_text="How many datasets the pattern matches now (0: it matches nothing yet)."
    )

    class Meta:
        model = ReplicationRule
        fields = [
            "id",
            "organization",
            "regions",
            *RULE_FIELDS,
            "next_run_at",
            "last_run_at",
            "matched_datasets",
            "created_at",
            "updated_at",
        ]

    def get_matched_datasets(self, obj) -> int:
        return self.context.get("matches", {}).get(obj.pk, 0)


class RuleInput(serializers.Serializer):
    organization = serializers.SlugField(
        required=False, max_length=64, help_text="Needed when you steward several."
    )
    name = serializers.CharField(required=False, allow_blank=True, max_length=200)
    pattern = serializers.CharField(max_length=300, help_text="A glob over <org>/<layer>/<name>.")
    regions = serializers.ListField(
        child=serializers.SlugField(max_length=64), min_length=1, max_length=50
    )
    policy = serializers.ChoiceField(choices=Policy.choices, default=Policy.IMMEDIATE)
    cron = serializers.CharField(required=False, allow_blank=True, max_length=100)
    timezone = serializers.CharField(required=False, max_length=64)
    bandwidth_mbps = serializers.IntegerField(
        required=False, help_text=f"1 to {MAX_BANDWIDTH_MBPS:,}; default 100."
    )
    retention_days = serializers.IntegerField(required=False, help_text="At least 1; default 90.")
    priority = serializers.IntegerField(required=False, min_value=-10_000, max_value=10_000)
    enabled = serializers.BooleanField(required=False)


class RuleUpdateInput(RuleInput):
    pattern = serializers.CharField(required=False, max_length=300)
    regions = serializers.ListField(
        child=serializers.SlugField(max_length=64), required=False, min_length=1, max_length=50
    )
    policy = serializers.ChoiceField(choices=Policy.choices, required=False)


class ReplicaSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="version.dataset.path")
    organization = serializers.CharField(source="version.dataset.organization.slug")
    version = serializers.CharField(source="version.version")
    region = serializers.CharField(source="region.code")
    rule = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = Replica
        fields = [
            "id",
            "dataset",
            "organization",
            "version",
            "region",
            "rule",
            "status",
            "key",
            "size_bytes",
            "bytes_copied",
            "bandwidth_mbps",
            "attempts",
            "method",
            "last_error",
            "sha256_measured",
            "queued_at",
            "started_at",
            "verified_at",
            "failed_at",
            "expired_at",
            "next_attempt_at",
        ]


class CopyRunSerializer(serializers.ModelSerializer):
    dataset = serializers.CharField(source="replica.version.dataset.path")
    version = serializers.CharField(source="replica.version.version")
    source_region = serializers.CharField(source="source_region.code")
    target_region = serializers.CharField(source="target_region.code")

    class Meta:
        model = CopyRun
        fields = [
            "id",
            "replica",
            "dataset",
            "version",
            "source_region",
            "target_region",
            "attempt",
            "method",
            "bytes_transferred",
            "duration_seconds",
            "throughput_bps",
            "outcome",
            "error",
            "started_at",
            "finished_at",
        ]


class ReplicateInput(serializers.Serializer):
    regions = serializers.ListField(
        child=serializers.SlugField(max_length=64),
        required=False,
        min_length=1,
        max_length=50,
        help_text="Region codes; default: every target of the rules matching the dataset.",
    )


class ReplicateSerializer(serializers.Serializer):
    dataset = serializers.CharField()
    version = serializers.CharField()
    queued = ReplicaSerializer(many=True)
    replicas = ReplicaSerializer(many=True)


class CostsQuery(serializers.Serializer):
    month = serializers.RegexField(
        r"^(19|20|21)[0-9]{2}-(0[1-9]|1[0-2])$",
        required=False,
        help_text="YYYY-MM (1900 to 2199); default this month.",
    )
    organization = serializers.SlugField(required=False, max_length=64)


class CostRowSerializer(serializers.Serializer):
    organization = serializers.CharField()
    dataset = serializers.CharField()
    region = serializers.CharField()
    transfer_bytes = serializers.IntegerField()
    transfer_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6)
    stored_gb_months = serializers.FloatField()
    storage_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6)
    total_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6)


class CostReportSerializer(serializers.Serializer):
    month = serializers.CharField()
    total_cost_usd = serializers.DecimalField(max_digits=20, decimal_places=6)
    rows = CostRowSerializer(many=True)


class RegionLagSerializer(serializers.Serializer):
    region = serializers.CharField(source="region.code")
    pending_copies = serializers.IntegerField()
    pending_bytes = serializers.IntegerField()
    oldest_pending_seconds = serializers.FloatField(allow_null=True)
    failed_copies = serializers.IntegerField()
    copies_30d = serializers.IntegerField()
    within_target_share = serializers.FloatField(
        allow_null=True, help_text="Of the last 30 days' copies, verified within 15 minutes."
    )
    minutes_over_target_30d = serializers.FloatField()
