"""Settings for the API benchmark's web processes: the product's own settings, read from
the environment as always, plus one bare view to measure against, and cache keys kept
apart from anyone else using the same Redis."""

import os

from config.settings import *  # noqa: F403

ROOT_URLCONF = "tests.benchmarks.api_urls"
CACHES["default"]["KEY_PREFIX"] = f"bench-api-{os.environ.get('BENCH_RUN_ID', '')}"  # noqa: F405
