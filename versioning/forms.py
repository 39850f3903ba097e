"""Forms of the steward admin: publish, deprecate, roll back."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from catalog.validators import validate_header_text
from versioning.options import PublishOptions


class PublishForm(forms.Form):
    file = forms.FileField(help_text="CSV (plain or .csv.gz) or Parquet.")
    version = forms.CharField(
        required=False,
        max_length=64,
        help_text="Semantic version, e.g. 1.4.0, or a pre-release such as 2.0.0-rc.1 (which "
        "publishes as a draft). Leave empty for the version the schema change calls for.",
    )
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Changelog note (markdown).",
    )
    inputs = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Lineage: the versions this file was built from, one per line, as "
        "<layer>/<name>@<version> (or <layer>/<name> for the current version).",
    )
    draft = forms.BooleanField(
        required=False, help_text="Publish as a draft: the current version stays until promoted."
    )
    allow_breaking = forms.BooleanField(
        required=False,
        label="Allow a breaking change",
        help_text="Accept a breaking change without a major version (the changelog records it).",
    )
    sha256 = forms.RegexField(
        r"^[0-9a-fA-F]{64}$",
        required=False,
        label="SHA-256",
        help_text="Optional: the file's SHA-256 (from sha256sum); other bytes are refused.",
        error_messages={"invalid": "A SHA-256 is 64 hex characters (0-9, a-f)."},
    )

    def clean_inputs(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["inputs"].splitlines() if line.strip()]

    def publish_options(self) -> PublishOptions:
        data = self.cleaned_data
        return PublishOptions(
            version=data["version"],
            note=data["note"],
            inputs=data["inputs"],
            draft=data["draft"],
            allow_breaking=data["allow_breaking"],
        )


class DeprecateForm(forms.Form):
    message = forms.CharField(
        validators=[validate_header_text],
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why, and what to use instead, on one line; API clients get it with every "
        "response.",
    )
    # Plain ISO text: a browser's date picker shows the locale's 03/01/2027 instead.
    sunset = forms.DateField(
        help_text="After this day the version may be archived (YYYY-MM-DD).",
        input_formats=["%Y-%m-%d"],
        widget=forms.DateInput(
            format="%Y-%m-%d",
            attrs={"placeholder": "YYYY-MM-DD", "pattern": r"\d{4}-\d{2}-\d{2}", "size": 10},
        ),
    )

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["sunset"].initial = timezone.localdate() + timedelta(days=90)


class RollbackForm(forms.Form):
    to = forms.ChoiceField(label="Make current", help_text="A published, active version.")
    reason = forms.CharField(
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Subscribers and the audit log see it.",
    )

    def __init__(self, *args, versions=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["to"].choices = [
            (v.version, f"{v.version} · published {v.published_at:%Y-%m-%d %H:%M}")
            for v in versions
        ]
