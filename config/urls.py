from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularSwaggerSplitView

from catalog import views as catalog_views
from catalog.api.docs import SchemaView

# Django tries the patterns in order: the hottest reads (manifest, datasets, signed URLs,
# rows) are versioning's.
api_v1 = [
    path("", include("versioning.api.urls")),
    path("", include("catalog.api.urls")),
    path("", include("usage.api.urls")),
    path("", include("notifications.api.urls")),
    path("", include("replication.api.urls")),
    path("schema/", SchemaView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    # The split view serves Swagger UI's start-up script as a file: no inline script,
    # so the Content-Security-Policy holds on the docs too.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("objects/<path:key>", catalog_views.signed_object_download, name="signed-object"),
    path("notifications/", include("notifications.urls")),
    path("healthz", catalog_views.healthz, name="healthz"),
    path("", include("portal.urls")),
]

# Under /api/ every error is JSON in the API's one shape; elsewhere Django's pages.
handler400 = catalog_views.bad_request
handler403 = catalog_views.permission_denied
handler404 = catalog_views.page_not_found
handler500 = catalog_views.server_error
