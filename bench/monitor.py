"""Drift alerts on simulated capture: false alerts per model per month and hours to detect, Shepherd vs the anchors.

Writes bench/results/monitor.json (issue 19's contract). A report, not a test: always exits 0.
How it is built: docs/MONITORING.md, "The benchmark".
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from scipy.spatial.distance import jensenshannon

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "layers" / "shepherd"))

from shepherd.monitor import alert, reference  # noqa: E402
from shepherd.monitor import history as learnt  # noqa: E402

NUMERIC = [f"f{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i:02d}" for i in range(16, 20)]
CATEGORIES = ["a", "b", "c", "d", "e", "f"]
SHARES = np.array([0.35, 0.25, 0.15, 0.12, 0.08, 0.05])
ROWS = 200  # per hourly check
HISTORY_HOURS = 14 * 24  # the reference: two weeks of capture, every hour of the daily cycle 14 times
MONTH = 720
ONSET = 360  # drift starts with the check of this hour; alerts before it are false
QUIET = alert.AlertSettings().quiet_checks  # one debounce for every strategy
DAY = 24  # an episode still firing after a day counts as a new alert: a rule that never stops is not one alert
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
CHECKS_PER_DAY = 24
LOGNORMAL_SD = math.sqrt((math.exp(0.25) - 1) * math.exp(0.25))  # of exp(N(0, 0.5^2))

SCENARIOS: dict[str, dict[str, Any]] = {
    "no_drift": {"drift": False, "what": "every feature as in the reference"},
    "mean_shift": {"drift": True, "what": "f03 (lognormal) mean +0.2 sd from hour 360"},
    "variance_change": {"drift": True, "what": "f06 (normal) sd x1.2 from hour 360"},
    "new_category": {"drift": True, "what": "c17 gains a category unseen in the reference, 3 % of rows, from hour 360"},
    "seasonal": {"drift": False, "what": "f00, f01 follow a daily cycle (1.5 sd); the reference's two weeks cover it"},
    "missing_values": {
        "drift": True,
        "what": "f02 missing share creeps from its usual 0.5 % by 0.02 points an hour from hour 360",
    },
}


def _generate(rng: np.random.Generator, scenario: str, hours: np.ndarray) -> dict[str, np.ndarray]:
    """Rows of the given hours, shape (hours, ROWS): numeric as floats (NaN missing), categorical as codes (-1)."""
    shape = (len(hours), ROWS)
    after = (hours >= ONSET)[:, None]
    data: dict[str, np.ndarray] = {}
    for i, name in enumerate(NUMERIC):
        x = rng.normal(size=shape) if i % 2 == 0 else np.exp(rng.normal(0.0, 0.5, size=shape))
        if scenario == "seasonal" and name in ("f00", "f01"):
            angle = 2 * math.pi * (hours[:, None] + 0.5) / 24
            x = x + 1.5 * np.std(x) * (np.sin(angle) + 0.3 * np.cos(2 * angle))
        if scenario == "mean_shift" and name == "f03":
            x = x + np.where(after, 0.2 * LOGNORMAL_SD, 0.0)
        if scenario == "variance_change" and name == "f06":
            x = np.where(after, x * 1.2, x)
        if name == "f02":
            share = 0.005 + (np.maximum(hours - ONSET + 1, 0) * 0.0002 if scenario == "missing_values" else 0)
            x = np.where(rng.random(shape) < np.broadcast_to(np.asarray(share)[..., None], shape), np.nan, x)
        data[name] = x
    for name in CATEGORICAL:
        codes = rng.choice(len(CATEGORIES), p=SHARES, size=shape)
        if scenario == "new_category" and name == "c17":
            codes = np.where(after & (rng.random(shape) < 0.03), len(CATEGORIES), codes)
        data[name] = codes
    return data


NAMES = np.array([*CATEGORIES, "new"], dtype=object)


def _cells(codes: np.ndarray) -> list[str | None]:
    return [None if c < 0 else str(NAMES[c]) for c in codes]


# --- the anchors' per-feature statistics (reference = the same two weeks, pooled: a static snapshot) ---

SUB = 16  # quantile levels per batch row for the Wasserstein integral


def _ks(sorted_ref: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """Per row of `batches` (hours, rows), the Kolmogorov-Smirnov distance to the reference (missing dropped)."""
    out = np.zeros(len(batches))
    complete = ~np.isnan(batches).any(axis=1)
    groups = [(np.flatnonzero(complete), batches[complete])]
    groups += [(np.array([t]), batches[t][None, ~np.isnan(batches[t])]) for t in np.flatnonzero(~complete)]
    for rows, unsorted in groups:
        if unsorted.size == 0:
            continue
        x = np.sort(unsorted, axis=1)
        n = x.shape[1]
        cdf = np.searchsorted(sorted_ref, x.ravel(), side="right").reshape(x.shape) / len(sorted_ref)
        below = np.searchsorted(sorted_ref, x.ravel(), side="left").reshape(x.shape) / len(sorted_ref)
        i = np.arange(1, n + 1)
        out[rows] = np.maximum((i / n - below).max(axis=1), (cdf - (i - 1) / n).max(axis=1))
    return out


def _wasserstein_norm(sorted_ref: np.ndarray, batches: np.ndarray) -> np.ndarray:
    """Evidently's wasserstein_distance_norm per row: W1(reference, current) / sd(reference), int |Q_ref - Q_cur| du."""
    out = np.zeros(len(batches))
    for t, row in enumerate(batches):
        x = np.sort(row[~np.isnan(row)])
        if len(x) == 0:
            continue
        u = (np.arange(len(x) * SUB) + 0.5) / (len(x) * SUB)
        q = sorted_ref[np.minimum((u * len(sorted_ref)).astype(int), len(sorted_ref) - 1)]
        out[t] = np.abs(q - np.repeat(x, SUB)).mean()
    return out / sorted_ref.std()


def _shares(codes: np.ndarray, k: int) -> np.ndarray:
    """Per row of codes (hours, rows), each category's share among present values."""
    counts = np.stack([(codes == j).sum(axis=1) for j in range(k)], axis=1)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)


def _anchors(history: dict[str, np.ndarray], data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per anchor and check, the largest statistic / threshold over features: the check fires above 1.

    Model Monitor's default rule (KS distance, L-infinity of category shares > 0.1), Evidently's defaults for a
    reference over 1,000 rows (Wasserstein / sd > 0.1, Jensen-Shannon distance > 0.1) and NannyML-style
    thresholds learned from reference chunks (KS and missing share: mean + 3 sd; L-infinity > 0.1)."""
    k = len(NAMES)
    ref = {f: np.sort(history[f][~np.isnan(history[f])]) for f in NUMERIC}
    ks = np.stack([_ks(ref[f], data[f]) for f in NUMERIC])
    wasserstein = np.stack([_wasserstein_norm(ref[f], data[f]) for f in NUMERIC])
    ref_shares = {f: _shares(history[f].ravel()[None, :], k)[0] for f in CATEGORICAL}
    shares = {f: _shares(data[f], k) for f in CATEGORICAL}
    linf = np.stack([np.abs(shares[f] - ref_shares[f]).max(axis=1) for f in CATEGORICAL])
    js = np.stack(
        [jensenshannon(np.broadcast_to(ref_shares[f], shares[f].shape), shares[f], axis=1) for f in CATEGORICAL]
    )
    chunk_ks = np.stack([_ks(ref[f], history[f]) for f in NUMERIC])
    ks_limit = chunk_ks.mean(axis=1) + 3 * chunk_ks.std(axis=1)
    chunk_missing = np.stack([np.isnan(history[f]).mean(axis=1) for f in NUMERIC])
    missing_limit = chunk_missing.mean(axis=1) + 3 * chunk_missing.std(axis=1)
    missing = np.stack([np.isnan(data[f]).mean(axis=1) for f in NUMERIC])
    with np.errstate(divide="ignore", invalid="ignore"):
        missing_ratio = np.where(
            missing_limit[:, None] > 0, missing / missing_limit[:, None], np.where(missing > 0, np.inf, 0)
        )
    return {
        "model_monitor_default": np.maximum(ks.max(axis=0), linf.max(axis=0)) / 0.1,
        "evidently_default": np.maximum(wasserstein.max(axis=0), js.max(axis=0)) / 0.1,
        "nannyml_thresholds": np.maximum.reduce(
            [(ks / ks_limit[:, None]).max(axis=0), missing_ratio.max(axis=0), linf.max(axis=0) / 0.1]
        ),
    }


# --- episodes ---


def episodes(firing: np.ndarray, quiet: int = QUIET) -> list[int]:
    """The checks at which alert episodes open: one ends after `quiet` checks without firing, or after a day."""
    opened: list[int] = []
    open_, calm = False, 0
    for t, fire in enumerate(firing):
        if fire:
            if not open_ or t - opened[-1] >= DAY:
                opened.append(t)
            open_, calm = True, 0
        elif open_:
            calm += 1
            open_ = calm < quiet
    return opened


def _shepherd(ref: reference.Reference, data: dict[str, np.ndarray], first_hour: int) -> np.ndarray:
    """Shepherd's `firing` per check, running the production alert.step hour by hour."""
    state: alert.AlertState | None = None
    hours = len(data[NUMERIC[0]])
    firing = np.zeros(hours, dtype=bool)
    for t in range(hours):
        batch: dict[str, Any] = {f: data[f][t] for f in NUMERIC}
        batch |= {f: _cells(data[f][t]) for f in CATEGORICAL}
        state, decision = alert.step(state, ref, batch, at=EPOCH + timedelta(hours=first_hour + t))
        firing[t] = decision.firing
    return firing


KINDS: dict[str, reference.FeatureReference] = {
    f: reference.NumericReference(0, 0, 0, (0.0,), 1.0, ()) for f in NUMERIC
}
KINDS |= {f: reference.CategoricalReference(0, 0) for f in CATEGORICAL}


def _reference(history: dict[str, np.ndarray]) -> reference.Reference:
    """The reference production learns from captured history: hour by hour into per-hour summaries, then learnt."""
    learner = learnt.History(CHECKS_PER_DAY)
    for h in range(HISTORY_HOURS):
        batch: dict[str, Any] = {f: history[f][h] for f in NUMERIC}
        batch |= {f: _cells(history[f][h]) for f in CATEGORICAL}
        learner.add(KINDS, batch, EPOCH + timedelta(hours=h))
    return learner.learn()


def _month(seed: int, scenario: str) -> dict[str, np.ndarray]:
    """Per strategy, its firing statistic per check of one simulated month (Shepherd: 1.0 fires, 0.0 does not)."""
    rng = np.random.default_rng(seed)
    history = _generate(rng, scenario, np.arange(HISTORY_HOURS) - HISTORY_HOURS)
    data = _generate(rng, scenario, np.arange(MONTH))
    out = _anchors(history, data)
    out["shepherd"] = _shepherd(_reference(history), data, HISTORY_HOURS).astype(float)
    return out


def _calibrate(null_ratios: list[np.ndarray], target_per_month: float) -> float:
    """The smallest threshold on the ratio whose episodes on no-drift months are at most the target rate."""
    candidates = np.unique(np.concatenate(null_ratios))
    allowed = target_per_month * len(null_ratios) * len(null_ratios[0]) / MONTH
    lo, hi = 0, len(candidates) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        count = sum(len(episodes(r > candidates[mid])) for r in null_ratios)
        if count <= allowed:
            hi = mid
        else:
            lo = mid + 1
    return float(candidates[lo])


def _summary(firings: list[np.ndarray], drift: bool) -> dict[str, float | None]:
    false, hours_to_detect = 0, []
    span = ONSET if drift else MONTH
    for firing in firings:
        false += len(episodes(firing[:span]))
        if drift:
            after = np.flatnonzero(firing[ONSET:])
            hours_to_detect.append(float(after[0] + 1) if len(after) else math.inf)
    rate = false * MONTH / (span * len(firings))
    median = float(np.median(hours_to_detect)) if drift else math.inf
    return {"false_alerts_per_month": round(rate, 3), "hours_to_detect": median if math.isfinite(median) else None}


def table(document: dict[str, Any]) -> str:
    """The results as a Markdown table: false alerts per month (before the onset) / median hours to detect."""
    scenarios = document["scenarios"]
    lines = ["| strategy | " + " | ".join(scenarios) + " |", "|---" * (len(scenarios) + 1) + "|"]
    for strategy, by_scenario in document["strategies"].items():
        cells = []
        for scenario, spec in scenarios.items():
            r = by_scenario[scenario]
            hours = "never" if r["hours_to_detect"] is None else f"{r['hours_to_detect']:g} h"
            cells.append(
                f"{r['false_alerts_per_month']:g} / {hours}" if spec["drift"] else f"{r['false_alerts_per_month']:g}"
            )
        lines.append(f"| `{strategy}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer simulated months (under 3 minutes)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    parser.add_argument("--months", type=int, help="months per scenario (default 20, quick 2)")
    parser.add_argument(
        "--calibration-months", type=int, help="no-drift months to recalibrate on (default 40, quick 3)"
    )
    args = parser.parse_args()
    months = args.months or (2 if args.quick else 20)
    calibration = args.calibration_months or (3 if args.quick else 40)
    target = alert.AlertSettings().false_alerts_per_month
    started = time.monotonic()

    null = [_month(10_000 + i, "no_drift") for i in range(calibration)]
    anchors = ["model_monitor_default", "evidently_default", "nannyml_thresholds"]
    limits = {a: _calibrate([m[a] for m in null], target) for a in anchors}
    print(f"recalibrated on {calibration} no-drift months to {target:g} false alert a month: ", end="")
    print(", ".join(f"{a} fires above {limits[a]:.3f}x its default" for a in anchors))

    strategies = ["shepherd", *anchors, *(f"{a}_calibrated" for a in anchors)]
    results: dict[str, dict[str, Any]] = {s: {} for s in strategies}
    for s_index, (scenario, spec) in enumerate(SCENARIOS.items()):
        runs = [_month(1_000 * (s_index + 1) + i, scenario) for i in range(months)]
        for strategy in strategies:
            base = strategy.removesuffix("_calibrated")
            limit = limits[base] if strategy.endswith("_calibrated") else (0.5 if base == "shepherd" else 1.0)
            results[strategy][scenario] = _summary([run[base] > limit for run in runs], spec["drift"])
        print(f"{scenario}: {months} months, {time.monotonic() - started:.0f} s")

    document = {"features": len(NUMERIC) + len(CATEGORICAL), "checks_per_day": CHECKS_PER_DAY, "scenarios": SCENARIOS}
    document["strategies"] = results
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "monitor.json").write_text(json.dumps(document, indent=2) + "\n")

    print("\n" + table(document))
    simulated = months * len(SCENARIOS) + calibration
    print(f"{simulated} simulated months in {time.monotonic() - started:.0f} s -> {args.out / 'monitor.json'}")


if __name__ == "__main__":
    main()
