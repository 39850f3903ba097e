"""The embedded mode (`make run`: SQLite, the folder queue, files under VAR_DIR): a
subscription made there brings an inbox entry, an email file under VAR_DIR/mail and a
signed webhook after a breaking publish, which the inbox page then shows."""

from __future__ import annotations

from email import message_from_bytes, policy

from tests.conftest import wait_for
from tests.notifications.conftest import verify
from tests.test_embedded import embedded_worker

SETUP = """
import io
from django.contrib.auth import get_user_model
from catalog import events
from catalog.audit import Actor
from catalog.models import Role
from catalog.services import dataset_create, membership_set, organization_create
from notifications import services
from versioning.models import JobSource
from versioning.services import publish_job_create, publish_job_run

actor = Actor.system(via="command")
org = organization_create(slug="scout", name="Scout", actor=actor)
dataset = dataset_create(organization=org, layer="gold", name="txn_daily", actor=actor)
job = publish_job_create(
    dataset=dataset, stream=io.BytesIO(b"date_key,store_id,revenue\\n2024-08-11,ST1,9.5\\n"),
    filename="v1.csv", actor=actor, source=JobSource.COMMAND,
)
publish_job_run(job_id=job.pk)
# The first version's events are handled before anyone subscribes.
events.events_deliver(delivery_ids=events.events_pending_ids())
user = get_user_model().objects.create_user(username="reader", email="reader@example.com")
membership_set(organization=org, user=user, role=Role.VIEWER, actor=actor)
services.preference_update(user=user, channels=["inapp", "email", "webhook"])
services.subscription_create(
    user=user, dataset="gold/txn_daily", types=["schema_changed", "new_version"]
)
endpoint, secret = services.webhook_endpoint_create(user=user, url="{url}")
print(secret)
"""

# The subscriber's pages on SQLite: the inbox, unread first, with the header's count, and
# quiet hours saved in a time zone.
PAGES = """
from django.contrib.auth import get_user_model
from django.test import Client
from django.test.utils import setup_test_environment
from notifications.models import Preference
setup_test_environment()
client = Client()
client.force_login(get_user_model().objects.get(username="reader"))
inbox = client.get("/notifications/inbox/").content.decode()
saved = client.post("/notifications/preferences/", {
    "channels": ["inapp"], "frequency": "immediate", "quiet_start": "22:00",
    "quiet_end": "07:00", "time_zone": "Asia/Tokyo", "digest_hour": "8", "digest_weekday": "0",
})
pref = Preference.objects.get(user__username="reader")
print("inbox:", "Inbox: 1 unread" in inbox and "scout/gold/txn_daily 2.0.0" in inbox)
print("preferences:", saved.status_code, pref.time_zone, pref.quiet_start, pref.quiet_end)
"""

INBOX = """
from notifications.models import InboxItem
print("|".join(InboxItem.objects.values_list("title", flat=True)))
"""


def test_a_breaking_publish_notifies_on_every_channel_in_the_embedded_mode(
    embedded, tmp_path, receiver
):
    embedded.env["NOTIFY_ALLOW_PRIVATE_HOSTS"] = "127.0.0.1"
    embedded("migrate", "--noinput")
    out = embedded("shell", "-c", SETUP.format(url=receiver.url())).stdout
    [secret] = [line for line in out.split() if line.startswith("whsec_")]
    with embedded_worker(embedded.env, tmp_path):
        source = tmp_path / "txn.csv"
        source.write_bytes(b"date_key,store_id\n2024-08-12,ST0001\n")
        embedded(
            "publish",
            "gold/txn_daily",
            str(source),
            "--org",
            "scout",
            "--wait",
            "--timeout",
            "120",
            "--verbosity",
            "0",
        )
        mail_dir = tmp_path / "var" / "mail"
        # The file backend ends each message with a line of dashes: wait for the whole of it.
        wait_for(
            lambda: (
                mail_dir.exists()
                and any(f.read_text().endswith("-" * 79 + "\n") for f in mail_dir.iterdir())
                and receiver.received
            ),
            timeout=60,
            message="the email file and the webhook",
        )
        [mail_file] = list(mail_dir.iterdir())
        mail = message_from_bytes(mail_file.read_bytes(), policy=policy.default)
        assert mail["To"] == "reader@example.com"
        assert mail["Subject"] == "Breaking schema change in scout/gold/txn_daily 2.0.0"
        assert verify(secret, receiver.received[0])["data"]["version"] == "2.0.0"
        titles = embedded("shell", "-c", INBOX).stdout.strip().splitlines()[-1]
        assert titles == "Breaking schema change in scout/gold/txn_daily 2.0.0"
        assert len(receiver.received) == 1
        pages = embedded("shell", "-c", PAGES).stdout
        assert "inbox: True" in pages
        assert "preferences: 302 Asia/Tokyo 22:00:00 07:00:00" in pages
