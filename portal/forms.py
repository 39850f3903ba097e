"""Forms of the subscriber pages. They check what a person typed; the services decide."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.utils import timezone

from catalog.models import Dataset, Layer, TokenScope

EXPIRY_CHOICES = [
    ("7", "In 7 days"),
    ("30", "In 30 days"),
    ("90", "In 90 days"),
    ("366", "In a year"),
]


class CatalogFilterForm(forms.Form):
    """The catalog's search box and filters; the same names as the API's query."""

    search = forms.CharField(required=False, max_length=200, label="Search")
    _unknown = {"invalid_choice": "%(value)s is not one you can choose."}
    organization = forms.ChoiceField(required=False, label="Organisation", error_messages=_unknown)
    layer = forms.ChoiceField(
        required=False,
        choices=[("", "Any layer"), *Layer.choices],
        label="Layer",
        error_messages=_unknown,
    )
    tag = forms.ChoiceField(required=False, label="Tag", error_messages=_unknown)

    def __init__(self, *args, organizations=(), tags=(), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["organization"].choices = [("", "Any organisation")] + [
            (o.slug, o.name or o.slug) for o in organizations
        ]
        self.fields["tag"].choices = [("", "Any tag")] + [(t, t) for t in tags]


def _expiry(days: str):
    return timezone.now() + timedelta(days=int(days))


class TokenForm(forms.Form):
    name = forms.CharField(
        max_length=100, help_text="Where it is used, e.g. “laptop notebook” or “nightly ETL”."
    )
    scopes = forms.MultipleChoiceField(
        choices=TokenScope.choices,
        widget=forms.CheckboxSelectMultiple,
        initial=[TokenScope.READ],
        error_messages={"required": "Choose at least one scope."},
    )
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES, initial="90", label="Expires")

    def token_arguments(self) -> dict:
        """What `catalog.tokens.token_create` takes, from the valid form."""
        return {
            "name": self.cleaned_data["name"],
            "scopes": self.cleaned_data["scopes"],
            "expires_at": _expiry(self.cleaned_data["expires_in"]),
        }


class DeviceTokenForm(forms.Form):
    """A device token publishes to one dataset of an organisation the steward stewards."""

    name = forms.CharField(max_length=100, help_text="The device, e.g. “pi-042”.")
    dataset = forms.ModelChoiceField(queryset=Dataset.objects.none())
    expires_in = forms.ChoiceField(choices=EXPIRY_CHOICES[:3], initial="30", label="Expires")

    def __init__(self, *args, datasets=None, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if datasets is not None:
            self.fields["dataset"].queryset = datasets
        self.fields["dataset"].label_from_instance = lambda d: f"{d.organization.slug}: {d.path}"

    def token_arguments(self) -> dict:
        """What `catalog.tokens.token_create` takes, from the valid form."""
        return {
            "name": self.cleaned_data["name"],
            "dataset": self.cleaned_data["dataset"],
            "expires_at": _expiry(self.cleaned_data["expires_in"]),
        }


class InvitationAcceptForm(forms.Form):
    username = forms.CharField(max_length=150, help_text="Letters, digits and @ . + - _ only.")
    password1 = forms.CharField(
        label="Password", widget=forms.PasswordInput(attrs={"autocomplete": "new-password"})
    )
    password2 = forms.CharField(
        label="Password again",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned
