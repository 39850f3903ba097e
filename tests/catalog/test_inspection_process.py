"""Inspecting a large upload in a process of its own (catalog/inspection_process.py): the
child profiles exactly the bytes the upload read, refuses what the thread refuses with
the same words, fails the upload when it dies, and stays flat in memory.

Real child processes throughout; these need no database."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from catalog.exceptions import FileRejected, InspectionUnavailable
from catalog.inspection import UploadInspector, inspect_stream
from catalog.inspection_process import ProcessInspector, size_hint, upload_inspector
from tests.conftest import wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def sample_csv(rows: int) -> bytes:
    lines = [b"id,amount,day,label,flag"]
    lines += [
        b"%d,%d.%02d,2024-01-%02d,item %d,%s"
        % (i, i % 1000, i % 100, i % 28 + 1, i, b"true" if i % 3 else b"")
        for i in range(rows)
    ]
    return b"\n".join(lines) + b"\n"


def parquet_bytes() -> bytes:
    sink = io.BytesIO()
    pq.write_table(pa.table({"day": ["2024-08-10", None, "2024-08-12"], "n": [1, 2, 3]}), sink)
    return sink.getvalue()


def upload_through(inspector, *, piece: int = 3 * MiB + 7) -> int:
    """Reads the inspector to its end as a storage write does; returns the bytes read."""
    total = 0
    while data := inspector.read(piece):
        total += len(data)
    return total


def is_gone(pid: int) -> bool:
    """True once the process has exited and been reaped (no zombie left)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True
    return "State:\tZ" in status


def _inspection_children() -> list[int]:
    me = str(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
                command = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            if stat.rsplit(")", 1)[1].split()[1] == me and b"inspection_process" in command:
                found.append(int(entry.name))
    return found


# --- which inspector ------------------------------------------------------------------


def test_a_large_upload_gets_a_process_and_a_small_or_unsized_one_a_thread(settings) -> None:
    settings.INSPECTION_PROCESS_MIN_BYTES = 1024
    data = sample_csv(100)

    large = upload_inspector(io.BytesIO(data), format="csv", size_hint=1024)
    small = upload_inspector(io.BytesIO(data), format="csv", size_hint=1023)
    unknown = upload_inspector(io.BytesIO(data), format="csv", size_hint=None)
    for inspector in (large, small, unknown):
        upload_through(inspector)
        assert inspector.finish().row_count == 100

    assert isinstance(large, ProcessInspector)
    assert isinstance(small, UploadInspector) and isinstance(unknown, UploadInspector)


def test_zero_keeps_every_inspection_on_a_thread(settings) -> None:
    settings.INSPECTION_PROCESS_MIN_BYTES = 0
    inspector = upload_inspector(io.BytesIO(b"a\n1\n"), format="csv", size_hint=10 * 1024**3)
    upload_through(inspector)
    assert isinstance(inspector, UploadInspector) and inspector.finish().row_count == 1


def test_the_size_comes_from_the_stream_when_it_can_tell(tmp_path) -> None:
    path = tmp_path / "data.csv"
    path.write_bytes(b"x" * 1000)
    with path.open("rb") as file:
        file.read(100)
        assert size_hint(file) == 900
    buffer = io.BytesIO(b"y" * 50)
    buffer.read(10)
    assert size_hint(buffer) == 40

    class Uploaded:  # Django's UploadedFile has its size
        size = 77

    class Told:  # the API's streamed file part has the body's Content-Length
        size_hint = 88

    assert size_hint(Uploaded()) == 77 and size_hint(Told()) == 88
    assert size_hint(object()) is None
    with open(os.devnull, "rb") as device:  # not a regular file
        assert size_hint(device) is None


# --- the bytes inspected are the bytes stored -------------------------------------------


@pytest.mark.parametrize(
    "data, format",
    [
        (sample_csv(400_000), "csv"),
        (gzip.compress(sample_csv(50_000)), "csv.gz"),
        (parquet_bytes(), "parquet"),
    ],
    ids=["csv", "csv.gz", "parquet"],
)
def test_the_child_profiles_exactly_the_bytes_the_upload_read(data, format) -> None:
    inspector = ProcessInspector(io.BytesIO(data), format=format)
    assert upload_through(inspector) == len(data)
    profile = inspector.finish()

    assert profile == inspect_stream(io.BytesIO(data), format=format)
    assert profile.sha256 == hashlib.sha256(data).hexdigest()
    assert profile.size_bytes == len(data)
    assert is_gone(inspector.pid)


def test_a_profile_of_other_bytes_than_were_read_is_not_kept() -> None:
    # The same inspector, and bytes that reached the upload but not the child: the
    # counts differ, so no profile is trusted (the worker then reads the stored file).
    data = sample_csv(1000)
    inspector = ProcessInspector(io.BytesIO(data), format="csv")
    upload_through(inspector)
    inspector._sent += 1
    assert inspector.finish() is None


# --- a refused file -------------------------------------------------------------------

REFUSED = {
    "duplicate names": b"a,b,a\n1,2,3\n" * 10,
    "ragged far in": sample_csv(300_000) + b"1,2\n" + sample_csv(10)[25:],
    "binary": b"\x00\x01\x02garbage" * 1000,
    "empty once unzipped": gzip.compress(b""),
}


@pytest.mark.parametrize("name", REFUSED)
def test_a_refused_file_gives_the_verdict_the_thread_gives_and_the_upload_goes_on(name) -> None:
    data = REFUSED[name]
    format = "csv.gz" if name.endswith("unzipped") else "csv"
    with pytest.raises(FileRejected) as on_a_thread:
        inspect_stream(io.BytesIO(data), format=format)

    inspector = ProcessInspector(io.BytesIO(data), format=format)
    # The upload reads to its end, whenever the child gave its verdict.
    assert upload_through(inspector, piece=64 * 1024) == len(data)

    assert inspector.finish() is None
    assert inspector.refusal is not None
    assert inspector.refusal.message == on_a_thread.value.message
    assert is_gone(inspector.pid)


# --- a child that dies ----------------------------------------------------------------


class KillsItsInspection:
    """An upload source that kills the inspection's child once `after` bytes are read,
    as the kernel's out-of-memory killer or an operator would."""

    def __init__(self, data: bytes, after: int) -> None:
        self._data = io.BytesIO(data)
        self._after = after
        self.inspector: ProcessInspector | None = None

    def read(self, size: int = -1) -> bytes:
        if self._data.tell() >= self._after and self.inspector is not None:
            pid, self.inspector = self.inspector.pid, None
            os.kill(pid, signal.SIGKILL)
        return self._data.read(size)


def test_a_child_killed_midway_fails_the_upload_with_a_clear_error() -> None:
    data = sample_csv(1_500_000)  # about 50 MiB
    source = KillsItsInspection(data, after=8 * MiB)
    inspector = ProcessInspector(source, format="csv")
    source.inspector = inspector

    read = 0
    with pytest.raises(InspectionUnavailable) as failed:
        while chunk := inspector.read(MiB):
            read += len(chunk)
        inspector.finish()

    assert "killed by signal 9" in failed.value.message
    assert "Send the file again" in failed.value.message
    assert failed.value.details == {"exit_code": -signal.SIGKILL}
    assert is_gone(inspector.pid)
    # It is noticed well before the end of the file (the feed writes into a dead pipe).
    assert read < len(data)


def test_a_child_that_exits_without_an_answer_is_a_failure_at_the_finish(monkeypatch) -> None:
    # A child whose Python cannot even start (a broken environment) says nothing.
    monkeypatch.setattr(sys, "executable", "/bin/false")
    inspector = ProcessInspector(io.BytesIO(sample_csv(10)), format="csv")
    with pytest.raises(InspectionUnavailable, match="exited with 1"):
        upload_through(inspector)
        inspector.finish()


def test_an_abandoned_upload_stops_its_child() -> None:
    inspector = ProcessInspector(io.BytesIO(sample_csv(400_000)), format="csv")
    inspector.read(MiB)
    inspector.abandon()
    assert is_gone(inspector.pid)
    assert _inspection_children() == []


def test_two_uploads_on_two_threads_each_see_the_end_of_their_own_file() -> None:
    # Each child is started with every other descriptor closed: were the first child's
    # pipe inherited by the second, the first would never read the end of its file.
    files = [sample_csv(200_000), sample_csv(300_000)]
    profiles: dict[int, object] = {}

    def upload(index: int) -> None:
        inspector = ProcessInspector(io.BytesIO(files[index]), format="csv")
        upload_through(inspector, piece=256 * 1024)
        profiles[index] = inspector.finish()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert [profiles[i].row_count for i in range(2)] == [200_000, 300_000]
    assert [profiles[i].sha256 for i in range(2)] == [hashlib.sha256(f).hexdigest() for f in files]
    wait_for(lambda: _inspection_children() == [], timeout=10, message="the children to exit")


def _inspect_in_a_pool_process(answers, data: bytes) -> None:
    try:
        inspector = ProcessInspector(io.BytesIO(data), format="csv")
        upload_through(inspector)
        answers.put(("profile", inspector.finish().sha256))
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        answers.put(("error", repr(exc)))


def test_a_celery_pool_process_may_start_an_inspection_process() -> None:
    # Celery's prefork pool runs tasks in daemonic billiard processes, which may not
    # have multiprocessing children; a child started by subprocess they may have.
    import billiard

    context = billiard.get_context("fork")
    answers = context.Queue()
    data = sample_csv(100_000)
    pool_process = context.Process(
        target=_inspect_in_a_pool_process, args=(answers, data), daemon=True
    )
    pool_process.start()
    try:
        answer = answers.get(timeout=60)
    finally:
        pool_process.join(timeout=30)
    assert answer == ("profile", hashlib.sha256(data).hexdigest())


# --- memory ---------------------------------------------------------------------------


def test_memory_stays_flat_in_the_uploading_process_and_in_its_child() -> None:
    # A subprocess of its own, so that the peaks are this upload's alone. The child's
    # peak after 64 MiB (warmed up: thread pools, allocator caches) is compared with its
    # peak just before the end of the file is sent, when it has seen all 256 MiB.
    script = textwrap.dedent(
        """
        import json, re
        from django.conf import settings
        settings.configure(MAX_COLUMNS=2000)
        from catalog.inspection_process import ProcessInspector

        def peak_rss(pid="self"):
            status = open(f"/proc/{pid}/status").read()
            return int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024

        class Generated:
            def __init__(self, total):
                rows = b"".join(
                    b"%d,%d.%02d,item-%d,2024-01-%02d,%s,\\n"
                    % (i, i % 1000, i % 100, i, i % 28 + 1, b"true" if i % 2 else b"false")
                    for i in range(20000)
                )
                self._rows, self._left = rows, total
                self._pending = b"id,amount,label,day,flag,note\\n"

            def read(self, size=-1):
                if not self._pending:
                    if self._left <= 0:
                        return b""
                    self._pending = self._rows
                    self._left -= len(self._rows)
                out, self._pending = self._pending[:size], self._pending[size:]
                return out

        inspector = ProcessInspector(Generated(16 << 20), format="csv")
        while inspector.read(8 << 20):
            pass
        inspector.finish()
        before = peak_rss()

        inspector = ProcessInspector(Generated(256 << 20), format="csv")
        sent, child_warm = 0, None
        while data := inspector.read(8 << 20):
            sent += len(data)
            if child_warm is None and sent >= 64 << 20:
                child_warm = peak_rss(inspector.pid)
        child_end = peak_rss(inspector.pid)
        profile = inspector.finish()
        print(json.dumps({
            "parent_growth": peak_rss() - before,
            "child_growth": child_end - child_warm,
            "child_peak": child_end,
            "size": profile.size_bytes,
        }))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    facts = json.loads(result.stdout)

    assert facts["size"] > 256 * MiB
    assert facts["parent_growth"] < 48 * MiB, facts
    assert facts["child_growth"] < 48 * MiB, facts
