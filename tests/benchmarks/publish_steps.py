"""Times each step of the publish pipeline, for `bench_publish.py --steps`.

`instrument(on_job)` wraps the pipeline's steps in the running process (a worker's pool
process, or the client when it publishes in process) and calls `on_job(seconds)` after
each `publish_job_run` with the seconds spent in each step. "reading staging" is the
time spent inside the staged object's read() calls, which happen on pyarrow's reader
thread during the inspection: it is part of "inspect", not added to it. A job whose
profile was recorded while uploading has no "inspect" and no "reading staging".
Steps nest ("make current" is part of "commit", "manifest" part of "make current");
a target `module:function` is wrapped where that module looks it up. "db queries"
counts the queries the job's own connection ran (the lease keeper's are not counted).
"""

from __future__ import annotations

import time
from collections.abc import Callable

STEPS = (
    ("publish_job_create", "publish_job_create"),
    ("upload to staging", "store.write"),
    ("worker total", "publish_job_run"),
    ("claim", "publish_job_claim"),
    ("exists checks", "store.exists"),
    ("inspect", "inspect_stream"),
    ("decide", "_decide"),
    ("target key", "_target_key"),
    ("copy to final key", "copy_immutable"),
    ("commit", "_commit"),
    ("changelog", "changelog_write"),
    ("lineage", "inputs_record"),
    ("make current", "version_make_current"),
    ("manifest", "versioning.services.current:manifest_generate"),
    ("event rows", "catalog.events:event_record"),
    ("delete staging", "store.delete"),
)


class _TimedReads:
    def __init__(self, stream, seconds: dict[str, float]) -> None:
        self._stream = stream
        self._seconds = seconds

    def read(self, *args):
        started = time.perf_counter()
        try:
            return self._stream.read(*args)
        finally:
            _add(self._seconds, "reading staging", started)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._stream.close()

    def __getattr__(self, name):
        return getattr(self._stream, name)


def _add(seconds: dict[str, float], name: str, started: float) -> None:
    seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started


def instrument(on_job: Callable[[dict[str, float]], None]) -> None:
    import importlib

    from django.db import connection

    from catalog import storage
    from versioning.services import intake
    from versioning.services import publish as pipeline

    seconds: dict[str, float] = {}

    def timing(name: str, function):
        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                _add(seconds, name, started)

        return timed

    store_class = type(storage.get_object_store())
    for name, target in STEPS:
        if target.startswith("store."):
            method = target.removeprefix("store.")
            setattr(store_class, method, timing(name, getattr(store_class, method)))
        elif ":" in target:
            module, function = target.split(":")
            module = importlib.import_module(module)
            setattr(module, function, timing(name, getattr(module, function)))
        elif target == "publish_job_create":
            setattr(intake, target, timing(name, getattr(intake, target)))
        elif target != "publish_job_run":
            setattr(pipeline, target, timing(name, getattr(pipeline, target)))

    open_object = store_class.open
    store_class.open = lambda self, key: _TimedReads(open_object(self, key), seconds)

    run = pipeline.publish_job_run

    def counted(execute, sql, params, many, context):
        seconds["db queries"] = seconds.get("db queries", 0) + 1
        return execute(sql, params, many, context)

    def run_and_report(*args, **kwargs):
        started = time.perf_counter()
        try:
            with connection.execute_wrapper(counted):
                return run(*args, **kwargs)
        finally:
            _add(seconds, "worker total", started)
            on_job({name: round(value, 3) for name, value in seconds.items()})
            seconds.clear()

    pipeline.publish_job_run = run_and_report
    # The task imported the service by name before this ran.
    from versioning import tasks

    tasks.publish_job_run = run_and_report
