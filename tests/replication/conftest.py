"""The replication tests' world: two more S3 servers on loopback (moto, on free ports)
as the APAC and EU regions, a second bucket on the primary's server for the
server-side path, the three regions of seed 000, and a gold rule."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
from django.conf import settings

from catalog.audit import Actor
from tests.api.conftest import api, as_user, make_token  # noqa: F401 - the API's cast
from tests.conftest import BIN, wait_for

REGION_CREDENTIALS = {"REGION_KEY_ID": "testing", "REGION_SECRET": "testing"}
CSV = b"date_key,store_id,revenue\n" + b"".join(
    f"2024-08-{d:02d},ST{s:04d},{s * 1.5:.2f}\n".encode() for d in range(1, 29) for s in range(400)
)  # about 300 KB: several multipart parts at the tests' 64 KiB part size


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    def __init__(self, name: str, log_dir: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_dir / f"moto-{name}.log", "w")  # noqa: SIM115 - closed in stop
        self.proc = subprocess.Popen(
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "S3_UPLOAD_PART_MIN_SIZE": str(64 * 1024)},
        )
        import boto3

        self.client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def wait(self) -> None:
        def up():
            try:
                self.client.list_buckets()
            except Exception:
                return False
            return True

        wait_for(up, timeout=30, message="a region's S3 server")

    def empty(self, bucket: str) -> None:
        listed = self.client.list_objects_v2(Bucket=bucket).get("Contents", [])
        if listed:
            self.client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": o["Key"]} for o in listed]}
            )
        for upload in self.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            self.client.abort_multipart_upload(
                Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"]
            )

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        listed = self.client.list_objects_v2(Bucket=bucket, Prefix=prefix)
        return sorted(o["Key"] for o in listed.get("Contents", []))

    def read(self, bucket: str, key: str) -> bytes:
        return self.client.get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)
        self.log.close()


@pytest.fixture(scope="session")
def region_servers(s3_server):
    """APAC and EU S3 servers, and the primary server's second bucket."""
    os.environ.update(REGION_CREDENTIALS)
    Path(settings.VAR_DIR).mkdir(parents=True, exist_ok=True)
    servers = {
        "ap": S3Server("ap", Path(settings.VAR_DIR)),
        "eu": S3Server("eu", Path(settings.VAR_DIR)),
    }
    for server in servers.values():
        server.wait()
        server.client.create_bucket(Bucket="replicas")
    s3_server.create_bucket(Bucket="datasets-test-copies")
    yield servers
    for server in servers.values():
        server.stop()


@pytest.fixture(autouse=True)
def replication_settings(settings):
    settings.REPLICATION_PART_BYTES = 64 * 1024
    settings.REPLICATION_LEASE_SECONDS = 4
    settings.REPLICATION_THROTTLE_CHUNK_BYTES = 32 * 1024
    yield settings


@pytest.fixture
def regions(db, region_servers, system):
    from replication.models import Region
    from replication.services import region_save

    made = {}
    made["us-east-1"] = region_save(
        region=Region(
            code="us-east-1",
            name="US East",
            is_primary=True,
            cdn_base_url="https://cdn-us-east.scout.io",
        ),
        actor=system,
    )
    for code, server, cdn in (
        ("ap-southeast-1", "ap", "https://cdn-ap.scout.io"),
        ("eu-west-1", "eu", "https://cdn-eu.scout.io"),
    ):
        made[code] = region_save(
            region=Region(
                code=code,
                name=code,
                endpoint_url=region_servers[server].url,
                bucket="replicas",
                s3_region_name=code,
                access_key_env="REGION_KEY_ID",
                secret_key_env="REGION_SECRET",
                cdn_base_url=cdn,
            ),
            actor=system,
        )
    yield made
    for server in region_servers.values():
        server.empty("replicas")


@pytest.fixture
def gold_rule(regions, acme, system):
    from replication.services import rule_create

    return rule_create(
        organization=acme,
        regions=[regions["ap-southeast-1"], regions["eu-west-1"]],
        actor=system,
        name="Gold everywhere",
        pattern="acme/gold/*",
    )


@pytest.fixture
def deliver():
    """Delivers pending outbox events in this process (what the worker would do)."""
    from catalog import events

    def run() -> int:
        return events.events_deliver(delivery_ids=events.events_pending_ids())

    return run


@pytest.fixture
def copy_due():
    """Copies every due replica in this process; returns {replica id: outcome}."""
    from django.utils import timezone

    from replication.models import Replica
    from replication.services import replica_copy

    def run() -> dict[int, str]:
        due = Replica.objects.filter(
            status__in=["pending", "failed"], next_attempt_at__lte=timezone.now()
        ).values_list("pk", flat=True)
        return {pk: replica_copy(replica_id=pk, worker="test") for pk in due}

    return run


@pytest.fixture
def actor_of():
    def make(user) -> Actor:
        return Actor(user=user, via="api")

    return make
