"""Forms of the notification pages. They turn what a person typed into the arguments of
the services in `notifications.services`; the services check and decide, and their
`InvalidInput` lands back on the field it names (`form_error_from`)."""

from __future__ import annotations

from functools import cache
from zoneinfo import available_timezones

from django import forms

from catalog.exceptions import InvalidInput
from notifications.models import SUBSCRIBABLE_TYPES, Channel, Frequency, NotificationType

WEEKDAYS = [
    (0, "Monday"),
    (1, "Tuesday"),
    (2, "Wednesday"),
    (3, "Thursday"),
    (4, "Friday"),
    (5, "Saturday"),
    (6, "Sunday"),
]
TYPE_CHOICES = [(t, NotificationType(t).label) for t in SUBSCRIBABLE_TYPES]


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    """Every IANA zone, sorted, for the picker (about 600; built once per process)."""
    return [(z, z.replace("_", " ")) for z in sorted(available_timezones())]


def form_error_from(form: forms.Form, exc: InvalidInput) -> None:
    """Puts a service's error on the field it names, or on the form as a whole."""
    field = (exc.details or {}).get("field")
    form.add_error(field if field in form.fields else None, exc.message)


class SubscriptionForm(forms.Form):
    """A new subscription (a dataset the viewer may see, or a glob) or an edit of one:
    on an edit the target is fixed, so those two fields are left out."""

    dataset = forms.ChoiceField(
        required=False, label="Dataset", help_text="One dataset you can see."
    )
    pattern = forms.CharField(
        required=False,
        max_length=200,
        label="Or a pattern",
        help_text="A glob over organisation/layer/name, e.g. acme/gold/* or */*/txn_*.",
    )
    types = forms.MultipleChoiceField(
        choices=TYPE_CHOICES,
        widget=forms.CheckboxSelectMultiple,
        label="Tell me about",
        error_messages={"required": "Choose at least one kind of notification."},
    )
    channels = forms.MultipleChoiceField(
        choices=Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Channels",
        help_text="None chosen: the channels in your preferences.",
    )
    frequency = forms.ChoiceField(
        choices=[("", "As in my preferences"), *Frequency.choices],
        required=False,
        label="How often",
    )
    threshold = forms.IntegerField(
        required=False,
        min_value=1,
        label="Usage threshold",
        help_text="Only with “Usage threshold”: notify at or above this many reads.",
    )

    def __init__(self, *args, datasets=(), editing: bool = False, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if editing:
            del self.fields["dataset"], self.fields["pattern"]
        else:
            self.fields["dataset"].choices = [("", "Choose a dataset")] + [
                (str(d.pk), f"{d.organization.slug}/{d.path}") for d in datasets
            ]

    def clean(self):
        data = super().clean()
        if "dataset" in self.fields and bool(data.get("dataset")) == bool(data.get("pattern")):
            raise forms.ValidationError("Choose a dataset or write a pattern (one of the two).")
        return data

    def service_arguments(self) -> dict:
        """What `subscription_create` / `subscription_update` take, but the target."""
        data = self.cleaned_data
        return {
            "types": data["types"],
            "channels": data["channels"],
            "frequency": data["frequency"],
            "threshold": data["threshold"],
        }


class PreferenceForm(forms.Form):
    channels = forms.MultipleChoiceField(
        choices=Channel.choices,
        widget=forms.CheckboxSelectMultiple,
        required=False,
        label="Channels",
        help_text="Where notifications reach you unless a subscription says otherwise.",
    )
    email = forms.EmailField(
        required=False, label="Email", help_text="Empty: your account's own address."
    )
    phone = forms.CharField(
        required=False,
        max_length=20,
        label="Phone (for SMS)",
        help_text="With the country code, e.g. +14155550100.",
        widget=forms.TextInput(attrs={"type": "tel", "autocomplete": "tel"}),
    )
    slack_webhook_url = forms.URLField(
        required=False, max_length=500, label="Slack incoming-webhook URL", assume_scheme="https"
    )
    frequency = forms.ChoiceField(choices=Frequency.choices, label="Default frequency")
    quiet_start = forms.TimeField(
        required=False,
        label="Quiet from",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    quiet_end = forms.TimeField(
        required=False,
        label="Quiet until",
        help_text="Nothing is sent in between (a range may cross midnight, e.g. 22:00 to 07:00).",
        widget=forms.TimeInput(attrs={"type": "time"}, format="%H:%M"),
    )
    time_zone = forms.ChoiceField(
        label="Time zone",
        error_messages={
            "invalid_choice": "%(value)s is not a known time zone (e.g. Europe/Paris)."
        },
    )
    digest_hour = forms.TypedChoiceField(
        coerce=int,
        choices=[(h, f"{h:02d}:00") for h in range(24)],
        label="Digests go out at",
    )
    digest_weekday = forms.TypedChoiceField(coerce=int, choices=WEEKDAYS, label="Weekly digests on")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["time_zone"].choices = time_zone_choices()


class WebhookEndpointForm(forms.Form):
    url = forms.URLField(
        max_length=500,
        label="URL",
        assume_scheme="https",
        help_text="An http(s) address on the public internet that accepts POST.",
    )
    description = forms.CharField(required=False, max_length=200, label="Description")
