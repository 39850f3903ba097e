"""Plain Django views of the catalog: the embedded mode's signed object downloads."""

from __future__ import annotations

import mimetypes
import re
import time

from django.http import FileResponse, HttpResponse, JsonResponse
from django.utils.http import http_date, parse_etags
from django.views.decorators.http import require_safe

from catalog.hooks import local_store_resolve
from catalog.storage import LocalObjectStore, get_object_store, verify_download_signature

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class _Limited:
    """A file object that stops after `remaining` bytes, for a Range response."""

    def __init__(self, handle, remaining: int) -> None:
        self.handle, self.remaining = handle, remaining

    def read(self, size: int = -1) -> bytes:
        if self.remaining <= 0:
            return b""
        size = self.remaining if size is None or size < 0 else min(size, self.remaining)
        data = self.handle.read(size)
        self.remaining -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


def _forbidden() -> JsonResponse:
    return JsonResponse(
        {
            "error": {
                "code": "forbidden",
                "message": "This download link is invalid or has expired.",
                "details": {},
            }
        },
        status=403,
    )


def _object_headers(response: HttpResponse, *, etag: str, stat, expires: int, key: str):
    """What GET and HEAD both answer about an object: an immutable key's bytes never
    change, so a client may keep them as long as its URL works."""
    response["ETag"] = etag
    response["Last-Modified"] = http_date(stat.st_mtime)
    max_age = max(0, expires - int(time.time()))
    response["Cache-Control"] = f"private, max-age={max_age}, immutable"
    response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = f'attachment; filename="{key.rsplit("/", 1)[-1]}"'
    return response


@require_safe
def signed_object_download(request, key: str):
    """Streams an object to whoever holds a valid, unexpired signed URL for its key and
    version; a tampered, expired or other key's URL gets 403. HEAD answers the same
    headers as GET (clients size a download with it first), without the body."""
    name = request.GET.get("store", "")
    expires = request.GET.get("expires", "")
    if not verify_download_signature(
        key,
        expires,
        request.GET.get("signature", ""),
        request.GET.get("version", ""),
        store=name,
    ):
        return _forbidden()
    # A named store is another local folder (a region's); the signature covers its name.
    store = local_store_resolve(name) if name else get_object_store()
    if not isinstance(store, LocalObjectStore):
        return _forbidden()
    try:
        path = store.path(key)
        stat = path.stat()
    except (FileNotFoundError, Exception):
        return _forbidden()
    etag = f'"{stat.st_size:x}-{int(stat.st_mtime_ns):x}"'
    headers = {"etag": etag, "stat": stat, "expires": int(expires), "key": key}
    if etag in parse_etags(request.headers.get("If-None-Match", "")):
        return _object_headers(HttpResponse(status=304), **headers)
    content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
    if key.endswith(".gz"):
        content_type = "application/gzip"  # never Content-Encoding: the bytes are the file
    size = stat.st_size
    start, end, status = 0, size - 1, 200
    match = _RANGE.match(request.headers.get("Range", ""))
    if match and (match.group(1) or match.group(2)):
        first, last = match.groups()
        if first:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        else:
            start, end = max(0, size - int(last)), size - 1
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    if request.method == "HEAD":
        response = HttpResponse(content_type=content_type, status=status)
    else:
        handle = open(path, "rb")  # noqa: SIM115 - FileResponse closes it
        handle.seek(start)
        body = _Limited(handle, end - start + 1) if status == 206 else handle
        response = FileResponse(body, content_type=content_type, status=status)
    response["Content-Length"] = str(end - start + 1)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
    return _object_headers(response, **headers)


def healthz(request):
    return JsonResponse({"status": "ok"})


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def page_not_found(request, exception=None):
    from django.views import defaults

    from catalog.api.errors import api_not_found

    if _is_api(request):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


def server_error(request):
    from django.views import defaults

    from catalog.api.errors import api_server_error

    if _is_api(request):
        return api_server_error(request)
    return defaults.server_error(request)


def bad_request(request, exception=None):
    from django.views import defaults

    from catalog.api.errors import api_bad_request

    if _is_api(request):
        return api_bad_request(request, exception)
    return defaults.bad_request(request, exception)


def permission_denied(request, exception=None):
    from django.views import defaults

    from catalog.api.errors import api_permission_denied

    if _is_api(request):
        return api_permission_denied(request, exception)
    return defaults.permission_denied(request, exception)
