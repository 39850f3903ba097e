"""The replication copy engine against a plain boto3 copy, and its bandwidth limits.

Two moto S3 servers on free loopback ports stand for two regions. One object of
--size-mib MiB (default 1024) is put in the source, then, side by side in the same run:

    boto3 copy     a plain streamed copy: `get_object` of the source, its body handed to
                   `upload_fileobj` of the target (the same part size and concurrency)
    engine copy    `replication.engine.copy_object`, unthrottled: the same stream, hashed
                   as it goes, to a staging key; read back and hashed on the target;
                   promoted to the final key; staging removed

each --rounds times (at least three), alternating; the ratio is the median of the rounds'
ratios, with their spread (the machines are shared and noisy). Then the limits, on an
object of --throttle-mib MiB (default 64), each also the median of --rounds copies:

    100 Mbps, 400 Mbps   one engine copy throttled at that rate; the measured rate is the
                         bytes over the time from the first to the last byte through the
                         limit (the end-to-end rate, verification included, beside it)
    2 x 100 Mbps link    two worker processes copying at once over one link limited to
                         100 Mbps (the limit shared through Redis): their bytes together
                         over the time from the first byte of either to the last of both

The ratios print last: engine/boto3 throughput (target at least 0.8), and each measured
rate over its limit (target within 5%). Exits non-zero when a target is missed.

    python tests/benchmarks/bench_replication.py --size-mib 256 --throttle-mib 32
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.measure import Goal, Series, ratio_line, ratios  # noqa: E402

BIN = Path(sys.executable).parent
MiB = 1024 * 1024
BUCKET = "bench-replication"
PART = 16 * MiB


def say(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client(url: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=url,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
        config=Config(
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


class Pattern:
    """`size` bytes of a cheap, incompressible-enough pattern, read as a stream."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.block = os.urandom(MiB)

    def read(self, n: int = -1) -> bytes:
        n = self.left if n is None or n < 0 else min(n, self.left)
        out = (self.block * (n // MiB + 1))[:n]
        self.left -= n
        return out


def start_moto(log_dir: Path, name: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    log = open(log_dir / f"moto-{name}.log", "w")  # noqa: SIM115 - lives with the process
    proc = subprocess.Popen(
        [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            client(url).list_buckets()
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    client(url).create_bucket(Bucket=BUCKET)
    return proc, url


def setup_django(var_dir: Path) -> None:
    for name in ("DATABASE_URL", "S3_BUCKET", "S3_ENDPOINT_URL"):
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(var_dir),
        DEBUG="true",
        REDIS_URL=os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/13"),
        REPLICATION_PART_BYTES=str(PART),
        BENCH_KEY_ID="bench",
        BENCH_SECRET="bench",
    )
    import django

    django.setup()


def region(code: str, url: str):
    from replication.models import Region

    return Region(
        code=code,
        name=code,
        endpoint_url=url,
        bucket=BUCKET,
        access_key_env="BENCH_KEY_ID",
        secret_key_env="BENCH_SECRET",
    )


def engine_copy(source_url: str, target_url: str, key: str, sha: str, *, mbps, link: str):
    """One engine copy; returns its CopyResult and its seconds in all."""
    from replication.engine import copy_object, region_store

    started = time.perf_counter()
    result = copy_object(
        source=region_store(region("bench-src", source_url)),
        target=region_store(region("bench-dst", target_url)),
        key=key,
        replica_id=int(uuid.uuid4().int % 10**9),
        attempt=1,
        expected_sha256=sha,
        content_type="application/octet-stream",
        link=link,
        mbps=mbps,
        heartbeat=lambda: True,
    )
    return result, time.perf_counter() - started


def boto_copy(source_url: str, target_url: str, key: str) -> float:
    from boto3.s3.transfer import TransferConfig

    started = time.perf_counter()
    body = client(source_url).get_object(Bucket=BUCKET, Key=key)["Body"]
    client(target_url).upload_fileobj(
        body,
        BUCKET,
        f"plain/{key}",
        Config=TransferConfig(multipart_threshold=PART, multipart_chunksize=PART),
    )
    return time.perf_counter() - started


def put_object(url: str, key: str, size: int) -> str:
    """Puts `size` pattern bytes at `key`; returns their SHA-256."""
    import hashlib

    from boto3.s3.transfer import TransferConfig

    digest = hashlib.sha256()
    source = Pattern(size)

    class Hashing:
        def read(self, n=-1):
            data = source.read(n)
            digest.update(data)
            return data

    client(url).upload_fileobj(
        Hashing(), BUCKET, key, Config=TransferConfig(multipart_chunksize=PART)
    )
    return digest.hexdigest()


def child(args) -> None:
    """A second worker process: one throttled copy, its timings as JSON on stdout."""
    setup_django(Path(args.var_dir))
    result, _ = engine_copy(
        args.source, args.target, args.key, args.sha, mbps=args.mbps, link=args.link
    )
    print(json.dumps({"started": result.stream_started_at, "ended": result.stream_ended_at}))


def rate_mbps(size: int, seconds: float) -> float:
    return size * 8 / seconds / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--throttle-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3, help="at least 3 (3)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    for name in ("source", "target", "key", "sha", "link", "var-dir"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    parser.add_argument("--mbps", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return 0

    work = Path(tempfile.mkdtemp(prefix="bench-replication-"))
    setup_django(work / "var")
    procs = []
    try:
        source_proc, source = start_moto(work, "source")
        target_proc, target = start_moto(work, "target")
        procs = [source_proc, target_proc]
        size = args.size_mib * MiB
        say("object", f"{args.size_mib} MiB, parts of {PART // MiB} MiB")
        sha = put_object(source, "big.bin", size)

        plain, engine, capacity = Series(), Series(), []
        for round_ in range(1, args.rounds + 1):
            seconds = plain.add(boto_copy(source, target, "big.bin"))
            say(f"round {round_} boto3 copy", f"{seconds:.2f} s, {size / seconds / MiB:.1f} MiB/s")
            client(target).delete_object(Bucket=BUCKET, Key="plain/big.bin")
            result, total = engine_copy(source, target, "big.bin", sha, mbps=None, link="x")
            engine.add(total)
            stream = result.stream_ended_at - result.stream_started_at
            capacity.append(rate_mbps(size, stream))
            say(
                f"round {round_} engine copy",
                f"{total:.2f} s, {size / total / MiB:.1f} MiB/s (verified by "
                f"{result.verified_by}; unthrottled, the source streamed at "
                f"{capacity[-1]:.0f} Mbps)",
            )
            client(target).delete_object(Bucket=BUCKET, Key="big.bin")
        client(source).delete_object(Bucket=BUCKET, Key="big.bin")

        small = args.throttle_mib * MiB
        small_sha = put_object(source, "small.bin", small)
        rates = {100: Series(), 400: Series()}
        for round_ in range(1, args.rounds + 1):
            for mbps, measured in rates.items():
                link = f"bench-{uuid.uuid4().hex[:8]}"
                result, total = engine_copy(
                    source, target, "small.bin", small_sha, mbps=mbps, link=link
                )
                stream = result.stream_ended_at - result.stream_started_at
                rate = measured.add(rate_mbps(small, stream))
                say(
                    f"round {round_} throttled at {mbps} Mbps",
                    f"{rate:.1f} Mbps through the limit over {stream:.2f} s "
                    f"({rate_mbps(small, total):.1f} Mbps end to end, verification included)",
                )
                client(target).delete_object(Bucket=BUCKET, Key="small.bin")

        link = f"bench-shared-{uuid.uuid4().hex[:8]}"
        # Two objects (each worker copies its own), both over the one link.
        for i in range(2):
            client(source).copy_object(
                Bucket=BUCKET,
                Key=f"small-{i}.bin",
                CopySource={"Bucket": BUCKET, "Key": "small.bin"},
            )
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--child",
                    "--source",
                    source,
                    "--target",
                    target,
                    "--key",
                    f"small-{i}.bin",
                    "--sha",
                    small_sha,
                    "--mbps",
                    "100",
                    "--link",
                    link,
                    "--var-dir",
                    str(work / f"var-{i}"),
                ],
                cwd=ROOT,
                stdout=subprocess.PIPE,
                text=True,
                env={**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"},
            )
            for i in range(2)
        ]
        results = []
        for proc in children:
            out, _ = proc.communicate(timeout=600)
            if proc.returncode:
                raise RuntimeError(f"a copying worker failed ({proc.returncode})")
            results.append(json.loads(out.strip().splitlines()[-1]))
        shared_seconds = max(r["ended"] for r in results) - min(r["started"] for r in results)
        shared = rate_mbps(2 * small, shared_seconds)
        say(
            "two workers on one 100 Mbps link",
            f"{shared:.1f} Mbps together over {shared_seconds:.2f} s",
        )
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(10)

    say("boto3 copy, s", plain)
    say("engine copy, s", engine)
    for mbps, measured in rates.items():
        say(f"throttled at {mbps} Mbps, Mbps", measured)
    copy_goal = Goal.at_least(0.8)
    copy_ratio = ratios(plain, engine).median
    checks = [
        (
            "100 Mbps measured/limit",
            rates[100].median / 100,
            lambda r: abs(r - 1) <= 0.05,
            "1 +- 0.05",
        ),
        (
            "400 Mbps measured/limit",
            rates[400].median / 400,
            lambda r: abs(r - 1) <= 0.05,
            "1 +- 0.05",
        ),
        (
            "2 workers, 100 Mbps link measured/limit",
            shared / 100,
            lambda r: abs(r - 1) <= 0.05,
            "1 +- 0.05",
        ),
    ]
    failed = not copy_goal.met(copy_ratio)
    print("\n--- ratios", flush=True)
    print(
        ratio_line("engine/boto3 copy throughput", plain, engine, goal=copy_goal, precision=3),
        flush=True,
    )
    ceiling = max(capacity)
    for name, ratio, ok, target in checks:
        passed = ok(ratio)
        failed |= not passed
        note = ""
        if (
            not passed
            and "Mbps" in name
            and ceiling < int(name.split()[0 if name[0].isdigit() else 2]) * 1.05
        ):
            note = f": this machine streams only {ceiling:.0f} Mbps unthrottled"
        print(
            f"{name}: {ratio:.3f} (target {target}) {'ok' if passed else 'MISSED'}{note}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
