"""The steward admin for datasets and their versions, publish jobs and manifests.

The dataset admin lives here, not in catalog, because a steward's dataset page is about
versions: the current version's facts, the version history, the "Publish new version"
page. Catalog stays free of any import of versioning.

Stewards act on versions through the services: promote, deprecate, archive and restore
are actions on the version list; a rollback has its own page per dataset (a target and a
reason), which the "Roll back to this version" action opens pre-filled. The history page
lists every version with its classification and deltas; the diff page puts two versions'
schemas side by side.
"""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.formats import number_format
from django.utils.html import format_html

from catalog.admin import OrganizationScopedAdmin, ReadOnlyAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.models import Dataset
from versioning.forms import DeprecateForm, PublishForm, RollbackForm
from versioning.models import (
    ChangelogEntry,
    DatasetRollback,
    DatasetVersion,
    JobSource,
    Manifest,
    PublishJob,
    VersionInput,
    VersionStatus,
)
from versioning.services import (
    dataset_rollback,
    publish_job_create,
    version_archive,
    version_deprecate,
    version_promote,
    version_restore,
    versions_diff,
)


def _current(field: str) -> Subquery:
    return Subquery(
        DatasetVersion.objects.filter(dataset=OuterRef("pk"), is_current=True).values(field)[:1]
    )


class VersionInline(admin.TabularInline):
    model = DatasetVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = [
        "version",
        "status",
        "is_current",
        "change_type",
        "breaking",
        "row_count",
        "size_bytes",
        "sha256",
        "published_by",
        "published_at",
    ]
    readonly_fields = fields
    ordering = ["-published_at"]

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Stewards hold no model permissions; the parent admin scopes what they see.
        return True


@admin.register(Dataset)
class DatasetAdmin(OrganizationScopedAdmin):
    list_display = [
        "path_display",
        "organization",
        "visibility",
        "current_version",
        "rows",
        "size",
        "updated_at",
    ]
    list_filter = [
        "layer",
        "visibility",
        ("organization", admin.RelatedOnlyFieldListFilter),
        "update_frequency",
    ]
    search_fields = ["name", "title", "description"]
    list_select_related = ["organization"]
    readonly_fields = ["created_at", "updated_at", "current_facts"]
    fields = [
        "organization",
        "layer",
        "name",
        "title",
        "description",
        "tags",
        "visibility",
        "update_frequency",
        "freshness_hours",
        "owner",
        "compatibility",
        "current_facts",
        "created_at",
        "updated_at",
    ]
    inlines = [VersionInline]
    change_form_template = "admin/versioning/dataset/change_form.html"

    def get_fields(self, request, obj=None):
        fields = list(super().get_fields(request, obj))
        # New datasets start in the default mode (major); it is changed once they exist.
        return fields if obj else [f for f in fields if f != "compatibility"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(
                current_version=_current("version"),
                current_rows=_current("row_count"),
                current_size=_current("size_bytes"),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        # The address of a published dataset is part of its immutable keys.
        return fields + ["organization", "layer", "name"] if obj else fields

    @admin.display(description="dataset", ordering="name")
    def path_display(self, obj):
        return obj.path

    @admin.display(description="current version")
    def current_version(self, obj):
        return obj.current_version or "—"

    @admin.display(description="rows", ordering="current_rows")
    def rows(self, obj):
        return (
            number_format(obj.current_rows, force_grouping=True)
            if obj.current_rows is not None
            else "—"
        )

    @admin.display(description="size", ordering="current_size")
    def size(self, obj):
        from django.template.defaultfilters import filesizeformat

        return filesizeformat(obj.current_size) if obj.current_size is not None else "—"

    @admin.display(description="current version")
    def current_facts(self, obj):
        version = DatasetVersion.objects.filter(dataset=obj, is_current=True).first()
        if version is None:
            return "Nothing published yet."
        columns = ", ".join(f"{c['name']} ({c['type']})" for c in version.schema)
        return format_html(
            "<b>{}</b> · {} rows · {} bytes<br>key <code>{}</code><br>SHA-256 <code>{}</code>"
            "<br>columns: {}",
            version.version,
            number_format(version.row_count, force_grouping=True),
            number_format(version.size_bytes, force_grouping=True),
            version.key,
            version.sha256,
            columns,
        )

    def get_urls(self):
        views = [
            ("publish", self.publish_view),
            ("history", self.history_view),
            ("diff", self.diff_view),
            ("rollback", self.rollback_view),
        ]
        return [
            path(
                f"<int:object_id>/{name}/",
                self.admin_site.admin_view(view),
                name=f"catalog_dataset_{name}",
            )
            for name, view in views
        ] + super().get_urls()

    def _context(self, request, dataset: Dataset, title: str, **extra) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": dataset,
            "dataset": dataset,
            "title": title,
            **extra,
        }

    def history_view(self, request, object_id: int):
        """Every version with its status, classification, publisher and deltas; then the
        rollbacks. Two queries whatever the number of versions."""
        dataset = get_object_or_404(self.get_queryset(request), pk=object_id)
        versions = list(
            DatasetVersion.objects.filter(dataset=dataset)
            .select_related("published_by", "parent")
            .order_by("-published_at", "-id")
        )
        rollbacks = DatasetRollback.objects.filter(dataset=dataset).select_related(
            "from_version", "to_version"
        )
        rows = [
            {
                "version": v,
                "row_delta": v.diff.get("row_delta"),
                "size_delta": v.diff.get("size_delta"),
                "breaking_columns": v.diff.get("breaking_columns", []),
            }
            for v in versions
        ]
        context = self._context(
            request,
            dataset,
            f"Version history of {dataset.path}",
            rows=rows,
            rollbacks=rollbacks,
            may_steward=self.has_change_permission(request, dataset),
        )
        return TemplateResponse(request, "admin/versioning/dataset/history.html", context)

    def diff_view(self, request, object_id: int):
        """Two versions' schemas side by side (`?from=1.0.0&to=2.0.0`; by default the
        current version against its parent)."""
        dataset = get_object_or_404(self.get_queryset(request), pk=object_id)
        numbers = list(
            DatasetVersion.objects.filter(dataset=dataset)
            .order_by("-published_at", "-id")
            .values_list("version", flat=True)
        )
        current = DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()
        default_to = current.version if current else (numbers[0] if numbers else "")
        default_from = (
            current.parent.version
            if current and current.parent_id
            else (numbers[1] if len(numbers) > 1 else default_to)
        )
        old = request.GET.get("from") or default_from
        new = request.GET.get("to") or default_to
        diff, rows, error = None, [], ""
        if old and new:
            try:
                diff = versions_diff(dataset=dataset, from_version=old, to_version=new)
            except DomainError as exc:
                error = exc.message
            else:
                rows = _side_by_side(dataset, old, new, diff)
        context = self._context(
            request,
            dataset,
            f"Compare versions of {dataset.path}",
            numbers=numbers,
            old=old,
            new=new,
            diff=diff,
            rows=rows,
            error=error,
        )
        return TemplateResponse(request, "admin/versioning/dataset/diff.html", context)

    def rollback_view(self, request, object_id: int):
        """Makes another active version current, with a reason (`?to=` pre-selects it)."""
        dataset = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, dataset):
            messages.error(request, f"You are not a steward of {dataset.organization.slug}.")
            return redirect("admin:catalog_dataset_change", dataset.pk)
        candidates = DatasetVersion.objects.filter(
            dataset=dataset, status=VersionStatus.ACTIVE, is_current=False
        ).order_by("-published_at", "-id")
        form = RollbackForm(
            request.POST or None, versions=candidates, initial={"to": request.GET.get("to")}
        )
        if request.method == "POST" and form.is_valid():
            try:
                rollback = dataset_rollback(
                    dataset=dataset,
                    to=form.cleaned_data["to"],
                    reason=form.cleaned_data["reason"],
                    actor=Actor.from_request(request, via="admin"),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.success(
                    request,
                    f"{dataset.path} is back on {rollback.to_version.version} (was "
                    f"{rollback.from_version.version}); the manifest lists it again.",
                )
                return redirect("admin:catalog_dataset_history", dataset.pk)
        current = DatasetVersion.objects.filter(dataset=dataset, is_current=True).first()
        context = self._context(
            request, dataset, f"Roll back {dataset.path}", form=form, current=current
        )
        return TemplateResponse(request, "admin/versioning/dataset/rollback.html", context)

    def publish_view(self, request, object_id: int):
        dataset = get_object_or_404(self.get_queryset(request), pk=object_id)
        if not self.has_change_permission(request, dataset):
            messages.error(request, f"You are not a steward of {dataset.organization.slug}.")
            return redirect("admin:catalog_dataset_change", dataset.pk)
        form = PublishForm(request.POST or None, request.FILES or None)
        if request.method == "POST" and form.is_valid():
            upload = form.cleaned_data["file"]
            try:
                job = publish_job_create(
                    dataset=dataset,
                    stream=upload,
                    filename=upload.name,
                    actor=Actor.from_request(request, via="admin"),
                    source=JobSource.ADMIN,
                    options=form.publish_options(),
                )
            except DomainError as exc:
                form.add_error(None, exc.message)
            else:
                messages.info(
                    request, f"Upload received; publishing {dataset.path} in the background."
                )
                return redirect("admin:versioning_publishjob_change", job.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "original": dataset,
            "title": f"Publish a new version of {dataset.path}",
            "form": form,
            "dataset": dataset,
            "recent_jobs": PublishJob.objects.filter(dataset=dataset)[:5],
        }
        return TemplateResponse(request, "admin/versioning/dataset/publish.html", context)


def _side_by_side(dataset: Dataset, old: str, new: str, diff) -> list[dict]:
    """One row per column name, in the newer version's order (removed ones last):
    the old and new type and nulls, and what changed."""
    versions = {
        v.version: v
        for v in DatasetVersion.objects.filter(dataset=dataset, version__in=[old, new]).only(
            "version", "schema"
        )
    }
    before = {c["name"]: c for c in versions[old].schema}
    after = {c["name"]: c for c in versions[new].schema}
    retyped = {r.name: r for r in diff.retyped}
    nulls = {n.name for n in diff.nulls_appeared}
    names = list(after) + [n for n in before if n not in after]
    rows = []
    for name in names:
        if name not in before:
            change, breaking = "added", False
        elif name not in after:
            change, breaking = "removed", True
        elif name in retyped:
            change = "retyped" if retyped[name].breaking else "widened"
            breaking = retyped[name].breaking
        elif name in nulls:
            change, breaking = "gained nulls", True
        else:
            change, breaking = "", False
        if name in nulls and change in ("retyped", "widened"):
            change, breaking = f"{change}, gained nulls", True
        rows.append(
            {
                "name": name,
                "old": before.get(name),
                "new": after.get(name),
                "change": change,
                "breaking": breaking,
            }
        )
    return rows


class ChangelogInline(admin.TabularInline):
    model = ChangelogEntry
    extra = 0
    can_delete = False
    fields = ["position", "kind", "column", "old_type", "new_type", "breaking", "text"]
    readonly_fields = fields
    ordering = ["position"]
    verbose_name_plural = "changelog"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Stewards hold no model permissions; the parent admin scopes what they see.
        return True


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
class DatasetVersionAdmin(_VersionActions, ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "__str__",
        "status",
        "is_current",
        "change_type",
        "breaking",
        "row_count",
        "size_bytes",
        "published_by",
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
    readonly_fields = ["schema_table", "diff_summary", "lineage"]
    exclude = ["schema", "diff"]
    inlines = [ChangelogInline]
    actions = ["promote", "deprecate", "archive", "restore", "roll_back_to"]

    def get_actions(self, request):
        # The versions list is read-only, but its actions are the stewards' (each one
        # checks the steward's organisation itself).
        actions = super().get_actions(request)
        if not (request.user.is_superuser or request.user.memberships.exists()):
            return {}
        return actions

    @admin.display(description="schema")
    def schema_table(self, obj):
        rows = "".join(
            format_html(
                "<tr><td>{}</td><td>{}</td><td>{}</td></tr>", c["name"], c["type"], c["nulls"]
            )
            for c in obj.schema
        )
        return format_html(
            "<table><tr><th>column</th><th>type</th><th>nulls</th></tr>{}</table>", rows
        )

    @admin.display(description="change against the parent")
    def diff_summary(self, obj):
        if not obj.parent_id:
            return "First version."
        url = reverse("admin:catalog_dataset_diff", args=[obj.dataset_id])
        return format_html(
            '{} {} · <a href="{}?from={}&amp;to={}">compare side by side</a>',
            obj.get_change_type_display(),
            "(breaking: " + ", ".join(obj.diff.get("breaking_columns", [])) + ")"
            if obj.breaking
            else "",
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
        "backup_manifest_key",
    ]
    list_filter = [("dataset__organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["dataset__name", "reason", "actor_name"]
    list_select_related = ["dataset__organization", "from_version", "to_version"]
    date_hierarchy = "created_at"

    @admin.display(description="from")
    def from_version_number(self, obj):
        return obj.from_version.version

    @admin.display(description="to")
    def to_version_number(self, obj):
        return obj.to_version.version


@admin.register(PublishJob)
class PublishJobAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "created_at",
        "dataset",
        "status",
        "outcome",
        "progress",
        "attempts",
        "version",
        "requested_by",
        "source",
    ]
    list_filter = [
        "status",
        "outcome",
        "error_code",
        "source",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["dataset__name", "source_name", "message"]
    list_select_related = ["dataset__organization", "version__dataset", "requested_by"]
    date_hierarchy = "created_at"
    change_form_template = "admin/versioning/publishjob/change_form.html"

    @admin.display(description="progress")
    def progress(self, obj):
        percent = obj.progress_percent
        return "—" if percent is None else f"{percent}%"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = {
            "job": job,
            "dataset_url": reverse("admin:catalog_dataset_change", args=[job.dataset_id])
            if job
            else "",
        }
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    list_display = ["organization", "generated_at", "datasets", "sha256", "written_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organization"]
    readonly_fields = ["pretty_body"]
    exclude = ["body"]

    @admin.display(description="datasets")
    def datasets(self, obj):
        return obj.body.get("total_datasets")

    @admin.display(description="manifest")
    def pretty_body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.body, indent=2, sort_keys=True))
