"""The publish jobs and the manifests, read-only."""

from __future__ import annotations

import json

from django.contrib import admin, messages
from django.shortcuts import get_object_or_404, redirect
from django.urls import path, reverse
from django.utils.html import format_html

from catalog import display
from catalog.admin import ReadOnlyAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.selectors import user_can_steward
from versioning.admin.common import ViewerOnObject
from versioning.models import JobStatus, Manifest, PublishJob
from versioning.services import (
    needed_version,
    publish_job_file_kept,
    publish_job_republish,
)


@admin.register(PublishJob)
class PublishJobAdmin(ViewerOnObject, ReadOnlyAdmin):
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
        if obj.status == JobStatus.UPLOADING:
            # The size is known once the whole file is there.
            return f"{display.size(obj.bytes_done)} received"
        percent = obj.progress_percent
        return "—" if percent is None else f"{percent}%"

    @admin.display(description="requested by", ordering="requested_by__username")
    def requester(self, obj):
        return display.person(obj.requested_by, viewer=getattr(obj, "viewer", None))

    @admin.display(description="read")
    def transferred(self, obj):
        if obj.status == JobStatus.UPLOADING:
            return f"{display.size(obj.bytes_done)} received so far"
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
