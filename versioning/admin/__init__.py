"""The steward admin for datasets and their versions, publish jobs and manifests.

    datasets   the dataset admin: current facts, history, diff, publish and rollback pages
    versions   the version admin (promote, deprecate, archive, restore) and rollbacks
    jobs       publish jobs (republish a refused file) and manifests, read-only
    uploads    resumable uploads, read-only, and aborting open ones
    common     what they share: a schema as a table, the viewer kept on the object

The dataset admin lives here, not in catalog, because a steward's dataset page is about
versions. Catalog stays free of any import of versioning.
"""

from versioning.admin import datasets, jobs, uploads, versions  # noqa: F401 (each registers its admins)
