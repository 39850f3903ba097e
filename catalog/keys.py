"""Object keys, as the client contract fixes them (seed 001):

<org>/v1/<layer>/<name>/<name>_<YYYY-MM-DD>_v<version><ext>   a published version
<org>/v1/manifests/latest.json                               the latest manifest
<org>/v1/manifests/history/<timestamp>_<sha>.json            every manifest, kept
<org>/staging/<job id><ext>                                  an upload being published
"""

from __future__ import annotations

from datetime import date, datetime

EXTENSIONS = {"csv": ".csv", "csv.gz": ".csv.gz", "parquet": ".parquet"}
CONTENT_TYPES = {
    "csv": "text/csv",
    "csv.gz": "application/gzip",
    "parquet": "application/vnd.apache.parquet",
}
NAMESPACE = "v1"


def version_key(*, org: str, layer: str, name: str, day: date, version: str, format: str) -> str:
    return f"{org}/{NAMESPACE}/{layer}/{name}/{name}_{day:%Y-%m-%d}_v{version}{EXTENSIONS[format]}"


def staging_key(*, org: str, job_id: str, format: str) -> str:
    return f"{org}/staging/{job_id}{EXTENSIONS[format]}"


def manifest_latest_key(*, org: str) -> str:
    return f"{org}/{NAMESPACE}/manifests/latest.json"


def manifest_history_key(*, org: str, generated_at: datetime, sha256: str) -> str:
    return f"{org}/{NAMESPACE}/manifests/history/{generated_at:%Y%m%dT%H%M%S%fZ}_{sha256[:12]}.json"
