"""Resumable uploads, read-only, with an action to abort the open ones.

A steward sees the uploads into their organisations' datasets as they arrive: how many
parts storage holds (asked on the upload's own page, not for the list), when an
unfinished one expires, and the publish job a completed one became.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils.html import format_html

from catalog import display
from catalog.admin import ReadOnlyAdmin
from catalog.audit import Actor
from catalog.exceptions import DomainError
from catalog.services import ensure_steward
from versioning.admin.common import ViewerOnObject
from versioning.models import PublishJob, ResumableUpload, UploadStatus
from versioning.services.resumable import resumable_upload_abort, resumable_upload_parts


@admin.register(ResumableUpload)
class ResumableUploadAdmin(ViewerOnObject, ReadOnlyAdmin):
    organization_path = "dataset__organization"
    # Narrow enough for the admin's content column; who sent it and its job are on its page.
    # When it began is in the date drill-down above the list and orders it (newest first).
    list_display = ["filename", "dataset", "size_shown", "status", "expires_at"]
    list_filter = [
        "status",
        "source",
        ("dataset__organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["filename", "dataset__name", "requested_by__username"]
    list_select_related = ["dataset__organization", "requested_by"]
    date_hierarchy = "created_at"
    fields = [
        "dataset",
        "filename",
        "format",
        "size_shown",
        "parts_shown",
        "received",
        "sha256_shown",
        "status",
        "message",
        "requester",
        "source",
        "created_at",
        "expires_at",
        "finished_at",
        "job_link",
    ]
    readonly_fields = fields
    actions = ["abort"]

    def get_queryset(self, request):
        # Whether each upload's job still exists (old jobs are pruned), for its link.
        jobs = PublishJob.objects.filter(pk=OuterRef("job_id"))
        return super().get_queryset(request).annotate(job_exists=Exists(jobs))

    def get_actions(self, request):
        # The list is read-only, but aborting is the stewards' (each upload is checked).
        actions = super().get_actions(request)
        return actions if self.has_module_permission(request) else {}

    @admin.display(description="size", ordering="size")
    def size_shown(self, obj):
        return display.size(obj.size)

    @admin.display(description="parts")
    def parts_shown(self, obj):
        return f"{display.count(obj.part_count)} parts of {display.size(obj.part_size)}"

    @admin.display(description="SHA-256 sent")
    def sha256_shown(self, obj):
        return obj.sha256 or "— (checked against nothing)"

    @admin.display(description="received")
    def received(self, obj):
        if obj.status != UploadStatus.OPEN:
            return "—"
        try:
            parts = resumable_upload_parts(upload=obj)
        except DomainError as exc:
            return f"Storage did not answer ({exc.message})."
        held = sum(part.size for part in parts)
        return (
            f"{display.count(len(parts))} of {display.count(obj.part_count)} parts, "
            f"{display.size(held)} of {display.size(obj.size)}"
        )

    @admin.display(description="requested by", ordering="requested_by__username")
    def requester(self, obj):
        return display.person(obj.requested_by, viewer=getattr(obj, "viewer", None))

    @admin.display(description="publish job")
    def job_link(self, obj):
        if obj.status != UploadStatus.COMPLETED or not obj.job_exists:
            return "—"
        url = reverse("admin:versioning_publishjob_change", args=[obj.job_id])
        return format_html('<a href="{}">{}</a>', url, obj.job_id)

    @admin.action(description="Abort the selected open uploads (their parts are removed)")
    def abort(self, request, queryset):
        actor = Actor.from_request(request, via="admin")
        aborted = []
        for upload in queryset.select_related("dataset__organization"):
            try:
                ensure_steward(actor=actor, organization=upload.dataset.organization)
                resumable_upload_abort(upload=upload, actor=actor)
            except DomainError as exc:
                self.message_user(request, f"{upload.filename}: {exc.message}", messages.ERROR)
            else:
                aborted.append(upload.filename)
        if aborted:
            self.message_user(request, f"Aborted: {', '.join(aborted)}.", messages.SUCCESS)
