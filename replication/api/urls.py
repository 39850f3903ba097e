"""Routes of the replication API, under /api/v1/."""

from __future__ import annotations

from django.urls import path
from rest_framework.routers import SimpleRouter

import versioning.api.urls  # noqa: F401 - registers the <layer>/<slug_name> converters
from replication.api import views

router = SimpleRouter()
router.register("replication/regions", views.RegionViewSet, basename="region")
router.register("replication/rules", views.RuleViewSet, basename="replication-rule")
router.register("replication/replicas", views.ReplicaViewSet, basename="replica")
router.register("replication/runs", views.CopyRunViewSet, basename="copy-run")

urlpatterns = [
    path("replication/costs/", views.CostsView.as_view(), name="replication-costs"),
    path("replication/lag/", views.LagView.as_view(), name="replication-lag"),
    path(
        "datasets/<layer:layer>/<slug_name:name>/replicate/",
        views.ReplicateView.as_view(),
        name="dataset-replicate",
    ),
    path(
        "orgs/<slug_name:org>/datasets/<layer:layer>/<slug_name:name>/replicate/",
        views.ReplicateView.as_view(),
        name="org-dataset-replicate",
    ),
    *router.urls,
]
