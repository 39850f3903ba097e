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


def test_two_large_uploads_at_once_are_each_inspected_in_a_process_of_their_own(
    start_server, token, stray_uploads
):
    # gunicorn's threaded worker serves both at once; each thread starts a child of its
    # own (every file here is "large"), which must see the end of its own file only.
    import hashlib
    import threading

    from versioning.models import PublishJob

    server = start_server("gunicorn", env={"INSPECTION_PROCESS_MIN_BYTES": "1"})
    copies = {"1.0.0": 20_000, "2.0.0": 30_000}
    files = {version: CSV * n for version, n in copies.items()}
    answers: dict[str, tuple[int, dict]] = {}

    def upload(version: str) -> None:
        body = multipart([("version", None, version.encode()), ("file", "day.csv", files[version])])
        answers[version] = send(server, token, body, content_length=len(body))

    threads = [threading.Thread(target=upload, args=(version,)) for version in files]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert {version: status for version, (status, _) in answers.items()} == {
        "1.0.0": 202,
        "2.0.0": 202,
    }, answers
    for version, data in files.items():
        job = PublishJob.objects.get(pk=answers[version][1]["id"])
        assert job.profile["sha256"] == hashlib.sha256(data).hexdigest()
        assert job.profile["size_bytes"] == len(data)
        # Every line but the first is a row (the repeated header lines too).
        assert job.profile["row_count"] == 4 * copies[version] - 1
    assert len(stray_uploads()) == 2
    assert server.log.read_text().count("Inspecting an upload of") == 2
