"""One usage event as one line of PostgreSQL's COPY text format.

The buffer (Redis or a spool file) holds events as the very lines the ingest hands to
COPY: the ingest then sends a batch of 20,000 events to the database as one block of
bytes, with no Python work per event (measured: parsing JSON and building rows in
Python cost four times the COPY itself). The same lines are parsed in Python where
COPY is not available (SQLite) and to set aside a malformed line.

Fields, tab-separated, `\\N` for none: event id, time (ISO, UTC), organisation,
dataset, version, user, token, kind, status, response ms, bytes, country, client,
request id, object key, user agent. The user agent is classified (family, robot,
machine) by the ingest, once per distinct agent in a batch.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

FIELDS = (
    "event_id",
    "occurred_at",
    "organization_id",
    "dataset_id",
    "version_id",
    "user_id",
    "token_id",
    "kind",
    "status",
    "response_ms",
    "bytes",
    "country",
    "client",
    "request_id",
    "object_key",
    "user_agent",
)
NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_EVENT_ID = re.compile(r"[0-9a-f]{32}")
_UNESCAPES = {"\\\\": "\\", "\\t": "\t", "\\n": "\n", "\\r": "\r"}


def _text(value: Any, limit: int) -> str:
    if not value:
        return ""
    text = str(value)[:limit]
    # Tabs and line breaks are not printable: most texts need no escaping, and these
    # two checks cost a fraction of `translate`.
    if "\\" in text or not text.isprintable():
        text = text.translate(_ESCAPES)
    return text


def _number(value: Any) -> str:
    return NULL if value is None else str(int(value))


def encode(record: dict) -> str:
    """The line for an event as the middleware built it; ValueError when malformed."""
    try:
        event_id = str(record["id"])
        if not _EVENT_ID.fullmatch(event_id):  # the middleware's own form, else a UUID's
            event_id = uuid.UUID(hex=event_id).hex
        occurred_at = datetime.fromtimestamp(float(record["t"]), UTC)
        return "\t".join(
            (
                event_id,
                occurred_at.isoformat(sep=" "),
                _number(record.get("organization")),
                _number(record.get("dataset")),
                _number(record.get("version")),
                _number(record.get("user")),
                _number(record.get("token")),
                _text(record["kind"], 16),
                str(int(record["status"])),
                str(max(0, int(record.get("ms") or 0))),
                str(max(0, int(record.get("bytes") or 0))),
                _text(record.get("country"), 2),
                _text(record.get("client"), 32),
                _text(record.get("rid"), 64),
                _text(record.get("object_key"), 512),
                _text(record.get("ua"), 512),
            )
        )
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise ValueError(f"malformed usage event: {exc}") from None


def _unescape(text: str) -> str:
    if "\\" not in text:
        return text
    out, i = [], 0
    while i < len(text):
        pair = text[i : i + 2]
        if pair in _UNESCAPES:
            out.append(_UNESCAPES[pair])
            i += 2
        else:
            out.append(text[i])
            i += 1
    return "".join(out)


def decode(line: str) -> dict[str, Any]:
    """A line back as typed fields; ValueError when it is not a well-formed event."""
    parts = line.rstrip("\n").split("\t")
    if len(parts) != len(FIELDS):
        raise ValueError(f"a usage line has {len(parts)} fields, not {len(FIELDS)}")

    def number(text: str) -> int | None:
        return None if text == NULL else int(text)

    return {
        "event_id": uuid.UUID(hex=parts[0]),
        "occurred_at": datetime.fromisoformat(parts[1]),
        "organization_id": number(parts[2]),
        "dataset_id": number(parts[3]),
        "version_id": number(parts[4]),
        "user_id": number(parts[5]),
        "token_id": number(parts[6]),
        "kind": _unescape(parts[7]),
        "status": int(parts[8]),
        "response_ms": int(parts[9]),
        "bytes": int(parts[10]),
        "country": _unescape(parts[11]),
        "client": _unescape(parts[12]),
        "request_id": _unescape(parts[13]),
        "object_key": _unescape(parts[14]),
        "user_agent": _unescape(parts[15]),
    }
