from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from catalog import views as catalog_views

api_v1 = [
    path("", include("catalog.api.urls")),
    path("", include("versioning.api.urls")),
    path("", include("usage.api.urls")),
    path("schema/", SpectacularAPIView.as_view(), name="api-schema"),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include(api_v1)),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("objects/<path:key>", catalog_views.signed_object_download, name="signed-object"),
    path("healthz", catalog_views.healthz, name="healthz"),
]

# Under /api/ every error is JSON in the API's one shape; elsewhere Django's pages.
handler400 = catalog_views.bad_request
handler403 = catalog_views.permission_denied
handler404 = catalog_views.page_not_found
handler500 = catalog_views.server_error
