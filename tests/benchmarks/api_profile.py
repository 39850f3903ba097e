"""Where the time of one API request goes, stage by stage, in microseconds.

    breakdown = stages_profile(client_get, requests=300)

Runs requests in this process through Django's test client (the same settings, database,
Redis and S3 server as the served benchmark) with a timer around each stage the API
passes through: the token lookup, the rate limit's round trip (which also reads the
catalog's generation), the cached answer, presigning, rendering, DRF's content
negotiation and permission checks, and the usage middleware (building the event, and
appending it to the buffer after the answer). What no stage covers is Django's and DRF's
own machinery (URL resolution, the middleware chain, the Request wrapper), reported as
"the rest". Medians per request, so a burst of load elsewhere on the machine shifts one
request, not the figure.

A stage is a function or method, timed where the request calls it; a stage whose
function is absent (renamed, or never called on that path) reads 0.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import statistics
import time
from collections.abc import Callable, Iterator

# (label, [(module, attribute path), ...]): the places a stage's function is called from.
STAGES: list[tuple[str, list[tuple[str, str]]]] = [
    ("token lookup", [("catalog.api.authentication", "token_authenticate")]),
    (
        "rate limit + generation (Redis)",
        [("catalog.api.throttling", "ApiRateThrottle.allow_request")],
    ),
    (
        "cached answer (generation check)",
        [("versioning.api.views", "cached_read"), ("versioning.api.views", "cached_write")],
    ),
    (
        "query parameters (serializer or parser)",
        [
            ("rest_framework.serializers", "BaseSerializer.is_valid"),
            ("versioning.api.views", "signed_url_params"),
        ],
    ),
    (
        "presigning",
        [
            ("catalog.storage", "S3ObjectStore.signed_url"),
            ("catalog.storage", "LocalObjectStore.signed_url"),
        ],
    ),
    (
        "DRF negotiation + permissions",
        [
            ("rest_framework.views", "APIView.perform_content_negotiation"),
            ("rest_framework.views", "APIView.check_permissions"),
        ],
    ),
    ("rendering", [("rest_framework.renderers", "JSONRenderer.render")]),
    ("usage: event built", [("usage.capture", "record_build")]),
    ("usage: event appended (after the answer)", [("usage.middleware", "record_append")]),
]


class _Clock:
    def __init__(self) -> None:
        self.spent: dict[str, int] = {}
        self.depth: dict[str, int] = {}

    def timed(self, label: str, function: Callable) -> Callable:
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            if self.depth.get(label):
                return function(*args, **kwargs)
            self.depth[label] = 1
            started = time.perf_counter_ns()
            try:
                return function(*args, **kwargs)
            finally:
                self.spent[label] = self.spent.get(label, 0) + time.perf_counter_ns() - started
                self.depth[label] = 0

        return wrapper


def _resolve(module_name: str, dotted: str):
    owner = importlib.import_module(module_name)
    *parents, name = dotted.split(".")
    for parent in parents:
        owner = getattr(owner, parent, None)
        if owner is None:
            return None, name, None
    raw = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
    return owner, name, raw


@contextlib.contextmanager
def _instrumented(clock: _Clock) -> Iterator[None]:
    undo = []
    for label, places in STAGES:
        for module_name, dotted in places:
            owner, name, raw = _resolve(module_name, dotted)
            if owner is None or raw is None or not callable(raw):
                continue
            setattr(owner, name, clock.timed(label, raw))
            undo.append((owner, name, raw))
    try:
        yield
    finally:
        for owner, name, raw in reversed(undo):
            setattr(owner, name, raw)


def stages_profile(get: Callable[[], object], *, requests: int) -> dict[str, float]:
    """Median microseconds per stage (and "total", "the rest") over `requests` calls of
    `get` (one request each), after a few warming calls."""
    for _ in range(5):
        get()
    clock = _Clock()
    per_stage: dict[str, list[float]] = {label: [] for label, _ in STAGES}
    totals: list[float] = []
    rests: list[float] = []
    with _instrumented(clock):
        for _ in range(requests):
            clock.spent = {}
            started = time.perf_counter_ns()
            get()
            total = time.perf_counter_ns() - started
            totals.append(total / 1000)
            for label in per_stage:
                per_stage[label].append(clock.spent.get(label, 0) / 1000)
            rests.append((total - sum(clock.spent.values())) / 1000)
    result = {label: statistics.median(values) for label, values in per_stage.items()}
    result["Django + DRF machinery (the rest)"] = statistics.median(rests)
    result["total"] = statistics.median(totals)
    return result


def breakdown_lines(name: str, breakdown: dict[str, float]) -> list[str]:
    lines = [f"  {name}: {breakdown['total']:,.0f} us per request (median)"]
    for label, micros in breakdown.items():
        if label != "total" and micros >= 0.5:
            lines.append(f"    {label:<42} {micros:8,.0f} us")
    return lines
