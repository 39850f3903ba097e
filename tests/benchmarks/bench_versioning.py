"""Versioning: what classifying a new version costs, next to the publish it is part of.

    diff        schema diff and classification of two 2,000-column schemas (half the
                columns retyped, a third gaining nulls, one removed, one added), and
                apart from it the changelog entries written for that diff
    publish     a --size-mib MiB CSV published in this process (staging, inspection,
                copy, commit) into a dataset whose current version it is classified
                against (an added column: a minor version, changelog, diff)
    baseline    the same file published into a dataset with no previous version

Each publish is timed --rounds times (at least three), interleaved with its baseline;
the ratio publish / baseline is the median of the rounds' ratios, printed last with their
spread (tests/benchmarks/measure.py); the goal is at most 1.05.

Standalone:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dataset_publisher_bench \\
        .venv/bin/python tests/benchmarks/bench_versioning.py

With a PostgreSQL DATABASE_URL, a database of its own is created beside the one named
(`<name>_versioning_<pid>`) and dropped at the end; without one, SQLite. Objects are kept
on local disk (the embedded storage) and tasks in a folder queue, all under a temporary
folder, so no worker anywhere picks up this run's jobs.
"""

from __future__ import annotations

import argparse
import io
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT))

from tests.benchmarks.measure import Goal, Series, ratio_line  # noqa: E402

MiB = 1024 * 1024


def say(name: str, value: object) -> None:
    print(f"{name}: {value}", flush=True)


def _own_database(url: str) -> tuple[str, str | None]:
    """A database of this run's own beside the one `url` names; returns its URL and its
    name (None for SQLite)."""
    if not url.startswith(("postgres://", "postgresql://")):
        return "", None
    import psycopg

    parts = urlparse(url)
    name = f"{(parts.path.lstrip('/') or 'postgres')}_versioning_{os.getpid()}"
    admin = urlunparse(parts._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    return urlunparse(parts._replace(path=f"/{name}")), name


def _drop_database(url: str, name: str) -> None:
    import psycopg

    admin = urlunparse(urlparse(url)._replace(path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def write_csv(path: Path, size: int) -> None:
    """Seven columns of mixed types; a block of varied rows repeated up to `size`."""
    rows = []
    for i in range(4096):
        rows.append(
            f"2024-{1 + i % 12:02d}-{1 + i % 28:02d},ST{i % 997:04d},"
            f"{(i * 7919) % 100000 / 100:.2f},{i % 513},{'true' if i % 7 == 0 else 'false'},"
            f"2024-08-10T{i % 24:02d}:{i % 60:02d}:00,note {i % 89} for the store\n"
        )
    block = "".join(rows).encode()
    with path.open("wb") as out:
        out.write(b"day,store,revenue,units,is_holiday,seen_at,comment\n")
        written = 0
        while written < size:
            out.write(block)
            written += len(block)


def bench_diff(columns: int, repeat: int) -> tuple[float, float]:
    """Best seconds for the diff and classification, and for its changelog entries."""
    from versioning.services.changelog import changelog_entries
    from versioning.services.diff import schema_diff

    types = ("integer", "float", "date", "timestamp", "string", "boolean")
    old = [{"name": f"c{i}", "type": types[i % 6], "nulls": 0} for i in range(columns)]
    new = [
        {"name": f"c{i}", "type": types[(i + (i % 2)) % 6], "nulls": i % 3}
        for i in range(1, columns + 1)
    ]
    best_diff = best_changelog = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        diff = schema_diff(
            old=old, new=new, old_rows=10, new_rows=10, base_version="1.0.0", target_version="2.0.0"
        )
        diff.as_dict()
        assert diff.change_type == "major"
        middle = time.perf_counter()
        changelog_entries(diff=diff)
        best_diff = min(best_diff, middle - started)
        best_changelog = min(best_changelog, time.perf_counter() - middle)
    return best_diff, best_changelog


def publish_seconds(dataset, path: Path) -> float:
    from catalog.audit import Actor
    from versioning.models import JobSource, JobStatus
    from versioning.services import publish_job_create, publish_job_run

    started = time.perf_counter()
    with path.open("rb") as stream:
        job = publish_job_create(
            dataset=dataset,
            stream=stream,
            filename=path.name,
            actor=Actor.system(via="command"),
            source=JobSource.COMMAND,
        )
    job = publish_job_run(job_id=job.pk)
    elapsed = time.perf_counter() - started
    assert job.status == JobStatus.SUCCEEDED, job.message
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=5, help="at least 3 (5)")
    parser.add_argument("--columns", type=int, default=2000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-versioning-"))
    given = os.environ.get("DATABASE_URL", "")
    database_url, database_name = _own_database(given)
    for name in ("REDIS_URL", "CELERY_BROKER_URL", "CACHE_REDIS_URL", "S3_BUCKET"):
        os.environ.pop(name, None)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="config.settings",
        VAR_DIR=str(work / "var"),
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="false",
        OPENLINEAGE_URL="",
        OPENLINEAGE_FILE="",
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    try:
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", verbosity=0)
        return _measure(args, work)
    finally:
        from django.db import connections

        connections.close_all()
        if database_name:
            _drop_database(given, database_name)
        shutil.rmtree(work, ignore_errors=True)


def _measure(args, work: Path) -> int:
    from catalog.audit import Actor
    from catalog.services import dataset_create, organization_create
    from versioning.models import DatasetVersion, JobSource
    from versioning.services import publish_job_create, publish_job_run

    say("machine", f"{os.cpu_count()} cores, Python {sys.version.split()[0]}")
    seconds, changelog = bench_diff(args.columns, repeat=20)
    say(
        f"diff and classification of two {args.columns:,}-column schemas (best of 20)",
        f"{seconds * 1000:.2f} ms",
    )
    say("its changelog entries (best of 20)", f"{changelog * 1000:.2f} ms")

    path = work / "big.csv"
    write_csv(path, args.size_mib * MiB)
    say("file", f"{path.stat().st_size / MiB:.1f} MiB")
    actor = Actor.system(via="command")
    org = organization_create(slug="bench", name="Bench", actor=actor)
    small = io.BytesIO()
    with path.open("rb") as whole:
        header = whole.readline()
        lines = [whole.readline() for _ in range(100)]
    # The previous version lacks the last column: the big file adds it (a minor change).
    cut = [line.rsplit(b",", 1)[0] + b"\n" for line in [header, *lines]]
    small.write(b"".join(cut))

    # One untimed publish first: imports, connections and the disk cache warm up.
    publish_seconds(dataset_create(organization=org, layer="gold", name="warm", actor=actor), path)
    timings = {"publish": Series(), "baseline": Series()}
    for i in range(args.rounds):
        classified = dataset_create(
            organization=org, layer="gold", name=f"classified_{i}", actor=actor
        )
        first = publish_job_create(
            dataset=classified,
            stream=io.BytesIO(small.getvalue()),
            filename="small.csv",
            actor=actor,
            source=JobSource.COMMAND,
        )
        publish_job_run(job_id=first.pk)
        empty = dataset_create(organization=org, layer="gold", name=f"empty_{i}", actor=actor)
        # Interleaved, alternating which goes first, so drift hits both alike.
        order = [("publish", classified), ("baseline", empty)]
        if i % 2:
            order.reverse()
        for label, dataset in order:
            elapsed = timings[label].add(publish_seconds(dataset, path))
            say(f"round {i + 1} {label}", f"{elapsed:.3f} s")
        version = DatasetVersion.objects.get(dataset=classified, is_current=True)
        assert (version.version, version.change_type) == ("1.1.0", "minor"), version.version
    say("publish with classification, s", timings["publish"])
    say("publish into an empty dataset, s", timings["baseline"])
    share = seconds / timings["publish"].median * 100
    say("2,000-column diff next to this publish", f"{share:.2f} %")
    print(
        ratio_line(
            "ratio publish with classification / without",
            timings["publish"],
            timings["baseline"],
            goal=Goal.at_most(1.05),
            precision=3,
        ),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
