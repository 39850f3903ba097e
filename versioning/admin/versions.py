"""The version admin and the rollback log.

Stewards act on versions through the services: promote, deprecate, archive and restore
are actions on the version list, one version at a time, each refusal reported in the
steward's words."""

from __future__ import annotations

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html

from catalog import display
from catalog.admin import ReadOnlyAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.selectors import user_can_steward
from versioning.admin.common import ReadOnlyInline, ViewerOnObject, schema_table
from versioning.forms import DeprecateForm
from versioning.models import (
    ChangelogEntry,
    DatasetRollback,
    DatasetVersion,
    VersionInput,
    VersionStatus,
)
from versioning.services import (
    version_archive,
    version_deprecate,
    version_promote,
    version_restore,
)


class ChangelogInline(ReadOnlyInline, admin.TabularInline):
    model = ChangelogEntry
    fields = ["position", "kind", "column", "old_type", "new_type", "breaking_display", "entry"]
    readonly_fields = fields
    ordering = ["position"]
    verbose_name_plural = "changelog"

    @admin.display(description="breaking")
    def breaking_display(self, obj):
        return display.breaking_flag(obj.breaking)

    @admin.display(description="text")
    def entry(self, obj):
        return display.markdown_inline(obj.text)


class _VersionActions:
    """Admin actions that call the lifecycle services, one version at a time, and report
    each refusal in the steward's words."""

    def _each(self, request, queryset, label: str, call) -> None:
        actor = Actor.from_request(request, via="admin")
        done = []
        for version in queryset.select_related("dataset__organization"):
            try:
                call(version, actor)
            except DomainError as exc:
                self.message_user(request, exc.message, messages.ERROR)
            else:
                done.append(version.version)
        if done:
            self.message_user(request, f"{label}: {', '.join(done)}.", messages.SUCCESS)

    @admin.action(description="Promote the selected drafts (make current)")
    def promote(self, request, queryset):
        self._each(request, queryset, "Promoted", lambda v, a: version_promote(version=v, actor=a))

    @admin.action(description="Archive the selected versions")
    def archive(self, request, queryset):
        self._each(request, queryset, "Archived", lambda v, a: version_archive(version=v, actor=a))

    @admin.action(description="Restore the selected versions (undo archive or deprecation)")
    def restore(self, request, queryset):
        self._each(request, queryset, "Restored", lambda v, a: version_restore(version=v, actor=a))

    @admin.action(description="Deprecate the selected versions…")
    def deprecate(self, request, queryset):
        form = DeprecateForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            self._each(
                request,
                queryset,
                "Deprecated",
                lambda v, a: version_deprecate(
                    version=v,
                    message=form.cleaned_data["message"],
                    sunset=form.cleaned_data["sunset"],
                    actor=a,
                ),
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": "Deprecate versions",
            "form": form,
            "versions": queryset.select_related("dataset"),
            "action": "deprecate",
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/versioning/datasetversion/deprecate.html", context)

    @admin.action(description="Roll back to the selected version…")
    def roll_back_to(self, request, queryset):
        versions = list(queryset.select_related("dataset")[:2])
        if len(versions) != 1:
            self.message_user(
                request, "Select exactly one version to roll back to.", messages.ERROR
            )
            return None
        version = versions[0]
        url = reverse("admin:catalog_dataset_rollback", args=[version.dataset_id])
        return redirect(f"{url}?to={version.version}")


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ViewerOnObject, _VersionActions, ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "__str__",
        "status",
        "is_current",
        "change_type",
        "breaking_display",
        "rows",
        "size",
        "publisher",
        "published_at",
    ]
    list_filter = [
        "status",
        "is_current",
        "change_type",
        "breaking",
        "format",
        "dataset__layer",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["dataset__name", "version", "sha256", "key"]
    list_select_related = ["dataset__organization", "published_by"]
    date_hierarchy = "published_at"
    fields = [
        "dataset",
        "version",
        "status",
        "is_current",
        "change_type",
        "breaking_display",
        "diff_summary",
        "rows",
        "size",
        "format",
        "sha256",
        "key",
        "publisher",
        "published_at",
        "parent",
        "note_display",
        "deprecation_message",
        "sunset_date",
        "schema_display",
        "lineage",
    ]
    readonly_fields = fields
    inlines = [ChangelogInline]
    actions = ["promote", "deprecate", "archive", "restore", "roll_back_to"]
    change_form_template = "admin/versioning/datasetversion/change_form.html"

    def get_actions(self, request):
        # The versions list is read-only, but its actions are the stewards' (each one
        # checks the steward's organisation itself).
        actions = super().get_actions(request)
        if not (request.user.is_superuser or request.user.memberships.exists()):
            return {}
        return actions

    @admin.display(description="breaking")
    def breaking_display(self, obj):
        return display.breaking_flag(obj.breaking, obj.diff.get("breaking_columns"))

    @admin.display(description="rows", ordering="row_count")
    def rows(self, obj):
        return display.count(obj.row_count)

    @admin.display(description="size", ordering="size_bytes")
    def size(self, obj):
        return display.size(obj.size_bytes)

    @admin.display(description="published by", ordering="published_by__username")
    def publisher(self, obj):
        return display.person(obj.published_by, viewer=getattr(obj, "viewer", None))

    @admin.display(description="note")
    def note_display(self, obj):
        return display.markdown_inline(obj.note) if obj.note else "—"

    @admin.display(description="schema")
    def schema_display(self, obj):
        return schema_table(obj.schema)

    @admin.display(description="change against the parent")
    def diff_summary(self, obj):
        if not obj.parent_id:
            return "First version."
        url = reverse("admin:catalog_dataset_diff", args=[obj.dataset_id])
        return format_html(
            '{} {} · <a href="{}?from={}&amp;to={}">compare side by side</a>',
            obj.get_change_type_display(),
            display.breaking_flag(obj.breaking, obj.diff.get("breaking_columns")),
            url,
            obj.parent.version,
            obj.version,
        )

    @admin.display(description="lineage")
    def lineage(self, obj):
        edges = VersionInput.objects.filter(version=obj).select_related("upstream__dataset")
        outputs = VersionInput.objects.filter(upstream=obj).select_related("version__dataset")
        inputs = ", ".join(str(e.upstream) for e in edges) or "none recorded"
        used_by = ", ".join(str(e.version) for e in outputs) or "none recorded"
        return format_html("built from: {}<br>used by: {}", inputs, used_by)

    # --- The lifecycle as buttons on the version's page ----------------------------------

    def get_urls(self):
        return [
            path(
                "<int:object_id>/lifecycle/<str:step>/",
                self.admin_site.admin_view(self.lifecycle_view),
                name="versioning_datasetversion_lifecycle",
            ),
            path(
                "<int:object_id>/deprecate/",
                self.admin_site.admin_view(self.deprecate_view),
                name="versioning_datasetversion_deprecate",
            ),
        ] + super().get_urls()

    def _steps(self, version: DatasetVersion) -> list[str]:
        """The lifecycle steps that apply to `version` now."""
        if version.status == VersionStatus.DRAFT:
            return ["promote", "archive"]
        if version.status == VersionStatus.ARCHIVED:
            return ["restore"]
        if version.status == VersionStatus.DEPRECATED:
            return ["restore", "archive"]
        if version.is_current:
            return []
        return ["roll_back_to", "deprecate", "archive"]

    def _may_steward(self, request, version: DatasetVersion) -> bool:
        return request.user.is_superuser or user_can_steward(
            request.user, version.dataset.organization
        )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        version = self.get_object(request, object_id)
        steps = []
        if version is not None and self._may_steward(request, version):
            steps = self._steps(version)
        extra = {"version_steps": steps, "version_obj": version}
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def lifecycle_view(self, request, object_id: int, step: str):
        """Promote, archive, restore (POST) or open the rollback page for one version."""
        version = get_object_or_404(
            self.get_queryset(request).select_related("dataset__organization"), pk=object_id
        )
        here = reverse("admin:versioning_datasetversion_change", args=[version.pk])
        if step == "roll_back_to":
            url = reverse("admin:catalog_dataset_rollback", args=[version.dataset_id])
            return redirect(f"{url}?to={version.version}")
        services = {
            "promote": version_promote,
            "archive": version_archive,
            "restore": version_restore,
        }
        if request.method != "POST" or step not in services:
            return redirect(here)
        try:
            services[step](version=version, actor=Actor.from_request(request, via="admin"))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
        else:
            done = {"promote": "Promoted", "archive": "Archived", "restore": "Restored"}[step]
            self.message_user(request, f"{done} {version}.", messages.SUCCESS)
        return redirect(here)

    def deprecate_view(self, request, object_id: int):
        version = get_object_or_404(
            self.get_queryset(request).select_related("dataset__organization"), pk=object_id
        )
        here = reverse("admin:versioning_datasetversion_change", args=[version.pk])
        form = DeprecateForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                version_deprecate(
                    version=version,
                    message=form.cleaned_data["message"],
                    sunset=form.cleaned_data["sunset"],
                    actor=Actor.from_request(request, via="admin"),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(request, f"Deprecated {version}.", messages.SUCCESS)
                return redirect(here)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": f"Deprecate {version}",
            "form": form,
            "version": version,
            "back": here,
        }
        return TemplateResponse(
            request, "admin/versioning/datasetversion/deprecate_one.html", context
        )


@admin.register(DatasetRollback)
class DatasetRollbackAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "created_at",
        "dataset",
        "from_version_number",
        "to_version_number",
        "actor_name",
        "reason",
        "backup",
    ]
    list_filter = [("dataset__organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["dataset__name", "reason", "actor_name"]
    list_select_related = ["dataset__organization", "from_version", "to_version"]
    date_hierarchy = "created_at"

    @admin.display(description="manifest before (backup)")
    def backup(self, obj):
        name = obj.backup_manifest_key.rsplit("/", 1)[-1]
        return (
            format_html('<code title="{}">{}</code>', obj.backup_manifest_key, name)
            if name
            else "—"
        )

    @admin.display(description="from")
    def from_version_number(self, obj):
        return obj.from_version.version

    @admin.display(description="to")
    def to_version_number(self, obj):
        return obj.to_version.version
