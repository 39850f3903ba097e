"""Site-wide response headers: the Content-Security-Policy.

Every response carries the policy (`CONTENT_SECURITY_POLICY`): the admin, the API docs,
the pages and the API's JSON alike, so a page that forgets to ask for it cannot exist.
Scripts come only from our own origin (no inline script, no `eval`): the admin's own
scripts are files, the publish page's progress bar is a static file, and the API docs
use drf-spectacular's split Swagger UI, whose start-up script is a separate request.
Inline styles stay allowed: Swagger UI and the admin set `style` attributes, and a style
cannot run code. A view that sets its own policy keeps it.
"""

from __future__ import annotations

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.policy = settings.CONTENT_SECURITY_POLICY

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = self.policy
        return response
