"""The product's Celery app with each step of the publish pipeline timed, for
`bench_publish.py --steps`: `celery -A tests.benchmarks.publish_worker worker`.

Each pool process is instrumented when it starts, and every publish it runs appends one
JSON line of step timings to the file named by BENCH_STEPS_FILE.
"""

from __future__ import annotations

import json
import os

from celery.signals import worker_process_init

from config.celery import app

__all__ = ("app",)


@worker_process_init.connect
def _instrument(**_) -> None:
    from tests.benchmarks.publish_steps import instrument

    path = os.environ["BENCH_STEPS_FILE"]

    def write(seconds: dict[str, float]) -> None:
        with open(path, "a") as out:
            out.write(json.dumps(seconds) + "\n")

    instrument(write)
