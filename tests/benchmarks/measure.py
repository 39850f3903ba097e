"""Alternating runs and median ratios, shared by the benchmarks.

These machines are shared, so one timing says little. A figure here is taken as the
median of at least three rounds, and in each round the measured path and its floor run
one right after the other (alternating, so a burst of load elsewhere hits both):

    rounds = alternate({"publish": publish_once, "floor": upload_once}, rounds=3)
    line = ratio_line(
        "ratio_publish_s3_to_upload", rounds["publish"], rounds["floor"], goal=Goal.at_most(1.1)
    )

Each callable returns its measure for one round (seconds, requests per second, MiB:
whatever the ratio compares). The ratio of a round is the measured value over the floor
of the same round; the figure reported is the median of those per-round ratios, with the
spread of the per-round ratios. When the spread is over `TRUSTED_SPREAD` the line says the
figure is too noisy to trust, so a reader knows to run it again on a quieter machine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

MIN_ROUNDS = 3
# Per-round ratios further apart than this (max/min - 1) make a figure one to re-run.
TRUSTED_SPREAD = 0.25


@dataclass
class Series:
    """The values of one measure, one per round, in the order taken."""

    values: list[float] = field(default_factory=list)

    def add(self, value: float) -> float:
        self.values.append(value)
        return value

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def spread(self) -> float:
        """How far apart the values are: max/min - 1 (0.0 for one value)."""
        low = min(self.values)
        return max(self.values) / low - 1 if low > 0 else float("inf")

    def __str__(self) -> str:
        listed = ", ".join(f"{v:.3g}" for v in self.values)
        if len(self.values) == 1:
            return listed
        return (
            f"{self.median:.3g} (median of {len(self.values)}: {listed}; "
            f"spread {self.spread * 100:.0f}%)"
        )


def alternate(
    measures: dict[str, Callable[[], float]],
    *,
    rounds: int = MIN_ROUNDS,
    report: Callable[[str], None] | None = print,
) -> dict[str, Series]:
    """Runs every measure once per round, in the order given, for `rounds` rounds;
    prints each value as it is taken (unless `report` is None)."""
    if rounds < 1:
        raise ValueError("At least one round is needed.")
    taken = {name: Series() for name in measures}
    for n in range(1, rounds + 1):
        for name, measure in measures.items():
            value = taken[name].add(float(measure()))
            if report is not None:
                report(f"round_{n}_{name}: {value:.4g}")
    return taken


@dataclass(frozen=True)
class Goal:
    """`value <= limit` (at_most) or `value >= limit` (at_least)."""

    limit: float
    at_most_: bool

    @classmethod
    def at_most(cls, limit: float) -> Goal:
        return cls(limit, True)

    @classmethod
    def at_least(cls, limit: float) -> Goal:
        return cls(limit, False)

    def met(self, value: float) -> bool:
        return value <= self.limit if self.at_most_ else value >= self.limit

    def __str__(self) -> str:
        return f"goal {'<=' if self.at_most_ else '>='} {self.limit:g}"


def ratios(measured: Series, floor: Series) -> Series:
    """The per-round ratios measured/floor, paired round by round."""
    if len(measured.values) != len(floor.values):
        raise ValueError("The two series were not taken in the same rounds.")
    return Series([m / f for m, f in zip(measured.values, floor.values, strict=True)])


def ratio_line(
    name: str,
    measured: Series,
    floor: Series,
    *,
    goal: Goal | None = None,
    precision: int = 2,
) -> str:
    """`name: <median ratio> (median of N alternating runs: ...; spread S%; goal) <verdict>`."""
    per_round = ratios(measured, floor)
    value = per_round.median
    if goal is not None and round(value, precision) == goal.limit and not goal.met(value):
        precision += 1  # "0.70 MISSED" would read as a contradiction: 0.699
    listed = ", ".join(f"{r:.{precision}f}" for r in per_round.values)
    text = (
        f"{name}: {value:.{precision}f} (median of {len(per_round.values)} alternating "
        f"runs: {listed}; spread {per_round.spread * 100:.0f}%"
    )
    if goal is not None:
        text += f"; {goal}) {'ok' if goal.met(value) else 'MISSED'}"
    else:
        text += ")"
    if len(per_round.values) < MIN_ROUNDS:
        text += f"; fewer than {MIN_ROUNDS} runs, not a figure to quote"
    elif per_round.spread > TRUSTED_SPREAD:
        text += f"; spread over {TRUSTED_SPREAD * 100:.0f}%, too noisy to trust: run it again"
    return text


def percentile(values: list[float], fraction: float) -> float:
    """The nearest-rank percentile (fraction in (0, 1]) of `values`."""
    if not values:
        raise ValueError("No values.")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(fraction * len(ordered))))
    return ordered[rank - 1]
