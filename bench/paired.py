"""The champion comparison's statistics (shepherd.paired): their cost, and how often the gate passes.

A report, not a test: prints a table and a SUMMARY line and exits 0. For simulated classifiers each right with
a known accuracy (0.78 for the champion) and correlated answers, it measures the gate's pass rate at
margin 0: for a candidate exactly as accurate as the champion it must stay at or below 5 % (the one-sided 95 %
rule), and it rises with the candidate's true advantage. Then the median time of each test on 1,000 to 20,000
rows. Run: python bench/paired.py [--trials 400]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from shepherd.paired import bootstrap, mcnemar


def pass_rate(advantage: float, rows: int, trials: int, seed: int) -> float:
    """Share of trials where the candidate (accuracy 0.78 + advantage) is shown not worse than the champion (0.78)."""
    generator = np.random.default_rng(seed)
    passed = 0
    for _ in range(trials):
        champion = generator.random(rows) < 0.78
        # Paired, as real answers are: on 70 % of the rows the candidate is right where the champion is; on the
        # rest it is right with a probability that makes its accuracy exactly 0.78 + advantage.
        shared = generator.random(rows) < 0.7
        candidate = np.where(shared, champion, generator.random(rows) < 0.78 + advantage / 0.3)
        result = mcnemar(list(candidate), list(champion), float(np.mean(candidate != champion)))
        passed += result.beats_by(0.0)
    return passed / trials


def median_ms(call: object, repeats: int = 5) -> float:
    assert callable(call)
    spent = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        spent.append(time.perf_counter() - started)
    return 1000 * statistics.median(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--trials", type=int, default=400)
    args = parser.parse_args()
    print(f"gate pass rate at margin 0, McNemar, {args.trials} trials each")
    print(f"{'rows':>6} {'advantage':>10} {'pass rate':>10}")
    equal = []
    for rows in (200, 1000):
        for advantage in (0.0, 0.01, 0.03):
            rate = pass_rate(advantage, rows, args.trials, seed=rows)
            equal += [rate] if advantage == 0.0 else []
            print(f"{rows:>6} {advantage:>10.2f} {rate:>10.3f}")
    print(f"\n{'rows':>6} {'McNemar ms':>11} {'bootstrap rmse ms':>18}")
    generator = np.random.default_rng(0)
    for rows in (1000, 5000, 20000):
        truth = generator.normal(size=rows)
        first, second = truth + generator.normal(0, 1, rows), truth + generator.normal(0, 1.1, rows)
        right_a, right_b = list(generator.random(rows) < 0.8), list(generator.random(rows) < 0.78)
        exact = median_ms(lambda a=right_a, b=right_b: mcnemar(a, b, 0.1))
        boot = median_ms(lambda t=truth, a=first, b=second: bootstrap(t, a, b, "rmse", seed=1))
        print(f"{rows:>6} {exact:>11.0f} {boot:>18.0f}")
    print(f"SUMMARY equal-model pass rate {max(equal):.3f} (<= 0.05 + noise expected)")


if __name__ == "__main__":
    main()
