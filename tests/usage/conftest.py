"""The usage cast: a clean buffer per test, and clients that read like people or scripts."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from django.conf import settings

from tests.api.conftest import (  # noqa: F401 - the API's cast, shared
    api,
    as_user,
    fresh_rate_limits,
    make_token,
    published,
    with_columnar,
)
from usage.services import buffer

BROWSER = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0 Safari/537.36"
)
SCRIPT = "python-requests/2.32.3"
ROBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


@pytest.fixture(autouse=True)
def empty_usage_buffer():
    """Each test starts with nothing buffered: Redis's list and this host's spool."""

    def clear():
        buffer.records_flush()  # nothing of this process's batch lands in the next test
        buffer.redis_reset()
        client = buffer.redis_client()
        if client is not None:
            client.delete(buffer.buffer_key(), buffer.lock_key())
        shutil.rmtree(Path(settings.USAGE_SPOOL_DIR), ignore_errors=True)

    clear()
    yield
    clear()
