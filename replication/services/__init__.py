"""Replication's services: regions, rules, planning (the triggers), copies, region
manifests, and upkeep (scrub, retention). Import from here."""

from replication.services.copies import (
    replica_claim,
    replica_copy,
    replica_payload,
    replicas_dispatch,
    replicas_due,
    replicas_late_record,
)
from replication.services.manifests import (
    region_manifest_generate,
    region_manifest_latest,
    region_manifest_write,
    region_manifests_unwritten,
    region_versions,
)
from replication.services.planning import (
    replicas_plan,
    replication_request,
    rule_run,
    rule_targets,
    rules_count_datasets,
    rules_run_due,
    version_replicate_by_rules,
)
from replication.services.regions import (
    region_get,
    region_primary,
    region_save,
    region_validate,
    regions_by_codes,
)
from replication.services.rules import (
    cron_next,
    pattern_problem,
    rule_create,
    rule_datasets,
    rule_delete,
    rule_matches,
    rule_update,
    rule_validate,
)
from replication.services.upkeep import replica_scrub, replicas_expire, replicas_scrub

__all__ = [
    "cron_next",
    "pattern_problem",
    "region_get",
    "region_manifest_generate",
    "region_manifest_latest",
    "region_manifest_write",
    "region_manifests_unwritten",
    "region_primary",
    "region_save",
    "region_validate",
    "region_versions",
    "regions_by_codes",
    "replica_claim",
    "replica_copy",
    "replica_payload",
    "replica_scrub",
    "replicas_dispatch",
    "replicas_due",
    "replicas_expire",
    "replicas_late_record",
    "replicas_plan",
    "replicas_scrub",
    "replication_request",
    "rule_create",
    "rule_datasets",
    "rule_delete",
    "rule_matches",
    "rule_run",
    "rule_targets",
    "rule_update",
    "rule_validate",
    "rules_count_datasets",
    "rules_run_due",
    "version_replicate_by_rules",
]
