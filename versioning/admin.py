"""The steward admin for datasets and their versions, publish jobs and manifests.

The dataset admin lives here, not in catalog, because a steward's dataset page is about
versions: the current version's facts, the version history, the "Publish new version"
page. Catalog stays free of any import of versioning.
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
from versioning.forms import PublishForm
from versioning.models import DatasetVersion, JobSource, Manifest, PublishJob
from versioning.services import publish_job_create


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
        "current_facts",
        "created_at",
        "updated_at",
    ]
    inlines = [VersionInline]
    change_form_template = "admin/versioning/dataset/change_form.html"

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
        return [
            path(
                "<int:object_id>/publish/",
                self.admin_site.admin_view(self.publish_view),
                name="catalog_dataset_publish",
            )
        ] + super().get_urls()

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
                    requested_version=form.cleaned_data["version"],
                    note=form.cleaned_data["note"],
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


@admin.register(DatasetVersion)
class DatasetVersionAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "__str__",
        "status",
        "is_current",
        "change_type",
        "row_count",
        "size_bytes",
        "published_by",
        "published_at",
    ]
    list_filter = [
        "status",
        "is_current",
        "format",
        "dataset__layer",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["dataset__name", "version", "sha256", "key"]
    list_select_related = ["dataset__organization", "published_by"]
    date_hierarchy = "published_at"
    readonly_fields = ["schema_table"]
    exclude = ["schema"]

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


@admin.register(PublishJob)
class PublishJobAdmin(ReadOnlyAdmin):
    organization_path = "dataset__organization"
    list_display = [
        "created_at",
        "dataset",
        "status",
        "outcome",
        "progress",
        "version",
        "requested_by",
        "source",
    ]
    list_filter = [
        "status",
        "outcome",
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
