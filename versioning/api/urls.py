"""Routes of the datasets API. Path converters admit only well-formed names (ASCII
slugs, the four layers, semantic versions), so `..`, an encoded `/` or a look-alike
character never reaches a lookup: it matches no route and answers 404."""

from __future__ import annotations

from django.urls import include, path, register_converter

from versioning.api import history, resumable, views


class _Regex:
    regex = ""

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


class LayerConverter(_Regex):
    regex = "bronze|silver|gold|platinum"


class NameConverter(_Regex):
    regex = "[a-z0-9](?:[a-z0-9_-]{0,62}[a-z0-9])?"


class VersionConverter(_Regex):
    regex = r"[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}(?:-[0-9A-Za-z.-]{1,50})?"


register_converter(LayerConverter, "layer")
register_converter(NameConverter, "slug_name")
register_converter(VersionConverter, "semver")

# The hottest reads first: Django tries the patterns in order.
dataset_urls = [
    path("download/", views.DownloadView.as_view(), name="dataset-download"),
    path("", views.DatasetDetailView.as_view(), name="dataset-detail"),
    path("versions/", views.VersionListView.as_view(), name="version-list"),
    path("versions/<semver:version>/", views.VersionDetailView.as_view(), name="version-detail"),
    path(
        "versions/<semver:version>/changes/",
        history.VersionChangesView.as_view(),
        name="version-changes",
    ),
    path(
        "versions/<semver:version>/lineage/",
        history.VersionLineageView.as_view(),
        name="version-lineage",
    ),
    path(
        "versions/<semver:version>/promote/",
        history.VersionPromoteView.as_view(),
        name="version-promote",
    ),
    path(
        "versions/<semver:version>/deprecate/",
        history.VersionDeprecateView.as_view(),
        name="version-deprecate",
    ),
    path(
        "versions/<semver:version>/archive/",
        history.VersionArchiveView.as_view(),
        name="version-archive",
    ),
    path(
        "versions/<semver:version>/restore/",
        history.VersionRestoreView.as_view(),
        name="version-restore",
    ),
    path("diff/", history.VersionsDiffView.as_view(), name="dataset-diff"),
    path("rollback/", history.RollbackView.as_view(), name="dataset-rollback"),
    path("rollbacks/", history.RollbackListView.as_view(), name="dataset-rollbacks"),
    path("raw/", views.RawView.as_view(), name="dataset-raw"),
    path("rows/", views.RowsView.as_view(), name="dataset-rows"),
    path("uploads/", resumable.UploadCreateView.as_view(), name="upload-create"),
]

urlpatterns = [
    path("manifest/", views.ManifestView.as_view(), name="manifest"),
    path("datasets/", views.DatasetListView.as_view(), name="dataset-list"),
    path("datasets/<layer:layer>/<slug_name:name>/", include(dataset_urls)),
    path(
        "orgs/<slug_name:org>/datasets/<layer:layer>/<slug_name:name>/",
        include((dataset_urls, "org"), namespace="org"),
    ),
    path("publish-jobs/<uuid:job_id>/", views.PublishJobView.as_view(), name="publish-job"),
    path("uploads/<uuid:upload_id>/", resumable.UploadDetailView.as_view(), name="upload"),
    path(
        "uploads/<uuid:upload_id>/part-urls/",
        resumable.UploadPartUrlsView.as_view(),
        name="upload-part-urls",
    ),
    path(
        "uploads/<uuid:upload_id>/complete/",
        resumable.UploadCompleteView.as_view(),
        name="upload-complete",
    ),
    path(
        "upload-parts/<slug:storage_upload_id>/<int:part_number>/",
        resumable.UploadPartView.as_view(),
        name="upload-part",
    ),
    path("manifests/latest.json", views.ManifestView.as_view(), name="manifest-latest"),
    path("dataset-proxy", views.DatasetProxyView.as_view(), name="dataset-proxy"),
    path("dataset-proxy/", views.DatasetProxySlashView.as_view()),
]
