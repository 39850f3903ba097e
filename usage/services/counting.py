"""COUNTER's rules for counting dataset use, as plain functions over events.

Following the COUNTER Code of Practice for Research Data (the standard behind Zenodo's
and Dataverse's usage reports):

- only successful answers count (200 and 304);
- robots (the COUNTER robots list) are not counted at all; scripts (COUNTER's machine
  list) are counted apart, as access method *machine*, people as *regular*;
- a **request** is getting the data (a signed URL issued, a rows export); an
  **investigation** is looking at the dataset (its detail, versions, schema, changes,
  rows), and every request is an investigation too;
- *double clicks*: the same action on the same dataset by the same visitor again
  within 30 seconds counts once (a chain of clicks each within 30 seconds of the last
  is one);
- *unique* counts take each dataset once per user-session: the visitor (the user, else
  a hash of address and user agent) within one hour of one day.

`CounterTally` takes events in time order, one at a time, so a day of millions of
events is counted in one pass over a cursor.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime

from usage.models import INVESTIGATION_KINDS, REQUEST_KINDS, AccessMethod

DOUBLE_CLICK_SECONDS = 30
COUNTED_STATUSES = frozenset({200, 304})


@dataclass(frozen=True)
class Hit:
    """The facts of one event that counting needs."""

    occurred_at: datetime
    visitor: str
    dataset_id: int | None
    kind: str
    status: int
    access_method: str


@dataclass
class Figures:
    total_investigations: int = 0
    unique_investigations: int = 0
    total_requests: int = 0
    unique_requests: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "total_investigations": self.total_investigations,
            "unique_investigations": self.unique_investigations,
            "total_requests": self.total_requests,
            "unique_requests": self.unique_requests,
        }


def counts_toward(hit: Hit) -> bool:
    return (
        hit.dataset_id is not None
        and hit.status in COUNTED_STATUSES
        and hit.access_method != AccessMethod.ROBOT
        and (hit.kind in INVESTIGATION_KINDS or hit.kind in REQUEST_KINDS)
    )


def user_session(hit: Hit) -> str:
    return f"{hit.visitor}|{hit.occurred_at:%Y-%m-%d %H}"


@dataclass
class CounterTally:
    """COUNTER's four metrics per (dataset, access method), from events in time order."""

    _last: dict[tuple, datetime] = field(default_factory=dict)
    _totals: dict[tuple[int, str], Figures] = field(default_factory=lambda: defaultdict(Figures))
    _sessions: dict[tuple[int, str, str], set[str]] = field(
        default_factory=lambda: defaultdict(set)
    )

    def add(self, hit: Hit) -> None:
        if not counts_toward(hit):
            return
        key = (hit.dataset_id, hit.access_method)
        figures = self._totals[key]
        session = user_session(hit)
        if self._fresh(hit, "investigation"):
            figures.total_investigations += 1
        self._sessions[(*key, "investigation")].add(session)
        if hit.kind in REQUEST_KINDS:
            if self._fresh(hit, "request"):
                figures.total_requests += 1
            self._sessions[(*key, "request")].add(session)

    def _fresh(self, hit: Hit, metric: str) -> bool:
        """False for a double click: the same action within 30 s of the previous one."""
        key = (hit.visitor, hit.dataset_id, metric, hit.kind)
        previous = self._last.get(key)
        self._last[key] = hit.occurred_at
        return (
            previous is None or (hit.occurred_at - previous).total_seconds() > DOUBLE_CLICK_SECONDS
        )

    def figures(self) -> dict[tuple[int, str], Figures]:
        """{(dataset id, access method): Figures}."""
        result = {}
        for key, figures in self._totals.items():
            figures.unique_investigations = len(self._sessions.get((*key, "investigation"), ()))
            figures.unique_requests = len(self._sessions.get((*key, "request"), ()))
            result[key] = figures
        return result

    def unique_sessions(self, dataset_id: int, metric: str) -> int:
        """Distinct user-sessions across access methods (a dataset's unique downloads)."""
        sessions: set[str] = set()
        for method in (AccessMethod.REGULAR, AccessMethod.MACHINE):
            sessions |= self._sessions.get((dataset_id, str(method), metric), set())
        return len(sessions)


def counter_count(hits: list[Hit]) -> dict[tuple[int, str], Figures]:
    """COUNTER's figures for a list of events in any order."""
    tally = CounterTally()
    for hit in sorted(hits, key=lambda h: h.occurred_at):
        tally.add(hit)
    return tally.figures()
