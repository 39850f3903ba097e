from django.contrib import admin
from django.urls import path

from catalog import views as catalog_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("objects/<path:key>", catalog_views.signed_object_download, name="signed-object"),
    path("healthz", catalog_views.healthz, name="healthz"),
]
