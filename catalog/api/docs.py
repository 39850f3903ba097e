"""The OpenAPI document's endpoint.

It honours `?format=json|yaml`: the API turns DRF's `format` query override off (the
rows endpoint uses `format` for its own media types), so this view negotiates it itself.
"""

from __future__ import annotations

from drf_spectacular.views import SpectacularAPIView
from rest_framework.negotiation import DefaultContentNegotiation


class FormatQueryNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        return super().select_renderer(
            request, renderers, format_suffix or request.query_params.get("format")
        )


class SchemaView(SpectacularAPIView):
    """The OpenAPI document: YAML by default, JSON with `?format=json` or
    `Accept: application/json`."""

    content_negotiation_class = FormatQueryNegotiation
