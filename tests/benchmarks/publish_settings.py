"""Settings for the processes of the publish benchmark: the product's own settings, read
from the environment as always, with this run's queues and cache keys kept apart from
anyone else using the same Redis (the test suite, another benchmark).

Event deliveries go to a queue of their own, `<BENCH_QUEUE>-events`, which the benchmark
drains with a worker of its own after each publish: the publish is timed and measured
alone, and the work its events start (the columnar copy) is reported beside it.
"""

import os

from config.settings import *  # noqa: F403

_QUEUE = os.environ.get("BENCH_QUEUE", "")
if _QUEUE:
    CELERY_TASK_DEFAULT_QUEUE = _QUEUE
    CELERY_TASK_ROUTES = {
        "catalog.deliver_events": {"queue": f"{_QUEUE}-events"},
        "catalog.sweep_events": {"queue": f"{_QUEUE}-events"},
    }
    CACHES["default"]["KEY_PREFIX"] = _QUEUE  # noqa: F405
