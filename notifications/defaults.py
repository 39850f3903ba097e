"""The words each notification type starts with, on every channel.

Loaded into `Template` rows by a data migration, where stewards edit them; also the
fallback when a row is missing, so a deleted template never stops a notification. Seed
000 names four (dataset updated, new version, quality alert, usage threshold warning);
the other types follow the same pattern.
"""

from __future__ import annotations

_DATASET = "{{ organization }}/{{ dataset }}"

TEXTS: dict[str, tuple[str, str]] = {
    "dataset_updated": (
        f"{_DATASET} was updated to {{{{ version }}}}",
        f"{_DATASET} has new data: version {{{{ version }}}}"
        "{% if previous_version %} replaces {{ previous_version }}{% endif %}"
        "{% if row_count %} ({{ row_count }} rows){% endif %}.\n\n{{ url }}",
    ),
    "new_version": (
        f"New version of {_DATASET}: {{{{ version }}}}",
        f"Version {{{{ version }}}} of {_DATASET} is now current"
        "{% if change_type %} ({{ change_type }} change){% endif %}."
        "{% if note %}\n\n{{ note }}{% endif %}\n\n{{ url }}",
    ),
    "schema_changed": (
        f"{{% if breaking %}}Breaking schema change{{% else %}}Schema change{{% endif %}} "
        f"in {_DATASET} {{{{ version }}}}",
        f"The columns of {_DATASET} changed in {{{{ version }}}}"
        "{% if breaking %}, and the change is breaking{% endif %}.\n"
        "{% if added_columns %}Added: {{ added_columns|join:', ' }}.\n{% endif %}"
        "{% if removed_columns %}Removed: {{ removed_columns|join:', ' }}.\n{% endif %}"
        "{% if retyped_columns %}Retyped: {{ retyped_columns|join:', ' }}.\n{% endif %}"
        "{% if breaking_columns %}Breaking: {{ breaking_columns|join:', ' }}.\n{% endif %}"
        "\n{{ url }}",
    ),
    "quality_failed": (
        f"Quality alert on {_DATASET}",
        "{% if stale %}"
        f"{_DATASET} has had no new version for {{{{ hours_late }}}} hours past its "
        "{{ freshness_hours }}-hour freshness expectation (last: {{ version }})."
        "{% else %}"
        f"A file for {_DATASET} was refused: {{{{ message }}}}"
        "{% endif %}\n\n{{ url }}",
    ),
    "replication_completed": (
        f"{_DATASET} {{{{ version }}}} is replicated",
        f"Every replica of {_DATASET} {{{{ version }}}} is in place and verified"
        "{% if regions %} ({{ regions|join:', ' }}){% endif %}.\n\n{{ url }}",
    ),
    "usage_threshold": (
        f"Usage warning: {_DATASET} reached {{{{ value }}}} {{{{ metric }}}}",
        f"{_DATASET} reached {{{{ value }}}} {{{{ metric }}}}"
        "{% if period %} in {{ period }}{% endif %}"
        "{% if threshold %}, at or above your threshold of {{ threshold }}{% endif %}."
        "\n\n{{ url }}",
    ),
    "version_deprecated": (
        f"{_DATASET} {{{{ version }}}} is deprecated",
        f"Version {{{{ version }}}} of {_DATASET} is deprecated"
        "{% if sunset %} and may be archived after {{ sunset }}{% endif %}: {{ message }}"
        "\n\n{{ url }}",
    ),
    "version_rolled_back": (
        f"{_DATASET} was rolled back to {{{{ version }}}}",
        f"{_DATASET} is back at {{{{ version }}}} (it was {{{{ previous_version }}}})."
        "{% if reason %} Reason: {{ reason }}{% endif %}\n\n{{ url }}",
    ),
    "breaking_change": (
        f"{_DATASET} {{{{ version }}}} breaks what you read",
        f"You read {_DATASET} {{{{ previous_major }}}}.x recently. Version {{{{ version }}}} "
        "changes it in a breaking way"
        "{% if breaking_columns %} ({{ breaking_columns|join:', ' }}){% endif %}: check "
        "your code before it reads the new version.\n\n{{ url }}",
    ),
    "webhook_disabled": (
        "Your webhook endpoint was disabled",
        "Deliveries to {{ endpoint_url }} kept failing ({{ reason }}), so the endpoint was "
        "disabled. Fix the receiver, then enable it again.",
    ),
    "webhook_test": (
        "Test notification",
        "This is a test of your webhook endpoint {{ endpoint_url }}.",
    ),
}

HTML = (
    '<div style="font-family: sans-serif">'
    "<h2>{subject}</h2>"
    "<p>{body}</p>"
    '{{% if unsubscribe_url %}}<p style="color:#666;font-size:small">'
    '<a href="{{{{ unsubscribe_url }}}}">Unsubscribe</a></p>{{% endif %}}'
    "</div>"
)

CHANNELS = ["email", "webhook", "slack", "sms", "inapp"]


def default_for(notification_type: str, channel: str) -> dict[str, str]:
    """The default subject, body and (email) HTML of a type on a channel."""
    subject, body = TEXTS.get(notification_type, ("{{ type_label }}", "{{ summary }}"))
    if channel == "sms":
        body = subject + " {{ url }}"
    html = (
        HTML.format(subject=subject, body=body.replace("\n", "<br>")) if channel == "email" else ""
    )
    return {"subject": subject, "body": body, "html": html}


def all_defaults() -> list[dict[str, str]]:
    return [
        {"notification_type": t, "channel": c, **default_for(t, c)} for t in TEXTS for c in CHANNELS
    ]


DIGEST_SUBJECT = "{{ count }} notification{{ count|pluralize }} about your datasets"
DIGEST_BODY = "{% for item in items %}- {{ item.subject }}\n{% endfor %}"
