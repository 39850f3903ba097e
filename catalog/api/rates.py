"""Rates like `10/min`, parsed without importing DRF, so settings can check them."""

from __future__ import annotations

_PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
_PERIODS |= {"hour": 3600, "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """`10/min` -> (10, 60); raises ValueError for anything else."""
    count, _, period = rate.strip().partition("/")
    number = int(count)
    if number < 1 or period not in _PERIODS:
        raise ValueError(rate)
    return number, _PERIODS[period]
