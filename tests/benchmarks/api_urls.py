"""The product's URLs plus the benchmark's baseline: a bare Django view returning a small
JSON document (no authentication, no database, no DRF)."""

from django.http import JsonResponse
from django.urls import path

from config.urls import urlpatterns as product_urlpatterns


def bare(request):
    return JsonResponse({"status": "ok", "items": [1, 2, 3]})


urlpatterns = [path("bench/bare/", bare), *product_urlpatterns]
