"""Notifications: fan-out and delivery against baselines measured in the same run.

    fan-out     one event fanned out to --subscribers in-app subscribers of a private
                dataset (`event_fan_out`: matching subscriptions, the access check, one
                inbox row each)
      baseline  inserting the same number of inbox rows with one bulk insert
    webhooks    --messages webhook deliveries sent by `deliveries_send` in batches of
                NOTIFY_BATCH_SIZE, --concurrency threads at a time, each batch to its own
                endpoint on a loopback receiver (claim, access check, render, sign, safe
                POST, mark sent)
      baseline  the same number of signed POSTs (HMAC-SHA256, Standard Webhooks headers)
                with `requests.post` in a plain loop, --concurrency threads at a time
    email       --messages email deliveries sent by `deliveries_send` to an SMTP server on
                loopback (aiosmtpd), in batches over one connection each: one batch at a
                time (the ratio the goal applies to), and --concurrency at a time as
                workers send them; and, for reference, Django's own email classes in a
                loop (the channel builds and sends each message with them)
      baseline  a plain `smtplib` loop over one connection that builds each message (a
                text and an HTML part, the same headers) with the standard library and
                sends it

The receivers run in a process of their own. Each measurement is taken --rounds times (at
least three), alternating with its baseline; each ratio (baseline time / our time: 1.0
means as fast as the baseline) is the median of the rounds' ratios, printed with their
spread (tests/benchmarks/measure.py), last.

With a PostgreSQL DATABASE_URL a database of its own is created beside the one named and
dropped at the end; without one, SQLite. Tasks go to a folder queue under a temporary
folder, so no worker anywhere picks up this run's work.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import json
import os
import secrets
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_versioning import _drop_database, _own_database  # noqa: E402
from tests.benchmarks.measure import Goal, Series, alternate, ratio_line, ratios  # noqa: E402

GOALS = {"fan-out": 0.3, "webhooks": 0.5, "email": 0.5}

RECEIVERS = r"""
import asyncio, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from aiosmtpd.controller import Controller

class Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")
    def log_message(self, *args):
        pass

class Sink:
    async def handle_DATA(self, server, session, envelope):
        return "250 OK"

http = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Hook)
http.daemon_threads = True
smtp = Controller(Sink(), hostname="127.0.0.1", port=int(sys.argv[2]))
smtp.start()
print("ready", flush=True)
http.serve_forever()
"""


def say(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rounds_of(rounds: int, **measures) -> list[Series]:
    """Runs each measure `rounds` times, alternating; the seconds of each, per round."""
    taken = alternate(measures, rounds=rounds, report=None)
    return [taken[name] for name in measures]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subscribers", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=1_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-notifications-"))
    given = os.environ.get("DATABASE_URL", "")
    database_url, database_name = _own_database(given)
    http_port, smtp_port = free_port(), free_port()
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CACHE_REDIS_URL", "S3_BUCKET"):
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(work / "var"),
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        NOTIFY_ALLOW_PRIVATE_HOSTS="127.0.0.1",
        EMAIL_HOST="127.0.0.1",
        EMAIL_PORT=str(smtp_port),
        EMAIL_USE_TLS="false",
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    receivers = subprocess.Popen(
        [sys.executable, "-c", RECEIVERS, str(http_port), str(smtp_port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert receivers.stdout.readline().strip() == "ready"
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return _measure(args, http_port, smtp_port)
    finally:
        receivers.terminate()
        receivers.wait(10)
        from django.db import connections

        connections.close_all()
        if database_name:
            _drop_database(given, database_name)
        shutil.rmtree(work, ignore_errors=True)


def _cast(subscribers: int):
    """An organisation, its private dataset, and `subscribers` members subscribed in-app."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    from catalog.audit import Actor
    from catalog.models import Membership
    from catalog.services import dataset_create, organization_create
    from notifications.models import Subscription

    actor = Actor.system(via="command")
    org = organization_create(slug="bench", name="Bench", actor=actor)
    dataset = dataset_create(organization=org, layer="gold", name="txn_daily", actor=actor)
    User = get_user_model()
    password = make_password(None)
    users = User.objects.bulk_create(
        User(username=f"user{i}", email=f"user{i}@example.com", password=password)
        for i in range(subscribers)
    )
    Membership.objects.bulk_create(Membership(user=u, organization=org) for u in users)
    Subscription.objects.bulk_create(
        Subscription(user=u, dataset=dataset, types=["new_version"], channels=["inapp"])
        for u in users
    )
    return org, dataset, users


def _event(dataset):
    from django.db import transaction

    from catalog import events

    with transaction.atomic():
        return events.event_record(
            topic="version.promoted",
            payload={
                "dataset_id": dataset.pk,
                "dataset": dataset.path,
                "organization": dataset.organization.slug,
                "version": "1.1.0",
            },
            organization=dataset.organization,
        )


def bench_fan_out(args, dataset, users) -> tuple[float, float]:
    from django.db import transaction

    from notifications.models import InboxItem
    from notifications.services import event_fan_out

    def ours() -> float:
        InboxItem.objects.all().delete()
        event = _event(dataset)
        started = time.perf_counter()
        made = event_fan_out(event=event)
        elapsed = time.perf_counter() - started
        assert made == len(users), made
        return elapsed

    def baseline() -> float:
        InboxItem.objects.all().delete()
        started = time.perf_counter()
        with transaction.atomic():
            InboxItem.objects.bulk_create(
                (
                    InboxItem(
                        key=f"base:{u.pk}:inapp",
                        user_id=u.pk,
                        dataset=dataset,
                        notification_type="new_version",
                        title="New version of bench/gold/txn_daily: 1.1.0",
                        body="Version 1.1.0 of bench/gold/txn_daily is now current.",
                    )
                    for u in users
                ),
                batch_size=2000,
            )
        return time.perf_counter() - started

    ours_s, base_s = rounds_of(args.rounds, ours=ours, baseline=baseline)
    say(f"fan-out to {len(users):,} in-app subscribers, s", ours_s)
    say(f"bulk insert of {len(users):,} inbox rows, s", base_s)
    return ours_s, base_s


def _deliveries(channel: str, users, dataset, endpoints=None) -> list[list[int]]:
    """`--messages` pending deliveries on `channel`, as batches the dispatcher would make."""
    from django.conf import settings
    from django.utils import timezone

    from notifications.models import Delivery
    from notifications.rendering import event_context

    event = _event(dataset)
    context = event_context(event, "new_version")
    now = timezone.now()
    rows = Delivery.objects.bulk_create(
        Delivery(
            key=f"{channel}:{event.pk}:{i}",
            event=event,
            user_id=user.pk,
            dataset=dataset,
            endpoint_id=endpoints[i % len(endpoints)] if endpoints else None,
            channel=channel,
            notification_type="new_version",
            context=context,
            due_at=now,
        )
        for i, user in enumerate(users)
    )
    by_target: dict = {}
    for d in rows:
        by_target.setdefault(d.endpoint_id, []).append(d.pk)
    size = settings.NOTIFY_BATCH_SIZE
    return [
        ids[start : start + size]
        for ids in by_target.values()
        for start in range(0, len(ids), size)
    ]


def _in_threads(concurrency: int, jobs: list, run) -> float:
    """Runs `run(job)` for every job on `concurrency` threads; the wall time."""
    from django.db import connection

    pending = list(jobs)
    lock = threading.Lock()

    def worker():
        try:
            while True:
                with lock:
                    if not pending:
                        return
                    job = pending.pop()
                run(job)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - started


def bench_webhooks(args, http_port, dataset, users) -> tuple[float, float]:
    import requests

    from notifications.models import Delivery, DeliveryStatus, WebhookEndpoint
    from notifications.services import deliveries_send, webhook_endpoint_create

    senders = users[: args.messages]
    endpoints = [
        webhook_endpoint_create(user=senders[i], url=f"http://127.0.0.1:{http_port}/hook/{i}")[0].pk
        for i in range(args.concurrency * 2)
    ]
    # Each endpoint's owner is the recipient of its deliveries.
    owners = dict(WebhookEndpoint.objects.filter(pk__in=endpoints).values_list("pk", "user_id"))
    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    key = base64.b64decode(secret[6:])

    def ours() -> float:
        Delivery.objects.all().delete()
        batches = _deliveries("webhook", senders, dataset, endpoints)
        for ep in endpoints:
            Delivery.objects.filter(endpoint_id=ep).update(user_id=owners[ep])
        elapsed = _in_threads(
            args.concurrency, batches, lambda ids: deliveries_send(delivery_ids=ids)
        )
        sent = Delivery.objects.filter(status=DeliveryStatus.SENT).count()
        assert sent == len(senders), sent
        return elapsed

    body = json.dumps({"type": "notification.new_version", "data": {"x": 1}}).encode()

    def post(batch: list[int]) -> None:
        for i in batch:
            msg_id, ts = f"msg_{i}", str(int(time.time()))
            signature = hmac.new(key, f"{msg_id}.{ts}.".encode() + body, hashlib.sha256)
            response = requests.post(
                f"http://127.0.0.1:{http_port}/hook/{i % len(endpoints)}",
                data=body,
                headers={
                    "Content-Type": "application/json",
                    "webhook-id": msg_id,
                    "webhook-timestamp": ts,
                    "webhook-signature": "v1," + base64.b64encode(signature.digest()).decode(),
                },
                timeout=5,
                allow_redirects=False,
            )
            assert response.status_code == 200

    def baseline() -> float:
        per = max(1, len(senders) // args.concurrency)
        jobs = [list(range(s, min(s + per, len(senders)))) for s in range(0, len(senders), per)]
        return _in_threads(args.concurrency, jobs, post)

    ours_s, base_s = rounds_of(args.rounds, ours=ours, baseline=baseline)
    n = len(senders)
    say(f"{n:,} webhooks, {args.concurrency} at a time, s", f"{ours_s} ({n / ours_s.median:.0f}/s)")
    say(
        f"{n:,} plain signed POSTs, {args.concurrency} at a time, s",
        f"{base_s} ({n / base_s.median:.0f}/s)",
    )
    return ours_s, base_s


def bench_email(args, smtp_port, dataset, users) -> dict[str, float]:
    from django.core.mail import EmailMultiAlternatives, get_connection

    from notifications.models import Delivery, DeliveryStatus
    from notifications.services import deliveries_send

    recipients = users[: args.messages]

    def ours(concurrency: int):
        def measure() -> float:
            Delivery.objects.all().delete()
            batches = _deliveries("email", recipients, dataset)
            elapsed = _in_threads(
                concurrency, batches, lambda ids: deliveries_send(delivery_ids=ids)
            )
            sent = Delivery.objects.filter(status=DeliveryStatus.SENT).count()
            assert sent == len(recipients), sent
            return elapsed

        return measure

    subject = "New version of bench/gold/txn_daily: 1.1.0"
    text = (
        "Version 1.1.0 of bench/gold/txn_daily is now current.\n\n"
        "http://127.0.0.1:8000/api/v1/orgs/bench/datasets/gold/txn_daily/"
    )
    html = f"<div><h2>{subject}</h2><p>{text}</p></div>"

    def headers(user) -> dict[str, str]:
        return {
            "List-Unsubscribe": f"<http://127.0.0.1:8000/unsubscribe/{user.pk}/>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }

    def baseline() -> float:
        # A plain loop builds each message (the same parts and headers) and sends it.
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", smtp_port) as smtp:
            for user in recipients:
                message = MIMEMultipart("alternative")
                message["From"], message["To"] = "bench@localhost", user.email
                message["Subject"] = subject
                for name, value in headers(user).items():
                    message[name] = value
                message.attach(MIMEText(text, "plain", "utf-8"))
                message.attach(MIMEText(html, "html", "utf-8"))
                smtp.sendmail("bench@localhost", [user.email], message.as_string())
        return time.perf_counter() - started

    def django_loop() -> float:
        # For reference: Django's own email classes in a loop over one connection, which
        # is what our email channel uses to build and send each message.
        started = time.perf_counter()
        with get_connection() as connection:
            for user in recipients:
                message = EmailMultiAlternatives(
                    subject, text, to=[user.email], headers=headers(user), connection=connection
                )
                message.attach_alternative(html, "text/html")
                message.send()
        return time.perf_counter() - started

    sequential, parallel, base_s, django_s = rounds_of(
        args.rounds,
        sequential=ours(1),
        parallel=ours(args.concurrency),
        baseline=baseline,
        django=django_loop,
    )
    n = len(recipients)
    for label, taken in (
        ("one batch at a time", sequential),
        (f"{args.concurrency} batches at a time", parallel),
        ("by a plain smtplib loop", base_s),
        ("by Django's email classes in a loop (reference)", django_s),
    ):
        say(f"{n:,} emails {label}, s", f"{taken} ({n / taken.median:.0f}/s)")
    return {"sequential": sequential, "parallel": parallel, "base": base_s, "django": django_s}


def _measure(args, http_port: int, smtp_port: int) -> int:
    from django.db import connection

    say("machine", f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    say("database", connection.vendor)
    _, dataset, users = _cast(args.subscribers)
    # Each ratio is baseline time / our time, per round: (baseline series, our series).
    pairs = {"fan-out": bench_fan_out(args, dataset, users)[::-1]}
    pairs["webhooks"] = bench_webhooks(args, http_port, dataset, users)[::-1]
    email = bench_email(args, smtp_port, dataset, users)
    over = ratios(email["sequential"], email["django"]).median
    say("our email channel's time over Django's own loop (median)", f"{over:.2f}x")
    pairs["email"] = (email["base"], email["sequential"])
    pairs[f"email, {args.concurrency} at a time"] = (email["base"], email["parallel"])
    print(flush=True)
    medians = []
    for name, (base, ours) in pairs.items():
        goal = Goal.at_least(GOALS[name]) if name in GOALS else None
        print(ratio_line(f"{name} (baseline time / ours)", base, ours, goal=goal), flush=True)
        value = ratios(base, ours).median
        verdict = (
            "" if goal is None else f" (goal {goal.limit}x{'' if goal.met(value) else ', MISSED'})"
        )
        medians.append(f"{name} {value:.2f}x{verdict}")
    print(f"ratios (baseline time / ours, medians): {'  '.join(medians)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
