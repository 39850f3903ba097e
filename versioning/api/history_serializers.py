"""Shapes of a dataset's history in the API: changes, diffs, lineage, rollbacks and the
steward actions on versions.

Inputs check only form (a version number that parses, a depth in range, a date); what a
service refuses (a rollback to the current version, a sunset in the past, ...) it refuses
itself, with its own message. Outputs build their dicts by hand, as the rest of the API
does; the declared fields are for the OpenAPI schema.
"""

from __future__ import annotations

from rest_framework import serializers

from catalog.validators import validate_header_text
from versioning.manifest import isoformat_z
from versioning.models import DatasetRollback
from versioning.services.lifecycle import MAX_MESSAGE
from versioning.services.lineage import DIRECTIONS, MAX_DEPTH
from versioning.services.rollback import MAX_REASON


def _iso(moment) -> str | None:
    return None if moment is None else isoformat_z(moment)


VERSION_PATTERN = r"^[vV]?[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(?:-[0-9A-Za-z.-]{1,50})?$"


def version_field(**kwargs) -> serializers.RegexField:
    return serializers.RegexField(
        VERSION_PATTERN,
        max_length=64,
        error_messages={"invalid": "Not a version number such as 1.2.0."},
        **kwargs,
    )


# --- Inputs -----------------------------------------------------------------------------


class RollbackInput(serializers.Serializer):
    to = version_field(help_text="The version to make current again, e.g. 1.1.0.")
    reason = serializers.CharField(
        max_length=MAX_REASON, help_text="Why; subscribers and the audit log see it."
    )


class PromoteInput(serializers.Serializer):
    allow_breaking = serializers.BooleanField(
        default=False,
        help_text="If another version became current since the draft was published and the "
        "draft now breaks it with less than a major bump, let it through (recorded).",
    )


class DeprecateInput(serializers.Serializer):
    message = serializers.CharField(
        max_length=MAX_MESSAGE,
        validators=[validate_header_text],
        help_text="Why, and what to use instead; clients see it (one line, in the Warning "
        "header too).",
    )
    sunset = serializers.DateField(
        input_formats=["%Y-%m-%d"],
        help_text="`YYYY-MM-DD`, today or later: after it the version may stop being served.",
    )


# `from` is a Python keyword: the query's fields are declared through `type`.
DiffQuery = type(
    "DiffQuery",
    (serializers.Serializer,),
    {
        "from": version_field(help_text="The older side, e.g. 1.0.0."),
        "to": version_field(help_text="The newer side, e.g. 2.0.0."),
        "__doc__": "The two versions to compare; either order works.",
    },
)


class LineageQuery(serializers.Serializer):
    direction = serializers.ChoiceField(
        choices=list(DIRECTIONS),
        default="upstream",
        help_text="upstream: what the version was built from; downstream: what was built from it.",
    )
    depth = serializers.IntegerField(
        min_value=1, max_value=MAX_DEPTH, default=3, help_text=f"Steps, 1 to {MAX_DEPTH}."
    )


# --- Outputs ----------------------------------------------------------------------------


class ChangeEntrySerializer(serializers.Serializer):
    kind = serializers.CharField(
        help_text="initial, column_removed, column_retyped, nulls_appeared, column_added, "
        "columns_reordered, data_changed, breaking_allowed, note"
    )
    column = serializers.CharField(allow_null=True)
    old_type = serializers.CharField(allow_null=True)
    new_type = serializers.CharField(allow_null=True)
    breaking = serializers.BooleanField()
    text = serializers.CharField(help_text="Markdown.")


class RetypedSerializer(serializers.Serializer):
    name = serializers.CharField()
    old_type = serializers.CharField()
    new_type = serializers.CharField()
    breaking = serializers.BooleanField()


class NamedColumnSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()


class NullsAppearedSerializer(serializers.Serializer):
    name = serializers.CharField()
    nulls = serializers.IntegerField()


class DiffSerializer(serializers.Serializer):
    base_version = serializers.CharField(allow_null=True)
    target_version = serializers.CharField(allow_null=True)
    added = NamedColumnSerializer(many=True)
    removed = NamedColumnSerializer(many=True)
    retyped = RetypedSerializer(many=True)
    nulls_appeared = NullsAppearedSerializer(many=True)
    reordered = serializers.BooleanField()
    row_delta = serializers.IntegerField(allow_null=True)
    size_delta = serializers.IntegerField(allow_null=True)
    change_type = serializers.CharField(help_text="initial, patch, minor or major")
    breaking = serializers.BooleanField()
    breaking_columns = serializers.ListField(child=serializers.CharField())

    def to_representation(self, diff: dict) -> dict:
        return diff


class VersionChangesSerializer(serializers.Serializer):
    dataset = serializers.CharField()
    version = serializers.CharField()
    parent = serializers.CharField(allow_null=True, help_text="What it was compared with.")
    status = serializers.CharField()
    change_type = serializers.CharField()
    breaking = serializers.BooleanField()
    published_at = serializers.DateTimeField()
    published_by = serializers.CharField(allow_null=True)
    note = serializers.CharField(help_text="The steward's note, also the last entry.")
    entries = ChangeEntrySerializer(many=True)
    diff = DiffSerializer(allow_null=True, help_text="The diff against `parent`.")

    def to_representation(self, changes: dict) -> dict:
        return {
            **changes,
            "published_at": _iso(changes["published_at"]),
            "diff": changes["diff"] or None,
        }


class LineageNodeSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="`<layer>/<name>@<version>`")
    dataset = serializers.CharField()
    version = serializers.CharField()
    status = serializers.CharField()
    is_current = serializers.BooleanField()
    distance = serializers.IntegerField(help_text="Steps from the root; the root is 0.")


LineageEdgeSerializer = type(
    "LineageEdgeSerializer",
    (serializers.Serializer,),
    {
        "from": serializers.CharField(help_text="The input."),
        "to": serializers.CharField(help_text="The version built from it."),
    },
)


class LineageSerializer(serializers.Serializer):
    root = serializers.CharField()
    direction = serializers.CharField()
    depth = serializers.IntegerField()
    nodes = LineageNodeSerializer(many=True)
    edges = LineageEdgeSerializer(many=True)

    def to_representation(self, graph: dict) -> dict:
        return graph


class RollbackSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    dataset = serializers.CharField()
    from_version = serializers.CharField()
    to_version = serializers.CharField(help_text="The version current since.")
    sha256 = serializers.CharField(help_text="The SHA-256 the manifest lists now.")
    reason = serializers.CharField()
    actor = serializers.CharField(allow_blank=True)
    backup_manifest_key = serializers.CharField(
        allow_blank=True, help_text="The manifest in force before, kept in storage."
    )
    created_at = serializers.DateTimeField()

    def to_representation(self, rollback: DatasetRollback) -> dict:
        return {
            "id": rollback.pk,
            "dataset": rollback.dataset.path,
            "from_version": rollback.from_version.version,
            "to_version": rollback.to_version.version,
            "sha256": rollback.to_version.sha256,
            "reason": rollback.reason,
            "actor": rollback.actor_name,
            "backup_manifest_key": rollback.backup_manifest_key,
            "created_at": _iso(rollback.created_at),
        }
