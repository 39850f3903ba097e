"""A cut-off upload sent over a real socket to gunicorn and to runserver is refused with
400 in the API's error shape, and nothing is staged."""

from __future__ import annotations

import json
import socket

import pytest

from tests.api.conftest import CSV, multipart

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.s3]

URL = "/api/v1/datasets/gold/txn_daily/versions/"
BODY = multipart([("note", None, b"over the wire"), ("file", "day.csv", CSV * 200)])


def send(server, token: str, body: bytes, *, content_length: int) -> tuple[int, dict]:
    """POSTs `body` with the given Content-Length, half-closes the socket (the client
    is done sending), and reads the whole answer."""
    head = (
        f"POST {URL} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {content_length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status_line, _, rest = answer.partition(b"\r\n")
    headers, _, payload = rest.partition(b"\r\n\r\n")
    status = int(status_line.split()[1])
    if b"transfer-encoding: chunked" in headers.lower():
        payload = _unchunked(payload)
    return status, json.loads(payload)


def _unchunked(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, payload = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out, payload = out + payload[:size], payload[size + 2 :]
    return out


@pytest.mark.parametrize("kind", ["gunicorn", "runserver"])
def test_a_body_shorter_than_its_content_length_is_refused(
    start_server, token, stray_uploads, kind
):
    from versioning.models import PublishJob

    server = start_server(kind)
    cut = BODY[: len(BODY) // 2]
    status, answer = send(server, token, cut, content_length=len(BODY))
    assert status == 400, answer
    assert answer["error"]["code"] == "invalid"
    assert "cut off" in answer["error"]["message"]
    assert answer["error"]["details"] == {
        "received_bytes": len(cut),
        "content_length": len(BODY),
    }
    assert stray_uploads() == []
    assert not PublishJob.objects.exists()


@pytest.mark.parametrize("kind", ["gunicorn", "runserver"])
def test_a_body_without_its_closing_boundary_is_refused(start_server, token, stray_uploads, kind):
    from versioning.models import PublishJob

    server = start_server(kind)
    cut = BODY[: BODY.rindex(b"--XyZ--")]
    status, answer = send(server, token, cut, content_length=len(cut))
    assert status == 400, answer
    assert "closing boundary" in answer["error"]["message"]
    assert stray_uploads() == []
    assert not PublishJob.objects.exists()


def test_a_whole_body_is_accepted_by_the_same_server(start_server, token, stray_uploads):
    server = start_server("gunicorn")
    status, answer = send(server, token, BODY, content_length=len(BODY))
    assert status == 202, answer
    assert answer["status"] == "queued"
    assert len(stray_uploads()) == 1  # stored, its version not published yet
