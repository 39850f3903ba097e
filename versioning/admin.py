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

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from catalog import display
from catalog.admin import OrganizationScopedAdmin, ReadOnlyAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.models import Dataset
from catalog.selectors import user_can_steward
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
    needed_version,
    publish_job_create,
    publish_job_file_kept,
    publish_job_republish,
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
        "breaking_display",
        "rows",
        "size",
        "sha",
        "publisher",
        "published_at",
    ]
    readonly_fields = fields
    ordering = ["-published_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("published_by")

    @admin.display(description="breaking")
    def breaking_display(self, obj):
        return display.breaking_flag(obj.breaking, obj.diff.get("breaking_columns"))

    @admin.display(description="rows")
    def rows(self, obj):
        return display.count(obj.row_count)

    @admin.display(description="size")
    def size(self, obj):
        return display.size(obj.size_bytes)

    @admin.display(description="SHA-256")
    def sha(self, obj):
        return display.short_sha(obj.sha256)

    @admin.display(description="published by")
    def publisher(self, obj):
        return display.person(obj.published_by)

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Stewards hold no model permissions; the parent admin scopes what they see.
        return True


class TagsField(forms.CharField):
    """Tags as the steward types them, comma-separated; stored as a JSON list."""

    def prepare_value(self, value):
        if isinstance(value, list):
            return ", ".join(value)
        if isinstance(value, str) and value.startswith("["):
            try:
                return ", ".join(json.loads(value))
            except ValueError:
                return value
        return value

    def to_python(self, value):
        words = [w.strip() for w in (value or "").split(",")]
        return list(dict.fromkeys(w for w in words if w))

    def validate(self, value):
        for tag in value:
            if len(tag) > 50:
                raise forms.ValidationError(f"The tag {tag[:20]!r}… is longer than 50 characters.")


class DatasetAdminForm(forms.ModelForm):
    tags = TagsField(
        required=False,
        help_text="Words that help people find it, separated by commas: sales, daily.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = Dataset
        # The admin passes the fields it shows (DatasetAdmin.fields); these are the form's own.
        fields = ["tags"]


@admin.register(Dataset)
class DatasetAdmin(OrganizationScopedAdmin):
    form = DatasetAdminForm
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
        return display.count(obj.current_rows)

    @admin.display(description="size", ordering="current_size")
    def size(self, obj):
        return display.size(obj.current_size)

    @admin.display(description="current version")
    def current_facts(self, obj):
        version = DatasetVersion.objects.filter(dataset=obj, is_current=True).first()
        if version is None:
            return "Nothing published yet."
        return format_html(
            '<b>{}</b> · {} rows · {}<br>key <code class="wrap">{}</code><br>SHA-256 '
            '<code class="wrap">{}</code><br>{}',
            version.version,
            display.count(version.row_count),
            display.size(version.size_bytes),
            version.key,
            version.sha256,
            schema_table(version.schema),
        )

    def get_urls(self):
        # "versions", not "history": Django's own change history keeps its address.
        views = [
            ("publish", self.publish_view),
            ("versions", self.versions_view),
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

    def history_view(self, request, object_id: str, extra_context=None):
        """Django's own change history; any text reaches it as the id, only digits name
        a dataset."""
        if not (str(object_id).isascii() and str(object_id).isdigit()):
            raise Http404(f"No dataset {str(object_id)[:50]!r}.")
        return super().history_view(request, object_id, extra_context)

    def versions_view(self, request, object_id: int):
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
                    f"Rolled back: {dataset.path} is on {rollback.to_version.version} again "
                    f"(was {rollback.from_version.version}); the manifest lists it.",
                )
                return redirect("admin:catalog_dataset_versions", dataset.pk)
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
        form = PublishForm(
            request.POST or None, request.FILES or None, initial=_retry_initial(request, dataset)
        )
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
                    expected_sha256=form.cleaned_data["sha256"],
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


def schema_table(schema: list[dict]):
    """A version's columns as a table (column, type, nulls)."""
    rows = format_html_join(
        "",
        '<tr><td><code>{}</code></td><td>{}</td><td class="num">{}</td></tr>',
        ((c["name"], c["type"], display.count(c.get("nulls"))) for c in schema),
    )
    return format_html(
        '<table class="schema-table"><thead><tr><th>column</th><th>type</th>'
        '<th class="num">nulls</th></tr></thead><tbody>{}</tbody></table>',
        rows,
    )


def _retry_initial(request, dataset: Dataset) -> dict:
    """`?retry=<job>`: the publish form filled in from a refused job, with the version
    its change needs."""
    job = PublishJob.objects.filter(dataset=dataset, pk=_uuid(request.GET.get("retry"))).first()
    if job is None:
        return {}
    return {
        "version": needed_version(job),
        "note": job.note,
        "inputs": "\n".join(job.inputs),
        "draft": job.draft,
        "allow_breaking": job.allow_breaking,
    }


def _uuid(text: str | None):
    import uuid

    try:
        return uuid.UUID(text or "")
    except ValueError:
        return None


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

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        # Stewards hold no model permissions; the parent admin scopes what they see.
        return True


class _ViewerOnObject:
    """Remembers who looks at an object's page on the object: display methods get only
    the object, and who looks decides what links (`catalog.display.person`)."""

    def get_object(self, request, object_id, from_field=None):
        obj = super().get_object(request, object_id, from_field)
        if obj is not None:
            obj.viewer = request.user
        return obj


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
class DatasetVersionAdmin(_ViewerOnObject, _VersionActions, ReadOnlyAdmin):
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


@admin.register(PublishJob)
class PublishJobAdmin(_ViewerOnObject, ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "created_at",
        "dataset",
        "status",
        "outcome",
        "progress",
        "attempts",
        "version",
        "requester",
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
    exclude = ["requested_by", "bytes_total", "bytes_done", "error_details"]
    readonly_fields = ["requester", "transferred"]

    @admin.display(description="progress")
    def progress(self, obj):
        percent = obj.progress_percent
        return "—" if percent is None else f"{percent}%"

    @admin.display(description="requested by", ordering="requested_by__username")
    def requester(self, obj):
        return display.person(obj.requested_by, viewer=getattr(obj, "viewer", None))

    @admin.display(description="read")
    def transferred(self, obj):
        return f"{display.size(obj.bytes_done)} of {display.size(obj.bytes_total)}"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        job = self.get_object(request, object_id)
        extra = {
            "job": job,
            "dataset_url": reverse("admin:catalog_dataset_change", args=[job.dataset_id])
            if job
            else "",
            "needed_version": needed_version(job) if job else "",
        }
        if extra["needed_version"]:
            extra["file_kept"] = publish_job_file_kept(job)
            extra["may_steward"] = request.user.is_superuser or user_can_steward(
                request.user, job.dataset.organization
            )
        return super().change_view(request, object_id, form_url, {**(extra_context or {}), **extra})

    def get_urls(self):
        return [
            path(
                "<uuid:object_id>/republish/",
                self.admin_site.admin_view(self.republish_view),
                name="versioning_publishjob_republish",
            )
        ] + super().get_urls()

    def republish_view(self, request, object_id):
        """Publishes a refused job's kept file as the version it needs (POST)."""
        job = get_object_or_404(self.get_queryset(request), pk=object_id)
        here = reverse("admin:versioning_publishjob_change", args=[job.pk])
        if request.method != "POST":
            return redirect(here)
        try:
            new = publish_job_republish(job=job, actor=Actor.from_request(request, via="admin"))
        except DomainError as exc:
            self.message_user(request, exc.message, messages.ERROR)
            return redirect(here)
        self.message_user(
            request,
            f"Publishing {job.dataset.path} as {new.requested_version} in the background.",
            messages.INFO,
        )
        return redirect("admin:versioning_publishjob_change", new.pk)


@admin.register(Manifest)
class ManifestAdmin(ReadOnlyAdmin):
    list_display = ["organization", "generated_at", "datasets", "sha", "written_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["organization"]
    readonly_fields = ["pretty_body"]
    exclude = ["body"]

    @admin.display(description="SHA-256")
    def sha(self, obj):
        return display.short_sha(obj.sha256)

    @admin.display(description="datasets")
    def datasets(self, obj):
        return obj.body.get("total_datasets")

    @admin.display(description="manifest")
    def pretty_body(self, obj):
        return format_html("<pre>{}</pre>", json.dumps(obj.body, indent=2, sort_keys=True))
