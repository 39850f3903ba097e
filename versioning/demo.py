"""The Scout demo catalog (seed 001): nine datasets with plausible columns and the
seed's typical row counts, generated deterministically so the same call always writes
the same bytes."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, timedelta

DEMO_DAY = date(2024, 8, 10)
REGIONS = ["NCR", "Central Luzon", "CALABARZON", "Central Visayas", "Davao"]
CATEGORIES = ["beverages", "snacks", "personal care", "household", "tobacco", "dairy"]
SEGMENTS = ["Power", "Regular", "Occasional", "New"]


@dataclass(frozen=True)
class DemoDataset:
    layer: str
    name: str
    title: str
    description: str
    frequency: str
    rows: int
    columns: list[str]
    row: Callable[[random.Random, int], list]
    tags: tuple[str, ...] = ()


def _day(rng: random.Random, i: int) -> str:
    return (DEMO_DAY - timedelta(days=i % 90)).isoformat()


def _store(rng: random.Random) -> str:
    return f"ST{rng.randint(1, 200):04d}"


DATASETS = [
    DemoDataset(
        "gold",
        "txn_daily",
        "Daily transactions",
        "Daily transaction aggregates by store and region",
        "daily",
        15_000,
        ["date_key", "store_id", "region", "transactions", "revenue", "avg_basket", "is_holiday"],
        lambda r, i: [
            _day(r, i),
            _store(r),
            r.choice(REGIONS),
            r.randint(20, 900),
            round(r.uniform(500, 90000), 2),
            round(r.uniform(20, 400), 2),
            r.random() < 0.05,
        ],
        ("sales", "stores"),
    ),
    DemoDataset(
        "gold",
        "product_mix",
        "Product mix",
        "Product performance and mix analysis",
        "daily",
        50_000,
        ["date_key", "store_id", "sku", "category", "units", "revenue", "share_of_basket"],
        lambda r, i: [
            _day(r, i),
            _store(r),
            f"SKU{r.randint(1, 5000):05d}",
            r.choice(CATEGORIES),
            r.randint(1, 300),
            round(r.uniform(5, 9000), 2),
            round(r.random(), 4),
        ],
        ("products",),
    ),
    DemoDataset(
        "gold",
        "basket_patterns",
        "Basket patterns",
        "Market basket analysis and associations",
        "weekly",
        5_000,
        ["antecedent", "consequent", "support", "confidence", "lift", "baskets"],
        lambda r, i: [
            r.choice(CATEGORIES),
            r.choice(CATEGORIES),
            round(r.random() / 10, 5),
            round(r.random(), 4),
            round(r.uniform(0.5, 4), 3),
            r.randint(10, 5000),
        ],
        ("products", "baskets"),
    ),
    DemoDataset(
        "gold",
        "substitution_flows",
        "Substitution flows",
        "Product substitution patterns",
        "weekly",
        2_000,
        ["from_sku", "to_sku", "category", "substitutions", "substitution_rate"],
        lambda r, i: [
            f"SKU{r.randint(1, 5000):05d}",
            f"SKU{r.randint(1, 5000):05d}",
            r.choice(CATEGORIES),
            r.randint(1, 800),
            round(r.random(), 4),
        ],
        ("products",),
    ),
    DemoDataset(
        "gold",
        "request_behavior",
        "Request behaviour",
        "Customer request and interaction patterns",
        "daily",
        20_000,
        [
            "requested_at",
            "store_id",
            "request_type",
            "brand_named",
            "suggestion_accepted",
            "dwell_seconds",
        ],
        lambda r, i: [
            f"{_day(r, i)}T{r.randint(6, 21):02d}:{r.randint(0, 59):02d}:00Z",
            _store(r),
            r.choice(["branded", "unbranded", "pointing"]),
            r.random() < 0.6,
            r.random() < 0.4,
            r.randint(5, 600),
        ],
        ("customers",),
    ),
    DemoDataset(
        "gold",
        "demographics",
        "Demographics",
        "Anonymized customer demographic segments",
        "weekly",
        500,
        ["segment_id", "age_band", "gender", "region", "customers", "avg_spend"],
        lambda r, i: [
            f"SEG{i:04d}",
            r.choice(["18-24", "25-34", "35-44", "45-54", "55+"]),
            r.choice(["F", "M", "unknown"]),
            r.choice(REGIONS),
            r.randint(50, 20000),
            round(r.uniform(50, 900), 2),
        ],
        ("customers",),
    ),
    DemoDataset(
        "platinum",
        "features_sales_7d",
        "7-day sales features",
        "7-day rolling sales features for ML",
        "daily",
        10_000,
        [
            "date_key",
            "store_id",
            "revenue_7d",
            "transactions_7d",
            "revenue_growth_7d",
            "stockout_days_7d",
        ],
        lambda r, i: [
            _day(r, i),
            _store(r),
            round(r.uniform(5000, 600000), 2),
            r.randint(100, 6000),
            round(r.uniform(-0.5, 0.8), 4),
            r.randint(0, 7),
        ],
        ("ml", "features"),
    ),
    DemoDataset(
        "platinum",
        "store_perf",
        "Store performance",
        "Store performance features and rankings",
        "daily",
        200,
        ["store_id", "region", "revenue_rank", "revenue_30d", "growth_30d", "opened_on"],
        lambda r, i: [
            f"ST{i + 1:04d}",
            r.choice(REGIONS),
            i + 1,
            round(r.uniform(10000, 2000000), 2),
            round(r.uniform(-0.3, 0.6), 4),
            (date(2015, 1, 1) + timedelta(days=r.randint(0, 3000))).isoformat(),
        ],
        ("ml", "stores"),
    ),
    DemoDataset(
        "platinum",
        "customer_segments",
        "Customer segments",
        "ML-derived customer segmentation",
        "weekly",
        1_000,
        ["customer_key", "segment", "recency_days", "frequency_30d", "monetary_30d", "churn_risk"],
        lambda r, i: [
            f"C{i:06d}",
            r.choice(SEGMENTS),
            r.randint(0, 120),
            r.randint(0, 60),
            round(r.uniform(0, 25000), 2),
            round(r.random(), 4),
        ],
        ("ml", "customers"),
    ),
]


# Lineage of the platinum datasets: the gold versions each one's first release was built
# from (gold/txn_daily has its second version by the time the platinum ones publish).
INPUTS = {
    ("platinum", "features_sales_7d"): ["gold/txn_daily@1.1.0", "gold/product_mix@1.0.0"],
    ("platinum", "store_perf"): ["gold/txn_daily@1.1.0", "gold/request_behavior@1.0.0"],
    ("platinum", "customer_segments"): [
        "gold/demographics@1.0.0",
        "gold/basket_patterns@1.0.0",
        "gold/request_behavior@1.0.0",
    ],
}


def demo_csv(spec: DemoDataset, *, rows: int | None = None, seed: int = 0) -> bytes:
    """The CSV bytes of a demo dataset; the same arguments always give the same bytes."""
    rng = random.Random(f"{spec.layer}/{spec.name}/{seed}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(spec.columns)
    for i in range(spec.rows if rows is None else rows):
        writer.writerow(_csv_values(spec.row(rng, i)))
    return out.getvalue().encode()


def _csv_values(values: list) -> Iterator:
    for value in values:
        yield ("true" if value else "false") if isinstance(value, bool) else value
