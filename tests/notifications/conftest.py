"""Real receivers on loopback for the notification tests: an SMTP server (aiosmtpd), an
HTTP receiver that checks Standard Webhooks signatures with the `standardwebhooks`
package (as a customer's code would), and fake Slack and SMS providers on the same kind
of server. A clock the services are given (`now=`) stands in for waiting for hours."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller

from catalog.audit import Actor
from tests.api.conftest import as_user, fresh_rate_limits, make_token  # noqa: F401 - the API's cast
from tests.test_embedded import embedded  # noqa: F401 - the embedded mode's manage.py


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- SMTP -----------------------------------------------------------------------------


class _Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 No such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(
            email.message_from_bytes(envelope.content, policy=email.policy.default)
        )
        return "250 Message accepted for delivery"


@dataclass
class SmtpServer:
    host: str
    port: int
    inbox: _Inbox

    @property
    def messages(self):
        return self.inbox.messages

    def env(self) -> dict[str, str]:
        return {"EMAIL_HOST": self.host, "EMAIL_PORT": str(self.port), "EMAIL_USE_TLS": "false"}


@pytest.fixture
def smtp_server(settings):
    inbox = _Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = controller.hostname, controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield SmtpServer(controller.hostname, controller.port, inbox)
    controller.stop()


# --- HTTP receivers -------------------------------------------------------------------


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self):
        return json.loads(self.body)


@dataclass
class Behaviour:
    status: int = 200
    delay: float = 0.0
    location: str = ""
    body: bytes = b"ok"


@dataclass
class Receiver:
    """An HTTP server on loopback; `behave[path]` says how each path answers."""

    port: int
    received: list[Received] = field(default_factory=list)
    behave: dict[str, Behaviour] = field(default_factory=dict)
    scheme: str = "http"
    host: str = "127.0.0.1"

    def url(self, path: str = "/hook") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"

    def at(self, path: str) -> list[Received]:
        return [r for r in self.received if r.path == path]


@contextlib.contextmanager
def serving(state: Receiver, tls: ssl.SSLContext | None = None) -> Iterator[Receiver]:
    """Serves `state` on loopback, over TLS when given a server context, until the end
    of the block."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 - http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            path = self.path
            behaviour = state.behave.get(path, Behaviour())
            if behaviour.delay:
                time.sleep(behaviour.delay)
            state.received.append(
                Received(path, {k.lower(): v for k, v in self.headers.items()}, body, time.time())
            )
            try:
                self.send_response(behaviour.status)
                if behaviour.location:
                    self.send_header("Location", behaviour.location)
                self.send_header("Content-Length", str(len(behaviour.body)))
                self.end_headers()
                self.wfile.write(behaviour.body)
            except (BrokenPipeError, ConnectionResetError):
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        # The handshake runs as each connection is accepted; one refused by the client
        # is dropped by the server loop, which goes on serving.
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver(settings):
    settings.NOTIFY_ALLOW_PRIVATE_HOSTS = ["127.0.0.1"]
    with serving(Receiver(port=0)) as state:
        yield state


def verify(secret: str, received: Received) -> dict:
    """What a receiver does: the `standardwebhooks` package checks the signature."""
    from standardwebhooks.webhooks import Webhook

    return Webhook(secret).verify(received.body, received.headers)


# --- The cast and a clock ---------------------------------------------------------------


def record(topic: str, dataset, **payload):
    """Records `topic` about `dataset` through the outbox, as the app that knows it would."""
    from django.db import transaction

    from catalog import events

    with transaction.atomic():
        return events.event_record(
            topic=topic,
            payload={
                "dataset_id": dataset.pk,
                "dataset": dataset.path,
                "organization": dataset.organization.slug,
                **payload,
            },
            organization=dataset.organization,
        )


def at(text: str) -> datetime:
    """A moment in UTC, from '2026-03-02 23:30'."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.fixture
def subscriber(django_user_model, acme, system):
    """A viewer of acme with an email address."""
    from catalog.models import Role
    from catalog.services import membership_set

    user = django_user_model.objects.create_user(
        username="sue", password="pw-sue", email="sue@example.com"
    )
    membership_set(organization=acme, user=user, role=Role.VIEWER, actor=system)
    return user


@pytest.fixture
def stranger(django_user_model, globex, system):
    """A member of another organisation only."""
    from catalog.models import Role
    from catalog.services import membership_set

    user = django_user_model.objects.create_user(
        username="stan", password="pw-stan", email="stan@example.com"
    )
    membership_set(organization=globex, user=user, role=Role.VIEWER, actor=system)
    return user


CSV_V1 = b"date_key,store_id,revenue\n2024-08-10,ST0001,10.5\n2024-08-10,ST0002,7\n"
CSV_V1_MORE = CSV_V1 + b"2024-08-11,ST0003,1.5\n"
CSV_BREAKING = b"date_key,store_id\n2024-08-10,ST0001\n2024-08-11,ST0002\n"


@pytest.fixture
def published(dataset, publish):
    job = publish(dataset, CSV_V1)
    assert job.status == "succeeded", job.message
    return dataset


@pytest.fixture
def actor_of():
    def make(user) -> Actor:
        return Actor(user=user, via="api")

    return make
