"""Inspecting a large upload in a process of its own, so that it never waits for the GIL.

An upload is inspected while it is sent (`catalog.inspection.UploadInspector`). On a
thread, the inspection's Python work between pyarrow's calls (a cast per column per
batch, the feed's bookkeeping) and the upload's threads (botocore building and checking
each part's request) take turns on one GIL. Measured on 1 GiB into S3 on two cores,
the inspection alone costs about 5 CPU seconds and the upload alone about as long as
the publish took with both in one process.

`ProcessInspector` runs `inspect_stream` in a child process (`python -m
catalog.inspection_process FORMAT MAX_COLUMNS`), fed through a pipe by a thread of the
uploading process. It keeps every promise of the thread:

* The bytes inspected are the bytes stored: `read()` hands exactly what it returns to
  the pipe, in order, and the profile counts only if its size is the number of bytes
  that went through.
* Memory stays flat: the bytes waiting for the pipe are bounded (the upload waits for
  the inspection when it falls behind), the pipe holds 1 MiB and the child reads in
  blocks, as on a thread.
* A refused file gives the same verdict as today: the child says why, the upload goes
  on without it, the job is recorded without a profile and its worker inspects the
  stored object and fails the job with that message, removing the file.
* A child that dies (killed, out of memory, crashed) is an error, `InspectionUnavailable`,
  raised from the upload's next read (or from `finish()`): the caller aborts the write,
  so nothing is left behind, and the client may send the file again.

The child is started with `subprocess` (fork and exec at once, with every descriptor
but its pipes closed), never by forking the uploading process: that process may be a
gunicorn worker with a dozen threads holding locks, or a Celery pool process, which
multiprocessing does not let have children. Closing every other descriptor also means
two uploads in two threads never hold each other's pipe open, so each child sees the
end of its own file. The child starts a new session, so a Ctrl-C for the command does
not kill it before the parent has aborted the upload; when the parent itself dies, the
child reads the end of its input and exits.

Small files keep the thread (`INSPECTION_PROCESS_MIN_BYTES`, 64 MiB by default): starting
a Python with pyarrow costs about 0.3 s, more than inspecting a few MiB.
"""

from __future__ import annotations

import fcntl
import io
import json
import logging
import os
import stat
import subprocess
import sys
import threading
from collections import deque
from contextlib import suppress
from pathlib import Path
from typing import BinaryIO

from django.conf import settings

from catalog.exceptions import FileRejected, InspectionUnavailable
from catalog.inspection import FileProfile, UploadInspector, inspect_stream

logger = logging.getLogger(__name__)

_MiB = 1024 * 1024
# Linux's default limit for an unprivileged pipe (/proc/sys/fs/pipe-max-size): fewer,
# larger writes than the default 64 KiB.
_PIPE_BYTES = _MiB
# How much the upload may run ahead of the pipe, as UploadInspector's buffer.
_AHEAD_BYTES = 12 * _MiB
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


def upload_inspector(
    stream: BinaryIO, *, format: str, size_hint: int | None
) -> UploadInspector | ProcessInspector:
    """The inspector for an upload of about `size_hint` bytes (None: unknown): a process
    from INSPECTION_PROCESS_MIN_BYTES up, a thread below or when the size is unknown, or
    when no process can be started (it is logged; the thread does the same work)."""
    threshold = settings.INSPECTION_PROCESS_MIN_BYTES
    if threshold and size_hint is not None and size_hint >= threshold:
        try:
            inspector = ProcessInspector(stream, format=format)
        except OSError:
            logger.warning("Could not start an inspection process; inspecting on a thread.")
        else:
            logger.info("Inspecting an upload of %s bytes in process %s.", size_hint, inspector.pid)
            return inspector
    return UploadInspector(stream, format=format)


def size_hint(stream: object) -> int | None:
    """The bytes `stream` has left to give when it can tell (a `size_hint` attribute,
    the `size` of Django's uploaded files, a regular file's size, the end of a seekable
    stream in memory), else None."""
    hint = getattr(stream, "size_hint", None)
    if isinstance(hint, int):
        return hint
    size = getattr(stream, "size", None)
    if isinstance(size, int):
        return size
    try:
        status = os.fstat(stream.fileno())  # type: ignore[attr-defined]
        if stat.S_ISREG(status.st_mode):
            return max(0, status.st_size - stream.tell())  # type: ignore[attr-defined]
    except (AttributeError, OSError, ValueError):
        pass
    if isinstance(stream, io.BytesIO):
        with stream.getbuffer() as view:
            return view.nbytes - stream.tell()
    return None


class ProcessInspector:
    """Inspects a file while it is uploaded, in a child process (see the module).

    The same interface as UploadInspector: wrap the upload's source and `read()` from
    it; `finish()` after the upload returns the profile, or None when the inspection
    refused the file or did not see all of it; `abandon()` when the upload failed.
    `read()` and `finish()` raise InspectionUnavailable when the child died.
    """

    def __init__(self, stream: BinaryIO, *, format: str, ahead_bytes: int = _AHEAD_BYTES) -> None:
        self._stream = stream
        self._limit = ahead_bytes
        environment = dict(os.environ)
        environment["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), environment.get("PYTHONPATH", "")) if p
        )
        self._process = subprocess.Popen(
            [sys.executable, "-m", __name__, format, str(settings.MAX_COLUMNS)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            bufsize=0,
            close_fds=True,
            start_new_session=True,
            env=environment,
        )
        with suppress(OSError):
            fcntl.fcntl(self._process.stdin.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BYTES)
        self._turn = threading.Condition()
        self._pending: deque[bytes | None] = deque()
        self._held = 0
        self._sent = 0
        self._closed = False  # the end (or abandonment) was handed over
        self._abandoned = False
        self._done = False  # the child has exited and its answer is read
        self.profile: FileProfile | None = None
        self.refusal: FileRejected | None = None
        self.failure: InspectionUnavailable | None = None
        self._feeder = threading.Thread(
            target=self._feed, name="upload-inspection-feed", daemon=True
        )
        self._feeder.start()

    @property
    def pid(self) -> int:
        return self._process.pid

    # The upload's side.

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        self._offer(data if data else None)
        return data

    def _offer(self, data: bytes | None) -> None:
        with self._turn:
            self._raise_if_died()
            if self._closed or self._done:
                return
            self._turn.wait_for(lambda: self._done or self._held < self._limit)
            self._raise_if_died()
            if self._done:
                return
            self._pending.append(data)
            if data is None:
                self._closed = True
            else:
                self._held += len(data)
                self._sent += len(data)
            self._turn.notify_all()

    def _raise_if_died(self) -> None:
        if self.failure is not None and not self._abandoned:
            raise self.failure

    def finish(self) -> FileProfile | None:
        self._offer(None)
        self._feeder.join()
        self._raise_if_died()
        profile = self.profile
        if profile is None or profile.size_bytes != self._sent:
            return None
        return profile

    def abandon(self) -> None:
        with self._turn:
            self._abandoned = True
            self._closed = True
            self._pending.clear()
            self._turn.notify_all()
        with suppress(OSError):
            self._process.kill()
        self._feeder.join()

    # The feeding thread.

    def _take(self) -> bytes | None:
        with self._turn:
            self._turn.wait_for(lambda: self._pending or self._abandoned)
            if self._abandoned:
                return None
            item = self._pending.popleft()
            if item is not None:
                self._held -= len(item)
            self._turn.notify_all()
            return item

    def _feed(self) -> None:
        pipe = self._process.stdin.fileno()
        try:
            while (item := self._take()) is not None:
                view = memoryview(item)
                while view:
                    view = view[os.write(pipe, view) :]
        except OSError:
            pass  # the child stopped reading: it has its verdict, or it died
        finally:
            with suppress(OSError):
                self._process.stdin.close()
            try:
                answer = self._process.stdout.read()
            except OSError:
                answer = b""
            self._process.stdout.close()
            code = self._process.wait()
            with self._turn:
                self._conclude(code, answer)
                self._done = True
                self._pending.clear()
                self._turn.notify_all()

    def _conclude(self, code: int, answer: bytes) -> None:
        if self._abandoned:
            return
        try:
            result = json.loads(answer) if code == 0 else None
        except ValueError:
            result = None
        if isinstance(result, dict) and "profile" in result:
            self.profile = FileProfile.from_json(result["profile"])
        elif isinstance(result, dict) and "rejected" in result:
            self.refusal = FileRejected(
                result["rejected"]["message"], details=result["rejected"]["details"]
            )
        elif isinstance(result, dict) and "error" in result:
            logger.warning("The inspection of an upload failed: %s", result["error"])
        else:
            how = f"it was killed by signal {-code}" if code < 0 else f"it exited with {code}"
            logger.error("The inspection process of an upload died: %s.", how)
            self.failure = InspectionUnavailable(
                f"The inspection of the file stopped unexpectedly ({how}); nothing was "
                "kept. Send the file again.",
                details={"exit_code": code},
            )


# --- the child ------------------------------------------------------------------------


def _child(argv: list[str]) -> int:
    """Inspects standard input and writes one JSON object to standard output: the
    profile, the refusal, or an unexpected error. Nothing else may reach that output,
    so it is moved aside first and stdout points at stderr for anything printed."""
    file_format, max_columns = argv[0], int(argv[1])
    answer = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    if not settings.configured:
        settings.configure(MAX_COLUMNS=max_columns)
    source = open(0, "rb", buffering=_PIPE_BYTES, closefd=False)  # noqa: SIM115
    try:
        result = {"profile": inspect_stream(source, format=file_format).as_json()}
    except FileRejected as exc:
        result = {"rejected": {"message": exc.message, "details": exc.details}}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which logs it
        result = {"error": f"{type(exc).__name__}: {exc}"}
    # Stop reading first: an upload still sending (after a refusal) sees at once that
    # nothing more is read, and never blocks on a full pipe while the answer is written.
    source.close()
    os.close(0)
    answer.write(json.dumps(result, default=str).encode())
    answer.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
