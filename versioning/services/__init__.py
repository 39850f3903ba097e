"""Versioning services: publishing, and reads of versions and manifests.

Import from the topic modules (`versioning.services.publish`, ...); the names below are
the ones other apps and the interfaces use.
"""

from versioning.services.publish import (  # noqa: F401
    publish_job_create,
    publish_job_create_from_object,
    publish_job_run,
    publish_jobs_sweep,
)
