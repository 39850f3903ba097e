"""Usage services, by topic: `buffer` and `ingest` (the recording path), `counting`
(COUNTER's rules, pure), `rollups` (sessions and daily figures), `segments`, `alerts`
(thresholds, anomalies, breaking-change consumers) and `maintenance` (partitions,
retention)."""
