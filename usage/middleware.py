"""Records every API request and every object the app serves, without slowing either.

The event is appended to the buffer when the response is closed, which a WSGI server
does after the last byte went to the client: the caller never waits for it, and with
Redis the append only adds it to the process's batch (`usage.services.buffer`). A streamed
answer (an object served in the embedded mode) is counted as it goes, so its event
carries the bytes actually sent, and a download cut short is recorded as status 499
(client closed) rather than as a completed one.
"""

from __future__ import annotations

import time

from django.conf import settings

from usage import capture
from usage.services.buffer import record_append

CLIENT_CLOSED = 499


class UsageMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request):
        if not settings.USAGE_RECORDING or not capture.is_measured(request.path):
            return self.get_response(request)
        occurred_at = capture.now()
        started = time.perf_counter()
        request_id = capture.request_id_of(request)
        response = self.get_response(request)
        response_ms = int((time.perf_counter() - started) * 1000)
        record = capture.record_build(
            request,
            response,
            occurred_at=occurred_at,
            response_ms=response_ms,
            request_id=request_id,
        )
        response.headers.setdefault("X-Request-ID", request_id)
        if response.streaming:
            sent = _Sent()
            response.streaming_content = sent.counting(response.streaming_content)

            def done() -> None:
                record["bytes"] = sent.bytes
                if not sent.finished and record["status"] < 300:
                    record["status"] = CLIENT_CLOSED
                record_append(record)

        else:
            record["bytes"] = len(response.content)

            def done() -> None:
                record_append(record)

        # Django calls these from `response.close()`, after the server sent the answer
        # (FileResponse closes its file the same way).
        response._resource_closers.append(done)
        return response


class _Sent:
    """Counts the bytes of a streamed answer as the server takes them."""

    def __init__(self) -> None:
        self.bytes = 0
        self.finished = False

    def counting(self, chunks):
        for chunk in chunks:
            self.bytes += len(chunk)
            yield chunk
        self.finished = True
