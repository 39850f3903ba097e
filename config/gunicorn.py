"""gunicorn's settings for the web processes: `gunicorn -c config/gunicorn.py config.wsgi`.

Uploads stream through the web process to staging (up to MAX_UPLOAD_BYTES, 50 GiB by
default), so one request may last as long as the client takes to send its file: 300 MB
from a client at 8 MB/s is 40 s, and a slow link is far slower. gunicorn's default sync
worker handles one request at a time and is killed after `timeout` (30 s) of one
request, which cut such uploads off and left every read queued behind them.

Threaded workers (`gthread`) fix both: each worker serves `threads` requests at once, so
a slow upload holds one thread while reads go on in the others, and the worker's main
loop keeps reporting to the arbiter whatever its threads are doing, so a long request is
never mistaken for a hung worker. `timeout` then only catches a worker whose main loop
is stuck. The threads of a worker share its memory; uploads are streamed in chunks, so a
thread costs little.

Every setting can be changed from the environment (the variables below), or on the
command line after `-c`.
"""

from __future__ import annotations

import multiprocessing
import os


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw.strip() else default
    except ValueError:
        raise SystemExit(f"{name} must be a whole number, not {raw!r}.") from None


bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8000")
worker_class = "gthread"
# Processes: about one per core (each has its own threads).
workers = _int("WEB_CONCURRENCY", max(2, multiprocessing.cpu_count()))
# Requests served at once by each process: slow uploads and reads side by side.
threads = _int("GUNICORN_THREADS", 16)
# Seconds a worker's main loop may stay silent before it is restarted (not a limit on
# a request's length under gthread).
timeout = _int("GUNICORN_TIMEOUT", 120)
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 60)
# Idle keep-alive connections are closed after this many seconds.
keepalive = _int("GUNICORN_KEEPALIVE", 5)
# Restart each worker after this many requests (plus jitter), returning any memory a
# library kept; 0 never.
max_requests = _int("GUNICORN_MAX_REQUESTS", 10000)
max_requests_jitter = _int("GUNICORN_MAX_REQUESTS_JITTER", 1000)
# The heartbeat file lives in memory, not on a disk that may stall under load.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
accesslog = os.environ.get("GUNICORN_ACCESS_LOG", "-")
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info").lower()
