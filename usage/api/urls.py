"""Routes of the usage API (the converters are the datasets API's)."""

from __future__ import annotations

from django.urls import path

import versioning.api.urls  # noqa: F401 - registers the layer and name converters
from usage.api import views

urlpatterns = [
    path(
        "datasets/<layer:layer>/<slug_name:name>/usage/",
        views.DatasetUsageView.as_view(),
        name="usage-dataset",
    ),
    path(
        "orgs/<slug_name:org>/datasets/<layer:layer>/<slug_name:name>/usage/",
        views.DatasetUsageView.as_view(),
        name="usage-org-dataset",
    ),
    path("usage/summary/", views.UsageSummaryView.as_view(), name="usage-summary"),
    path("usage/reports/dsr/", views.DatasetReportView.as_view(), name="usage-dsr"),
    path("usage/export/", views.UsageExportView.as_view(), name="usage-export"),
]
