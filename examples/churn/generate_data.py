"""Deterministic churn-like tabular data: train / validation / test CSVs with a ``target`` column.

A subscription business's customers (tenure, charges, support calls, contract type, ...) and
whether they churned, drawn from a fixed logistic model so a model has a real signal to learn
and the same seed always gives the same files. Ship this generator, not the CSVs.

    python examples/churn/generate_data.py --out data/churn            # 4000 / 1000 / 1000 rows
    python examples/churn/generate_data.py --out data/churn --rows 600 # smaller
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

FEATURES = [
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_calls",
    "month_to_month",
    "fiber_optic",
    "senior",
    "auto_pay",
]
SPLITS = {"train": 0.666, "validation": 0.167, "test": 0.167}


def generate(rows: int = 6000, seed: int = 7) -> pd.DataFrame:
    """One frame of customers; ``target`` is 1 for churn. Churn is ~25 %, as in typical telco data."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 73, rows)
    month_to_month = rng.random(rows) < 0.55
    fiber = rng.random(rows) < 0.45
    senior = rng.random(rows) < 0.16
    auto_pay = rng.random(rows) < 0.4
    monthly = np.round(20 + 45 * fiber + rng.normal(30, 12, rows).clip(0, None), 2)
    total = np.round(monthly * tenure * rng.uniform(0.9, 1.0, rows), 2)
    support_calls = rng.poisson(1.0 + 1.5 * fiber, rows)
    logit = (
        -1.6
        - 0.045 * tenure
        + 1.5 * month_to_month
        + 0.7 * fiber
        + 0.35 * support_calls
        + 0.4 * senior
        - 0.6 * auto_pay
        + 0.01 * (monthly - 65)
    )
    churn = rng.random(rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "tenure_months": tenure,
            "monthly_charges": monthly,
            "total_charges": total,
            "support_calls": support_calls,
            "month_to_month": month_to_month.astype(int),
            "fiber_optic": fiber.astype(int),
            "senior": senior.astype(int),
            "auto_pay": auto_pay.astype(int),
            "target": churn.astype(int),
        }
    )


def write_splits(out: Path, rows: int = 6000, seed: int = 7) -> dict[str, Path]:
    """``out/{train,validation,test}/<split>.csv`` (one directory per SageMaker channel)."""
    frame = generate(rows, seed)
    paths: dict[str, Path] = {}
    start = 0
    for i, (split, share) in enumerate(SPLITS.items()):
        end = rows if i == len(SPLITS) - 1 else start + round(rows * share)
        path = out / split / f"{split}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.iloc[start:end].to_csv(path, index=False)
        paths[split] = path
        start = end
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("data/churn"))
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    for split, path in write_splits(args.out, args.rows, args.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
