"""Under the documented serving setup (gunicorn with config/gunicorn.py), a client
trickling a large upload does not hold up reads: with one worker process, manifest reads
sent while the upload is under way all answer, and all before the upload ends."""

from __future__ import annotations

import socket
import threading
import time

import pytest
import requests

from tests.api.conftest import CSV
from tests.conftest import wait_for
from tests.serving.test_uploads_on_the_wire import URL

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.s3]

ROW = b"2024-08-12,ST0003,1.5,true\n"
FILE = CSV + ROW * (3 * 1024 * 1024 // len(ROW))  # about 3 MB
PIECES = 20
PAUSE = 0.5  # 20 pieces, one every half second: about 10 s on the wire


def trickle(server, token: str, done: dict) -> None:
    """Sends a multipart upload piece by piece, like a slow link, then reads the answer."""
    head_part = b'--XyZ\r\nContent-Disposition: form-data; name="file"; filename="day.csv"\r\n\r\n'
    body = head_part + FILE + b"\r\n--XyZ--\r\n"
    head = (
        f"POST {URL} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
        f"Authorization: Bearer {token}\r\n"
        "Content-Type: multipart/form-data; boundary=XyZ\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    step = len(body) // PIECES + 1
    with socket.create_connection((server.host, server.port), timeout=60) as sock:
        sock.sendall(head)
        for start in range(0, len(body), step):
            sock.sendall(body[start : start + step])
            done["sent"] = start + step
            time.sleep(PAUSE)  # the slow link itself, not a wait for a result
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    done["status"] = int(answer.split(b" ", 2)[1])
    done["finished"] = time.monotonic()


def test_reads_answer_while_a_slow_upload_is_under_way(start_server, token, stray_uploads):
    server = start_server("gunicorn")
    upload: dict = {"sent": 0}
    thread = threading.Thread(target=trickle, args=(server, token, upload), daemon=True)
    thread.start()
    headers = {"Authorization": f"Bearer {token}"}
    reads = []
    sent = 0
    # One read each time another piece of the upload has gone out, until it is answered.
    while "finished" not in upload and len(reads) < 20:
        wait_for(
            lambda seen=sent: upload["sent"] > seen or "finished" in upload,
            timeout=60,
            interval=0.02,
            message="the next piece of the upload",
        )
        if "finished" in upload:
            break
        sent = upload["sent"]
        response = requests.get(f"{server.url}/api/v1/manifest/", headers=headers, timeout=30)
        reads.append((response.status_code, time.monotonic()))
    thread.join(60)
    assert upload.get("status") == 202, (upload, server.log.read_text()[-3000:])
    assert len(reads) >= 5, reads
    assert all(status == 200 for status, _ in reads), reads
    assert all(at < upload["finished"] for _, at in reads)
    assert len(stray_uploads()) == 1  # stored, its version not published yet
