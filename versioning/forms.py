from __future__ import annotations

from django import forms


class PublishForm(forms.Form):
    file = forms.FileField(help_text="CSV (plain or .csv.gz) or Parquet.")
    version = forms.CharField(
        required=False,
        max_length=64,
        help_text="Semantic version, e.g. 1.4.0. Leave empty for the next minor version.",
    )
    note = forms.CharField(
        required=False,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Changelog note (markdown).",
    )
