"""Reading a demo's summary.json: its clock, its rollout records as stage rows, what it was built to show.

Every time is a demo second: wall seconds since the traffic started; the rollout's records carry the cloud's
virtual time, mapped back here.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from shepherd import cost as prices
from shepherd.aws.monitor_reports import FeatureDrift, feature_drift
from shepherd.rollout import budget, cost

ROOT = Path(__file__).resolve().parents[1]
ODDS = ROOT / "bench" / "results" / "demo_odds.json"
RECORD_COLUMNS = ("demo_s", "at_virtual", "rollout", "event", "stage", "weight_pct", "verdict", "why", "evidence")


@dataclass(frozen=True)
class StageRow:
    """One stage of one rollout: when it ran (demo seconds), how often the judge was asked, how it ended."""

    rollout: str
    stage: str
    start: float
    end: float
    judge_calls: int
    verdict: str
    reason: str

    @property
    def duration(self) -> float:
        return self.end - self.start


def variant_of(package: str) -> str:
    """A package's variant on the endpoint: version N serves as variant vN."""
    return f"v{package.rsplit('/', 1)[1]}"


def demo_second(at: str, clock: dict[str, Any]) -> float:
    """A virtual time as seconds since the traffic started (the virtual clock runs time_scale x faster)."""
    elapsed = datetime.fromisoformat(at) - datetime.fromisoformat(clock["origin"])
    return elapsed.total_seconds() / clock["time_scale"]


def clock_of(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary's clock; a demo stopped before its traffic started counts from its first record."""
    clock = dict(summary["clock"])
    if clock.get("origin") is None:
        clock["origin"] = summary["records"][0]["at"] if summary["records"] else "2000-01-01T00:00:00+00:00"
    return clock


def _stage_name(record: dict[str, Any]) -> str:
    if record.get("stage") == "ab":
        return f"A/B {record.get('weight', 0):g}%"
    return "first deployment" if record.get("stage") == "first" else str(record.get("stage") or "starting")


def _why(record: dict[str, Any]) -> str:
    return str(record.get("explanation") or record.get("reason") or record.get("error") or "")


def stage_rows(records: list[dict[str, Any]], clock: dict[str, Any]) -> list[StageRow]:
    """The rollout record collapsed to one row per stage: its CONTINUE verdicts become a count of judge calls."""
    by_package: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        by_package.setdefault(record["package"], []).append(record)
    rows = []
    for package, entries in by_package.items():
        # A rollout that ended before its first stage is still a row: "starting", with its ending.
        starts = [i for i, e in enumerate(entries) if e["event"] in ("stage-entered", "deploying")] or [0]
        for number, first in enumerate(starts):
            last = starts[number + 1] - 1 if number + 1 < len(starts) else len(entries) - 1
            within = entries[first : last + 1]
            verdicts = [e for e in within if e["event"] == "verdict"]
            decided = [e for e in verdicts if e.get("verdict") != "CONTINUE"]
            ending = within[-1]
            if decided:
                verdict, reason = str(decided[-1]["verdict"]), _why(decided[-1])
            elif ending["event"] == "promoted":
                verdict, reason = "DEPLOYED", ""
            elif number + 1 == len(starts) and ending["event"] not in ("verdict", "stage-entered"):
                verdict, reason = ending["event"].upper(), _why(ending)
            else:
                verdict, reason = "running", ""
            rows.append(
                StageRow(
                    rollout=variant_of(package),
                    stage=_stage_name(entries[first]),
                    start=demo_second(entries[first]["at"], clock),
                    end=demo_second(ending["at"], clock),
                    judge_calls=len(verdicts),
                    verdict=verdict,
                    reason=reason,
                )
            )
    return rows


def rollout_cost(entries: list[dict[str, Any]], region: str = "us-east-1") -> dict[str, Any]:
    """summary.json's ``cost`` and ``live_requests`` of one rollout: its ending record's (the cost meter's), or,
    for a rollout still running or ended without one, the same accounting up to its last record."""
    ended = next((e for e in reversed(entries) if isinstance(e.get("cost"), dict)), None)
    if ended is None:
        run = next((str(e["run"]) for e in reversed(entries) if e.get("run")), "")
        last = max((datetime.fromisoformat(e["at"]) for e in entries if e.get("at")), default=None)
        if not run or last is None:
            unknown = ["the rollout's records carry no run or time to measure its stages by"]
            return {"cost": {"instance_hours": 0.0, "usd": None, "unknown": unknown}, "live_requests": 0}
        ended = cost.summary(entries, run=run, ended_at=last, prices=prices.prices(region))
    metered = ended["cost"]
    out: dict[str, Any] = {"instance_hours": metered.get("instance_hours", 0.0), "usd": metered.get("usd")}
    if metered.get("unknown"):
        out["unknown"] = metered["unknown"]
    return {"cost": out, "live_requests": int(ended.get("live_requests") or 0)}


def cost_rows(summary: dict[str, Any]) -> list[tuple[str, str, float, float, float | None, int]]:
    """Per rollout and stage: (rollout, stage, minutes, instance-hours, USD, live requests), from the ending
    records' cost meter, for the report's table."""
    rows = []
    for record in summary.get("records") or []:
        metered = record.get("cost")
        if not isinstance(metered, dict) or not record.get("package"):
            continue
        for stage in metered.get("stages") or []:
            rows.append(
                (
                    variant_of(record["package"]),
                    str(stage.get("stage", "")),
                    float(stage.get("minutes") or 0.0),
                    float(stage.get("instance_hours") or 0.0),
                    stage.get("usd"),
                    int(stage.get("live_requests") or 0),
                )
            )
    return rows


def _evidence_text(record: dict[str, Any]) -> str:
    return "; ".join(
        f"{st['metric']} {st['statistic']:.2f} (promote <= {st['promote_boundary']:.2f}, "
        f"roll back >= {st['rollback_boundary']:.2f})"
        for st in record.get("statistics") or []
    )


def records_csv(records: list[dict[str, Any]], clock: dict[str, Any]) -> str:
    """The full rollout record, one line per event (every CONTINUE included), for a spreadsheet."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(RECORD_COLUMNS)
    for r in records:
        weight = r.get("weight")
        writer.writerow(
            (
                f"{demo_second(r['at'], clock):.1f}",
                r["at"],
                variant_of(r["package"]),
                r["event"],
                r.get("stage") or "",
                "" if weight is None else f"{weight:g}",
                r.get("verdict") or "",
                _why(r),
                _evidence_text(r),
            )
        )
    return buffer.getvalue()


# ---------------------------------------------------------------- what the demo is designed to show


@dataclass(frozen=True)
class Design:
    """A variant's error and misclassification rates as the demo builds them, and what its rollout must do."""

    variant: str
    role: str
    error_rate: float
    wrong: float | None
    expected: str


def designs(settings: dict[str, Any], fault_share: float) -> list[Design]:
    """The rates each variant is built to have: malformed requests fail on every variant, v3 fails more.

    Misclassification rates are bench/demo_odds.py's measurements of the models the demo trains."""
    models = json.loads(ODDS.read_text())["models"] if ODDS.exists() else {}
    malformed = settings["malformed"]
    faulty = malformed + (1 - malformed) * fault_share
    return [
        Design(
            "v1", f"champion (max_depth {settings['first_max_depth']})", malformed, models.get("v1_wrong"), "replaced"
        ),
        Design(
            "v2", f"good candidate (max_depth {settings['max_depth']})", malformed, models.get("v2_wrong"), "promoted"
        ),
        Design(
            "v3",
            f"faulty candidate: v2's model failing {fault_share:.0%} of valid requests",
            faulty,
            models.get("v2_wrong"),
            "rolled back in shadow",
        ),
    ]


def observed_error_rates(metrics: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """Per variant, (errors, requests) over the whole demo, from the endpoint's metrics (shadow included)."""
    totals: dict[str, tuple[int, int]] = {}
    for bucket in metrics.get("seconds", {}).values():
        for variant, requests in bucket["requests"].items():
            errors, seen = totals.get(variant, (0, 0))
            totals[variant] = (errors + int(bucket["errors"].get(variant, 0)), seen + int(requests))
    return totals


def odds(settings: dict[str, Any]) -> str:
    """The demo's chance of failing, from bench/demo_odds.py's last results (when they match these settings)."""
    kinds = ["shadow", *["ab"] * len(settings["ab_steps"]), "full", "watch"]
    budgets = budget.split(kinds)
    alpha, miss = budget.rollout_rates(budgets, settings["alpha"], settings["beta"])
    text = (
        f"A rollout of this demo runs {2 * len(kinds)} judged tests ({len(kinds)} stages x error rate and quality) "
        f"on one error budget for the whole rollout (shepherd/rollout/budget.py): alpha {settings['alpha']:g} spent "
        f"across the stages, shadow taking {budgets[0].alpha(settings['alpha']):.2g} and each later stage "
        f"{budgets[1].alpha(settings['alpha']):.2g}, split between the two metrics. A candidate as good as its "
        f"champion is rolled back by chance in at most {alpha:.2%} of rollouts; one worse by the configured delta "
        f"reaches full in at most {miss:.0%}."
    )
    if not ODDS.exists():
        return text
    mode = "quick" if settings["quick"] else "full"
    runs = [r for r in json.loads(ODDS.read_text())["runs"] if r["mode"] == mode and r["settings"] == settings]
    text += (
        f" Each stage may last {settings['stage_max_minutes']} virtual minutes (the watch "
        f"{settings['watch_minutes']}) before it ends INCONCLUSIVE."
    )
    for run in runs:
        minutes = run.get("good_virtual_minutes_p50_p99") or [0, 0]
        text += (
            f" Simulated with the product's judge (bench/demo_odds.py) at {run['requests_per_virtual_minute']:.0f} "
            f"requests a virtual minute: {run['failure_rate']:.2%} of {run['replications']:,} demos failed "
            f"(95 % upper bound {run['failure_rate_95_upper']:.2%}); v2's rollout took {minutes[0]:.0f} virtual "
            f"minutes (p99 {minutes[1]:.0f})."
        )
    return text


# ---------------------------------------------------------------- monitor reports


@dataclass(frozen=True)
class MonitorRun:
    """One monitor report: its hour on the cloud's clock, per-feature drift, its violations and alert decision."""

    at: datetime
    drift: list[FeatureDrift]
    violations: list[dict[str, str]]
    decision: dict[str, Any]
    statistics: dict[str, Any]
    retrain_started: bool = False


def monitor_runs(
    baseline: dict[str, Any], reports: list[dict[str, Any]], constraints: dict[str, Any] | None = None
) -> list[MonitorRun]:
    """Reports (``{"statistics", "constraint_violations", "alert"}``: the documents of one report folder as the
    run wrote them) in time order, each feature's distance measured against the baseline as the monitor does."""
    runs = []
    for report in reports:
        alert = _document(report, "alert") or {}
        statistics = _document(report, "statistics") or {"features": []}
        violations = _document(report, "constraint_violations") or {"violations": []}
        runs.append(
            MonitorRun(
                at=datetime.fromisoformat(str(alert.get("at") or report.get("at"))),
                drift=feature_drift(statistics, violations, baseline, constraints),
                violations=list(violations.get("violations", [])),
                decision=alert.get("decision") or {},
                statistics=statistics,
                retrain_started=bool((alert.get("retrain") or {}).get("started")),
            )
        )
    return sorted(runs, key=lambda run: run.at)


def _document(report: dict[str, Any], name: str) -> dict[str, Any] | None:
    """A report's document by its name, with or without .json (shepherd.aws.monitor_reports keys by file name)."""
    found = report.get(name) or report.get(f"{name}.json")
    return found if isinstance(found, dict) else None
