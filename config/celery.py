"""The Celery app: configured from Django settings (the CELERY_* names), tasks found in
each app's tasks.py.

Database connections live across tasks, as across a web process's requests: before and
after each task, one that is broken, or older than DB_CONN_MAX_AGE, is closed (Django's
`close_old_connections`, what it does around every request), instead of Celery closing
every connection every time (settings.CELERY_DB_REUSE_MAX)."""

from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("dataset_publisher")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def _old_connections_closed(**kwargs) -> None:
    from django.db import close_old_connections

    close_old_connections()
