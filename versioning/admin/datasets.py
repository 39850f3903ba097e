"""The dataset admin: the current version's facts, the version history, the diff page,
the "Publish new version" page and the rollback page.

It lives in versioning, not in catalog, because a steward's dataset page is about
versions. Catalog stays free of any import of versioning."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import OuterRef, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path
from django.utils.html import format_html

from catalog import display
from catalog.admin import OrganizationScopedAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.models import Dataset
from versioning.admin.common import ReadOnlyInline, schema_table
from versioning.forms import PublishForm, RollbackForm
from versioning.models import (
    DatasetRollback,
    DatasetVersion,
    JobSource,
    PublishJob,
    VersionStatus,
)
from versioning.services import (
    dataset_rollback,
    needed_version,
    publish_job_create,
    versions_diff,
)


def _current(field: str) -> Subquery:
    return Subquery(
        DatasetVersion.objects.filter(dataset=OuterRef("pk"), is_current=True).values(field)[:1]
    )


class VersionInline(ReadOnlyInline, admin.TabularInline):
    model = DatasetVersion
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
