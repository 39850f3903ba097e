"""A small closed-loop HTTP load generator for 127.0.0.1 only, bounded in time.

`load(url, headers, seconds, clients)` runs `clients` processes, each sending one
request after the other (a new connection each time, as gunicorn's sync workers close
it) for `seconds`, and returns requests per second, p99 latency and the status codes
seen. Every target in a run gets the same clients and the same time, so their ratios are
comparable even on a shared, noisy machine.
"""

from __future__ import annotations

import http.client
import multiprocessing
import time
from collections import Counter
from urllib.parse import urlparse


def _client(url: str, headers: dict, seconds: float, out) -> None:
    parsed = urlparse(url)
    assert parsed.hostname == "127.0.0.1", "load goes to the loopback address only"
    target = parsed.path + (f"?{parsed.query}" if parsed.query else "")
    latencies: list[float] = []
    statuses: Counter = Counter()
    deadline = time.perf_counter() + seconds
    while (start := time.perf_counter()) < deadline:
        conn = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            conn.request("GET", target, headers=headers)
            response = conn.getresponse()
            response.read()
            statuses[response.status] += 1
        except OSError:
            statuses["error"] += 1
        finally:
            conn.close()
        latencies.append(time.perf_counter() - start)
    out.put((latencies, dict(statuses)))


def load(url: str, *, headers: dict | None = None, seconds: float, clients: int) -> dict:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    procs = [
        context.Process(target=_client, args=(url, headers or {}, seconds, queue))
        for _ in range(clients)
    ]
    for proc in procs:
        proc.start()
    latencies: list[float] = []
    statuses: Counter = Counter()
    for _ in procs:
        got, seen = queue.get(timeout=seconds + 120)
        latencies += got
        statuses.update(seen)
    for proc in procs:
        proc.join(30)
    latencies.sort()
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else 0
    return {"rps": len(latencies) / seconds, "p99_ms": p99 * 1000, "statuses": dict(statuses)}
