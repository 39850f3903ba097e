"""Inputs and outputs of the usage API."""

from __future__ import annotations

import re
from datetime import date, timedelta

from django.utils import timezone
from rest_framework import serializers

from usage import partitions
from usage.reports import EXPORTS
from usage.selectors import GRANULARITIES, SERIES_FIELDS

MAX_WINDOW_DAYS = 366
MAX_REPORT_DAYS = 3 * 366
_WINDOW = re.compile(r"^([0-9]{1,4})d$")
_MONTH = re.compile(r"^([0-9]{4})-([0-9]{2})$")


class WindowField(serializers.CharField):
    """`<days>d`, from 1d to 366d."""

    def to_internal_value(self, data) -> int:
        text = super().to_internal_value(data)
        match = _WINDOW.match(text)
        days = int(match.group(1)) if match else 0
        if not 1 <= days <= MAX_WINDOW_DAYS:
            raise serializers.ValidationError(
                f"Unknown window {text[:20]!r}: use a number of days from 1d to "
                f"{MAX_WINDOW_DAYS}d, e.g. 7d, 30d or 90d."
            )
        return days


class DatasetUsageQuery(serializers.Serializer):
    window = WindowField(default=30, help_text="Days back from today, `1d` to `366d` (30d).")
    granularity = serializers.ChoiceField(
        choices=GRANULARITIES,
        default="day",
        error_messages={
            "invalid_choice": f"Unknown granularity {{input!r}}: use one of "
            f"{', '.join(GRANULARITIES)}."
        },
    )


class ReportDateField(serializers.CharField):
    """`YYYY-MM-DD`, or `YYYY-MM` for a whole month (its first day, or with `end` its last)."""

    def __init__(self, *, end: bool = False, **kwargs) -> None:
        self.end = end
        super().__init__(**kwargs)

    def to_internal_value(self, data) -> date:
        text = super().to_internal_value(data).strip()
        month = _MONTH.match(text)
        try:
            if month:
                first = date(int(month.group(1)), int(month.group(2)), 1)
                return partitions.month_add(first, 1) - timedelta(days=1) if self.end else first
            return date.fromisoformat(text)
        except ValueError:
            raise serializers.ValidationError(
                f"{text[:20]!r} is not a date: use YYYY-MM-DD or YYYY-MM."
            ) from None


class DatasetReportQuery(serializers.Serializer):
    begin_date = ReportDateField(
        required=False, help_text="YYYY-MM-DD or YYYY-MM; default the first of this month."
    )
    end_date = ReportDateField(
        end=True, required=False, help_text="YYYY-MM-DD or YYYY-MM (inclusive); default today."
    )
    dataset = serializers.RegexField(
        r"^[a-z]{1,16}/[a-z0-9][a-z0-9_-]{0,63}$",
        required=False,
        help_text="Only this `<layer>/<name>`.",
    )
    organization = serializers.SlugField(required=False, max_length=64)

    def validate(self, attrs):
        today = timezone.now().date()
        attrs.setdefault("end_date", today)
        attrs.setdefault("begin_date", attrs["end_date"].replace(day=1))
        if attrs["end_date"] < attrs["begin_date"]:
            raise serializers.ValidationError({"end_date": "end_date is before begin_date."})
        if (attrs["end_date"] - attrs["begin_date"]).days > MAX_REPORT_DAYS:
            raise serializers.ValidationError(
                {"end_date": f"A report covers at most {MAX_REPORT_DAYS} days."}
            )
        return attrs


class ExportQuery(DatasetReportQuery):
    table = serializers.ChoiceField(
        choices=sorted(EXPORTS),
        default="datasets",
        error_messages={
            "invalid_choice": f"Unknown table {{input!r}}: use one of {', '.join(sorted(EXPORTS))}."
        },
    )


class UsagePointSerializer(serializers.Serializer):
    period = serializers.DateField()
    p95_ms = serializers.IntegerField()

    def get_fields(self):
        fields = super().get_fields()
        for name in SERIES_FIELDS:
            fields[name] = serializers.IntegerField()
        return fields


class DatasetUsageSerializer(serializers.Serializer):
    dataset = serializers.CharField()
    organization = serializers.CharField()
    window = serializers.CharField()
    granularity = serializers.CharField()
    start = serializers.DateField()
    end = serializers.DateField()
    totals = serializers.DictField(child=serializers.IntegerField())
    series = UsagePointSerializer(many=True)
    versions = serializers.ListField(child=serializers.DictField())


class SummarySerializer(serializers.Serializer):
    datasets = serializers.IntegerField()
    versions = serializers.IntegerField()
    stale_datasets = serializers.IntegerField()
    downloads_today = serializers.IntegerField()
    errors_today = serializers.IntegerField()
    active_users_today = serializers.IntegerField()
    api_calls_today = serializers.IntegerField()
    top_datasets_7d = serializers.ListField(child=serializers.DictField())
