"""Versioning services: publishing, the lifecycle of versions, rollback, lineage, and
reads of versions, their changes and diffs.

Import from the topic modules (`versioning.services.publish`, ...); the names below are
the ones other apps and the interfaces use.
"""

from versioning.services.changelog import (  # noqa: F401
    version_changes,
    version_get,
    versions_diff,
)
from versioning.services.current import version_make_current  # noqa: F401
from versioning.services.intake import (  # noqa: F401
    publish_job_create,
    publish_job_create_from_object,
)
from versioning.services.lifecycle import (  # noqa: F401
    version_archive,
    version_deprecate,
    version_deprecation,
    version_download_check,
    version_promote,
    version_restore,
)
from versioning.services.lineage import lineage_graph  # noqa: F401
from versioning.services.publish import (  # noqa: F401
    publish_job_run,
    publish_jobs_sweep,
)
from versioning.services.retry import (  # noqa: F401
    needed_version,
    publish_job_file_kept,
    publish_job_republish,
    refused_staging_sweep,
)
from versioning.services.rollback import dataset_rollback, rollbacks_of  # noqa: F401
