"""The OpenAPI schema's own corrections to what drf-spectacular infers.

- Operations that anonymous callers may use (`anonymous_read` views, GET) list the
  empty security requirement `{}` next to the token schemes, so a client generated from
  the schema knows a token is optional there.

The schema endpoint itself is `catalog.api.docs.SchemaView`.
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema


class AutoSchema(SpectacularAutoSchema):
    def get_auth(self):
        auths = super().get_auth()
        anonymous = self.method in ("GET", "HEAD") and getattr(self.view, "anonymous_read", False)
        if anonymous and {} not in auths:
            auths.append({})
        return auths
