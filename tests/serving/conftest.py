"""A real web server on a free loopback port, on the test database: gunicorn with the
project's own config (`config/gunicorn.py`), or Django's runserver (the embedded mode's
server). Requests reach it over a real socket, so what a client sends on the wire
(a cut-off body, a slow trickle) is exactly what the server sees."""

from __future__ import annotations

import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from catalog.audit import Actor
from catalog.models import Role
from tests.conftest import BIN, ROOT, _test_database_url, wait_for


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    host: str
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"


def _command(kind: str, port: int) -> list[str]:
    if kind == "gunicorn":
        return [
            str(BIN / "gunicorn"),
            "-c",
            str(ROOT / "config" / "gunicorn.py"),
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            # Test runs side by side must not share gunicorn's one control socket.
            "--no-control-socket",
            "config.wsgi",
        ]
    return [str(BIN / "python"), "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]


@pytest.fixture(scope="module")
def start_server(tmp_path_factory):
    """Starts `gunicorn` or `runserver` once per test module (each test's rows reach it
    through the shared test database); stops them after the module."""
    servers: dict[str, Server] = {}
    procs: list[subprocess.Popen] = []

    def start(kind: str = "gunicorn") -> Server:
        if kind in servers:
            return servers[kind]
        port = free_port()
        log = tmp_path_factory.mktemp(kind) / f"{kind}.log"
        proc = subprocess.Popen(
            _command(kind, port),
            cwd=ROOT,
            env={
                **os.environ,
                "DJANGO_SETTINGS_MODULE": "tests.settings",
                "DATABASE_URL": _test_database_url(),
                "PYTHONUNBUFFERED": "1",
            },
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs.append(proc)
        server = Server("127.0.0.1", port, log)

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"{kind} stopped:\n{log.read_text()}")
            try:
                return requests.get(f"{server.url}/healthz", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(up, timeout=60, message=f"{kind} to answer")
        servers[kind] = server
        return server

    yield start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@pytest.fixture
def token(django_user_model, acme, dataset, system) -> str:
    """A read and publish token of a steward of acme, whose gold/txn_daily exists."""
    from catalog.services import membership_set
    from catalog.tokens import token_create

    user = django_user_model.objects.create_user(username="wire", password="pw-wire")
    membership_set(organization=acme, user=user, role=Role.STEWARD, actor=system)
    _, raw = token_create(
        user=user, name="wire", scopes=["read", "publish"], dataset=None, actor=Actor(user=user)
    )
    return raw
