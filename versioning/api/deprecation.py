"""What every API response about a deprecated version carries.

- `Deprecation: @<unix time>` (RFC 9745) and `Sunset: <HTTP date>` (RFC 8594), from
  `version_deprecation`;
- `Link: <the version's API address>; rel="deprecation"`, where the message, the sunset
  date and the rest of the version are;
- `Warning: 299 - "Deprecated: <message>"`, so a client that reads only headers (a CSV
  from rows, a redirect from raw) still sees the message. Header values are ASCII: the
  message is cut to a line and anything else is replaced.

JSON bodies about a version (its detail, the lifecycle actions) hold the same facts in
`deprecation`. A dataset's current version is never deprecated (the lifecycle refuses
it), so a dataset's own detail never carries them.
"""

from __future__ import annotations

import unicodedata

from versioning.api.serializers import dataset_url
from versioning.models import DatasetVersion
from versioning.services import version_deprecation

_WARNING_CHARS = 300


def _header_text(text: str) -> str:
    """`text` as a safe quoted-string: control characters (refused on input, but older
    rows may hold them) become spaces, runs of spaces one, anything past ASCII `?`."""
    printable = "".join(" " if unicodedata.category(c) == "Cc" else c for c in text)
    line = " ".join(printable.split())
    ascii_only = line.encode("ascii", "replace").decode("ascii")
    if len(ascii_only) > _WARNING_CHARS:
        ascii_only = ascii_only[: _WARNING_CHARS - 3] + "..."
    return ascii_only.replace("\\", "\\\\").replace('"', '\\"')


def deprecation_headers(version: DatasetVersion) -> dict[str, str]:
    """The headers for a response about `version`; empty unless it is deprecated."""
    found = version_deprecation(version=version)
    if found is None:
        return {}
    url = f"{dataset_url(version.dataset)}versions/{version.version}/"
    return {
        **found["headers"],
        "Link": f'<{url}>; rel="deprecation"; type="application/json"',
        "Warning": f'299 - "Deprecated: {_header_text(found["message"])}"',
    }
