"""A large file through the resumable upload API end to end, against boto3's upload_file.

One run generates a CSV of --size-mib MiB and, in the services mode (a PostgreSQL
database of its own, Redis database --redis-db, moto's S3 server on a free loopback
port, gunicorn, one `celery -A config worker`), measures side by side on that file:

    resumable     a client over real HTTP: begin the upload (POST .../uploads/) with
                  `"checksum": "crc32"`, then four threads, each for one part at a time:
                  the part's CRC32 (read from the file), its URL asked for with it, the
                  PUT to S3's presigned URL with `x-amz-checksum-crc32`; complete (202),
                  follow the upload until the worker has joined the parts and queued the
                  publish job, then follow the job until the worker has published it and
                  the version is current (--no-checksum: the URLs of every part in one
                  request, and parts without a checksum, as a curl client sends them)
    upload floor  boto3's `upload_file` of the same file into the same bucket (its
                  defaults: 8 MiB parts, ten at a time, each with its CRC32)

With --explicit-version each upload is begun for a version (2.0.1, 2.0.2, ...), as a
pipeline that numbers its own versions would: the parts are then joined at that
version's key and the publish copies nothing (without one, the version is the worker's
to decide, so the upload is joined at a staging key and copied once).

The two alternate, --rounds times (at least three), through tests/benchmarks/measure.py;
the figure is the median of the per-round ratios, with their spread. Between rounds the
file's last row is copied once more, so each round publishes new bytes (identical bytes
would publish nothing). The time split of each resumable round prints as it is taken:
upload (begin, part URLs, parts), complete (from the complete request until the joined
object's publish job exists: the worker's CompleteMultipartUpload, which moto carries
out by copying every part into the object and taking a checksum: the parts' CRC32s
with the option, a CRC64NVME over the whole object without), worker (the publish job:
one read to inspect, and without --explicit-version the copy to the version's key, made
while it reads).
The ratio prints last.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.bench_api import gunicorn  # noqa: E402
from tests.benchmarks.bench_publish import (  # noqa: E402
    _BUCKET,
    _S3_CREDENTIALS,
    change_last_row,
    forget_redis_keys,
    manage,
    postgres_database,
    product_env,
    s3_client,
    s3_server,
    say,
    worker,
)
from tests.benchmarks.measure import Goal, Series, alternate, ratio_line  # noqa: E402
from tests.benchmarks.publish_data import MiB, write_csv  # noqa: E402

THREADS = 4
POLL_SECONDS = 0.05
GOAL = Goal.at_most(1.5)

_SETUP = """
import django
django.setup()
from catalog.audit import Actor
from catalog.models import Role
from catalog.services import dataset_create, organization_create, membership_set
from catalog.tokens import token_create
from django.contrib.auth import get_user_model

actor = Actor.system(via="command")
org = organization_create(slug="bench", name="Benchmark", actor=actor)
dataset_create(organization=org, layer="gold", name="sales", actor=actor, title="Sales")
user = get_user_model().objects.create_user("bench-steward")
membership_set(organization=org, user=user, role=Role.STEWARD, actor=actor)
_, raw = token_create(
    user=user, name="bench", scopes=["read", "publish"], actor=Actor(user=user, via="api")
)
print(raw)
"""


def setup_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [sys.executable, "-c", _SETUP],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return done.stdout.strip().splitlines()[-1]


class _Part:
    """One part of the file, read in chunks as the HTTP client sends it."""

    def __init__(self, path: Path, offset: int, length: int) -> None:
        self.handle = path.open("rb")
        self.handle.seek(offset)
        self.left = self.length = length

    def __len__(self) -> int:
        return self.length

    def read(self, size: int = -1) -> bytes:
        size = MiB if size is None or size < 0 else size
        data = self.handle.read(min(size, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data


def crc32_of(path: Path, offset: int, length: int) -> str:
    value = 0
    part = _Part(path, offset, length)
    try:
        while chunk := part.read(8 * MiB):
            value = zlib.crc32(chunk, value)
    finally:
        part.handle.close()
    return base64.b64encode(value.to_bytes(4, "big")).decode()


def resumable_once(
    base: str, token: str, path: Path, split: dict, version: str = "", checksum: bool = True
) -> float:
    """Begin, part URLs, parts in parallel, complete, then the worker until current."""
    import urllib3

    http = urllib3.PoolManager(maxsize=THREADS + 1)
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(method: str, url: str, body: dict | None = None, expect: int = 200) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        response = http.request(method, base + url, body=data, headers=auth)
        if response.status != expect:
            raise RuntimeError(f"{method} {url}: {response.status} {response.data[:500]!r}")
        return json.loads(response.data)

    def put(part: dict) -> None:
        body = _Part(path, (part["part_number"] - 1) * upload["part_size"], part["size"])
        headers = {"Content-Length": str(part["size"]), **part["headers"]}
        try:
            response = http.request("PUT", part["url"], body=body, headers=headers)
        finally:
            body.handle.close()
        if response.status != 200:
            raise RuntimeError(f"part {part['part_number']}: {response.status}")

    def put_with_crc32(number: int) -> None:
        size = min(upload["part_size"], upload["size"] - (number - 1) * upload["part_size"])
        crc32 = crc32_of(path, (number - 1) * upload["part_size"], size)
        asked = {"parts": [{"part_number": number, "crc32": crc32}]}
        put(call("POST", upload["part_urls_url"], asked)["parts"][0])

    started = time.perf_counter()
    upload = call(
        "POST",
        "/api/v1/datasets/gold/sales/uploads/",
        {"filename": path.name, "size": path.stat().st_size}
        | ({"version": version} if version else {})
        | ({"checksum": "crc32"} if checksum else {}),
        expect=201,
    )
    with ThreadPoolExecutor(THREADS) as pool:
        if checksum:
            list(pool.map(put_with_crc32, range(1, upload["part_count"] + 1)))
        else:
            list(pool.map(put, call("POST", upload["part_urls_url"], {})["parts"]))
    uploaded = time.perf_counter()
    state = call("POST", upload["complete_url"], expect=202)
    while state["status"] in ("completing", "joining"):
        time.sleep(POLL_SECONDS)
        state = call("GET", upload["url"])
    if state["status"] != "completed":
        raise RuntimeError(f"The upload was not completed: {state}")
    completed = time.perf_counter()
    job = call("GET", state["job_url"])
    while job["status"] not in ("succeeded", "failed"):
        time.sleep(POLL_SECONDS)
        job = call("GET", job["url"])
    finished = time.perf_counter()
    if job["status"] != "succeeded" or job["outcome"] != "published":
        raise RuntimeError(f"The publish did not publish: {job['message']}")
    split.update(
        upload=uploaded - started, complete=completed - uploaded, worker=finished - completed
    )
    return finished - started


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="the file (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (3)")
    parser.add_argument(
        "--redis-db", type=int, default=8, help="the Redis database for the run's queues (8)"
    )
    parser.add_argument(
        "--explicit-version",
        action="store_true",
        help="begin each upload for a version of its own (joined at its key, no copy)",
    )
    parser.add_argument(
        "--part-mib",
        type=int,
        default=0,
        help="RESUMABLE_PART_BYTES in MiB (default: the product's 64, less for a small file)",
    )
    parser.add_argument(
        "--no-checksum",
        action="store_true",
        help="send parts without their CRC32 (uploads begun without the checksum option)",
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-uploads-"))
    server_url = os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/postgres"
    redis = urlparse(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/13")
    redis_url = urlunparse(redis._replace(path=f"/{args.redis_db}"))
    try:
        big = work / "sales.csv"
        rows = write_csv(big, args.size_mib * MiB, seed=1)
        say("file", f"{big.stat().st_size:,} bytes, {rows:,} rows")
        # The product's part size (64 MiB), smaller for a small file so that all four
        # threads have parts to send.
        part_mib = args.part_mib or max(5, min(64, args.size_mib // (2 * THREADS)))
        say(
            "mode",
            f"services: PostgreSQL (a database of its own), Redis database {args.redis_db}, "
            f"moto S3 on loopback, gunicorn, one worker; parts of {part_mib} MiB, "
            f"{THREADS} at a time; "
            + ("each upload for a version of its own" if args.explicit_version else "no version")
            + ("; parts without checksums" if args.no_checksum else "; each part with its CRC32"),
        )
        with (
            s3_server(work / "moto.log") as endpoint,
            postgres_database(server_url) as database_url,
        ):
            env = product_env(
                work / "var",
                DATABASE_URL=database_url,
                REDIS_URL=redis_url,
                S3_BUCKET=_BUCKET,
                S3_ENDPOINT_URL=endpoint,
                ALLOWED_HOSTS="127.0.0.1",
                SECURE_SSL_REDIRECT="false",
                SECURE_HSTS_SECONDS="0",
                API_RATE="100000000/min",
                RESUMABLE_PART_BYTES=str(part_mib * MiB),
                **_S3_CREDENTIALS,
            )
            manage(env, "migrate", "--noinput")
            token = setup_token(env)
            s3 = s3_client(endpoint)
            with gunicorn(env, work / "gunicorn.log") as base, worker(env, work / "worker.log"):
                splits: list[dict] = []

                def resumable() -> float:
                    split: dict = {}
                    version = f"2.0.{len(splits) + 1}" if args.explicit_version else ""
                    seconds = resumable_once(
                        base, token, big, split, version, checksum=not args.no_checksum
                    )
                    splits.append(split)
                    say(
                        f"round_{len(splits)}_split_s",
                        ", ".join(f"{k} {v:.2f}" for k, v in split.items()),
                    )
                    change_last_row(big)
                    return seconds

                def upload_file() -> float:
                    started = time.perf_counter()
                    s3.upload_file(str(big), _BUCKET, "baseline/sales.csv")
                    seconds = time.perf_counter() - started
                    s3.delete_object(Bucket=_BUCKET, Key="baseline/sales.csv")
                    return seconds

                # One small round of each first, not counted: the first requests pay for
                # imports and connections in gunicorn, the worker and moto.
                warm = work / "warm.csv"
                write_csv(warm, 8 * MiB, seed=2)
                resumable_once(base, token, warm, {}, checksum=not args.no_checksum)
                s3.upload_file(str(warm), _BUCKET, "baseline/warm.csv")
                s3.delete_object(Bucket=_BUCKET, Key="baseline/warm.csv")
                rounds = alternate(
                    {"resumable_s": resumable, "upload_file_s": upload_file},
                    rounds=max(3, args.rounds),
                )
            forget_redis_keys(redis_url, env["BENCH_QUEUE"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for part in ("upload", "complete", "worker"):
        say(f"resumable_{part}_s", Series([s[part] for s in splits]))
    say("resumable_s", rounds["resumable_s"])
    say("upload_file_s", rounds["upload_file_s"])
    # The parts alone (begin, part URLs, the PUTs), against the same floor: what the
    # client waits for before its connection may drop without loss.
    print(
        ratio_line(
            "ratio_resumable_parts_only_to_upload_file",
            Series([s["upload"] for s in splits]),
            rounds["upload_file_s"],
        )
    )
    print(
        ratio_line(
            f"ratio_resumable_{args.size_mib}mib_to_upload_file"
            + ("_explicit_version" if args.explicit_version else ""),
            rounds["resumable_s"],
            rounds["upload_file_s"],
            goal=GOAL,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
