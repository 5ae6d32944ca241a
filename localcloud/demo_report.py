"""The demo's report for people: report.html, timeline.png, records.csv and the summary printed at the end.

Built from summary.json alone, so a recorded run rebuilds (and tests) it. Every time is a demo second: wall
seconds since the traffic started; the rollout's records carry the cloud's virtual time, mapped back here.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.table import Table
from shepherd.aws.monitor_reports import FeatureDrift, feature_drift

ROOT = Path(__file__).resolve().parents[1]
ODDS = ROOT / "bench" / "results" / "demo_odds.json"
# One colour per variant, in version order, the same in every panel; no red or green, which mean verdicts.
# tab:orange (v2) is what tests/e2e/test_demo.py looks for in the rendered report.
PALETTE = ("tab:blue", "tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:cyan", "tab:olive", "tab:gray")
VERDICT_COLOURS = {"PROMOTE": "#2e7d32", "ROLLBACK": "#c62828", "INCONCLUSIVE": "#757575", "DEPLOYED": "#2e7d32"}
# The judge's metrics as people name them; shadow_quality and quality are one panel (wrong predictions).
METRIC_NAMES = {
    "error_rate": "error rate",
    "quality": "wrong predictions",
    "shadow_quality": "wrong predictions",
    "latency": "latency",
}
Spans = dict[str, list[tuple[float, float]]]  # per variant, the demo seconds it served as a shadow
# Beside the plot, not on it: every time panel keeps the same width, so their seconds line up.
LEGEND: dict[str, Any] = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0), "fontsize": 7, "frameon": False}
RECORD_COLUMNS = ("demo_s", "at_virtual", "rollout", "event", "stage", "weight_pct", "verdict", "why", "evidence")


@dataclass(frozen=True)
class Stage:
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


def stages(records: list[dict[str, Any]], clock: dict[str, Any]) -> list[Stage]:
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
                Stage(
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
    stages_judged = 1 + len(settings["ab_steps"]) + 2  # shadow, each A/B step, full, the watch
    text = (
        f"A rollout of this demo runs {2 * stages_judged} judged tests ({stages_judged} stages x error rate and "
        f"quality) at alpha {settings['alpha'] / 2:g} each: a candidate as good as its champion is rolled back by "
        f"chance in at most {stages_judged * settings['alpha']:.2%} of rollouts."
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


# ---------------------------------------------------------------- the figure


def colours(summary: dict[str, Any]) -> dict[str, str]:
    """Every variant that served or was judged, in version order, with its colour."""
    seen = {v for b in summary["endpoint_metrics"]["seconds"].values() for v in b["requests"]}
    seen |= {variant_of(r["package"]) for r in summary["records"]}
    ordered = sorted(seen, key=lambda v: (len(v), v))
    return {v: PALETTE[i % len(PALETTE)] for i, v in enumerate(ordered)}


def series(seconds: dict[str, Any], window: int = 3) -> dict[str, Any]:
    """Per variant over `window`-second windows: requests per second, error rate (%) and p50 latency (ms)."""
    variants = sorted({v for b in seconds.values() for v in b["requests"]})
    points: dict[str, Any] = {"t": [], "requests": {v: [] for v in variants}, "errors": {v: [] for v in variants}}
    points["latency"] = {v: [] for v in variants}
    last = max((int(t) for t in seconds), default=-1)
    for start in range(0, last + 1, window):
        group = [seconds[str(t)] for t in range(start, start + window) if str(t) in seconds]
        points["t"].append(start + window / 2)
        for v in variants:
            requests = sum(b["requests"].get(v, 0) for b in group)
            errors = sum(b["errors"].get(v, 0) for b in group)
            latencies = sorted(b["latency_ms_p50"][v] for b in group if v in b["latency_ms_p50"])
            points["requests"][v].append(requests / window if requests else float("nan"))
            points["errors"][v].append(100 * errors / requests if requests else float("nan"))
            points["latency"][v].append(latencies[len(latencies) // 2] if latencies else float("nan"))
    return points


def _in_spans(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(start <= t <= end for start, end in spans)


def _plot_variants(axis: Any, points: dict[str, Any], key: str, palette: dict[str, str], shadows: Spans) -> None:
    """One line per variant; where it served as a shadow, the line is dashed."""
    for variant, values in points[key].items():
        spans = shadows.get(variant, [])
        solid = [v if not _in_spans(t, spans) else math.nan for t, v in zip(points["t"], values, strict=True)]
        dashed = [v if _in_spans(t, spans) else math.nan for t, v in zip(points["t"], values, strict=True)]
        style = {"color": palette[variant], "linewidth": 1.5, "marker": ".", "markersize": 3}
        only_shadow = all(math.isnan(v) for v in solid)
        axis.plot(points["t"], solid, label=None if only_shadow else variant, **style)
        if spans:
            axis.plot(points["t"], dashed, linestyle="--", label=variant if only_shadow else None, **style)
    if shadows:
        axis.plot([], [], color="#555555", linestyle="--", label="dashed: as a shadow")


def _stage_strip(axis: Any, rows: list[Stage], palette: dict[str, str]) -> None:
    """Which rollout was in which stage when: one bar per stage, edged in its verdict's colour."""
    rollouts = sorted({r.rollout for r in rows}, key=lambda v: (len(v), v))
    for row in rows:
        y = rollouts.index(row.rollout)
        edge = VERDICT_COLOURS.get(row.verdict, "#333333")
        axis.broken_barh(
            [(row.start, max(row.duration, 0.3))],
            (y - 0.35, 0.7),
            facecolors=palette[row.rollout],
            alpha=0.35,
            edgecolors=edge,
            linewidth=1.5,
        )
        axis.text(row.start + row.duration / 2, y, row.stage, ha="center", va="center", fontsize=7, clip_on=True)
    axis.set_yticks(range(len(rollouts)), [f"{v} rollout" for v in rollouts], fontsize=8)
    axis.set_ylim(len(rollouts) - 0.5, -0.5)
    axis.set_title("Stages (edge: green promoted, red rolled back, grey inconclusive), demo seconds", fontsize=10)


def _evidence(axis: Any, metric: str, rows: list[Stage], summary: dict[str, Any]) -> None:
    """The judge's statistic for one metric, per stage, with that stage's boundaries drawn only over the stage."""
    palette, clock, records = colours(summary), clock_of(summary), summary["records"]
    by_stage: dict[tuple[str, str, float], list[tuple[float, dict[str, Any]]]] = {}
    for record in records:
        for statistic in record.get("statistics") or []:
            if METRIC_NAMES.get(statistic["metric"], statistic["metric"]) == metric:
                key = (record["package"], str(record.get("stage")), float(record.get("weight") or 0))
                by_stage.setdefault(key, []).append((demo_second(record["at"], clock), statistic))
    drawn_variants: set[str] = set()
    for (package, _, _), points in by_stage.items():
        variant = variant_of(package)
        times = [t for t, _ in points]
        start = next((r.start for r in rows if r.rollout == variant and r.start <= times[0] <= r.end + 1e-6), times[0])
        end = times[-1]
        axis.plot(
            times,
            [st["statistic"] for _, st in points],
            color=palette[variant],
            marker="o",
            markersize=3,
            linewidth=1.5,
            label=None if variant in drawn_variants else f"{variant} (candidate)",
        )
        drawn_variants.add(variant)
        last = points[-1][1]
        axis.hlines(last["rollback_boundary"], start, end, colors=VERDICT_COLOURS["ROLLBACK"], linestyles="--", lw=1)
        axis.hlines(last["promote_boundary"], start, end, colors=VERDICT_COLOURS["PROMOTE"], linestyles=":", lw=1.2)
        if last["verdict"] != "CONTINUE":
            axis.plot(end, last["statistic"], marker="*", markersize=10, color=VERDICT_COLOURS.get(last["verdict"]))
    axis.plot([], [], color=VERDICT_COLOURS["ROLLBACK"], linestyle="--", label="roll back at or above")
    axis.plot([], [], color=VERDICT_COLOURS["PROMOTE"], linestyle=":", label="promote at or below")
    axis.set_ylabel("log-likelihood ratio", fontsize=8)
    axis.set_title(f"The judge's evidence on {metric}, per stage (star: that metric's decision)", fontsize=10)
    axis.legend(**LEGEND)


def _built_in_rates(axis: Any, summary: dict[str, Any], served: set[str]) -> None:
    """The error rates the demo builds in, as reference lines: what each variant's line should hover around."""
    built: dict[float, list[str]] = {}
    for design in designs(summary["settings"], summary.get("fault_share", 0.5)):
        if design.variant in served:
            built.setdefault(round(100 * design.error_rate, 1), []).append(design.variant)
    for rate, variants in built.items():
        axis.axhline(rate, color="#777777", linestyle=":", linewidth=0.9, zorder=0)
        axis.annotate(
            f"built in: {', '.join(variants)} {rate:g} %",
            (1.0, rate),
            xycoords=("axes fraction", "data"),
            xytext=(-4, 2),
            textcoords="offset points",
            ha="right",
            fontsize=7,
            color="#555555",
        )


def timeline(summary: dict[str, Any]) -> Any:
    """Stages, requests, errors and latency per variant, then the judge's evidence: one time axis, then the batch."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clock, records = clock_of(summary), summary["records"]
    rows = stages(records, clock)
    palette = colours(summary)
    shadows: Spans = {}
    for row in rows:
        if row.stage == "shadow":
            shadows.setdefault(row.rollout, []).append((row.start, row.end))
    metrics = list(
        dict.fromkeys(METRIC_NAMES.get(st["metric"], st["metric"]) for r in records for st in r.get("statistics") or [])
    )
    rollouts = len({r.rollout for r in rows})
    heights = [0.6 + 0.45 * rollouts, 2.2, 2.2, 2.2, *[2.6] * len(metrics), 2.2]
    figure = plt.figure(figsize=(10, sum(heights) + 1.5))
    grid = figure.add_gridspec(len(heights), 1, height_ratios=heights, hspace=0.55)
    strip = figure.add_subplot(grid[0])
    time_axes = [strip] + [figure.add_subplot(grid[i], sharex=strip) for i in range(1, 4 + len(metrics))]
    _stage_strip(strip, [r for r in rows if r.end >= 0], palette)
    points = series(summary["endpoint_metrics"]["seconds"])
    for axis, key, label, title in (
        (time_axes[1], "requests", "requests/s", "Requests each variant served (a shadow serves copies)"),
        (time_axes[2], "errors", "% of its requests", "Errors (Invocation5XXErrors), malformed requests included"),
        (time_axes[3], "latency", "ms", "Model latency p50 (ModelLatency)"),
    ):
        _plot_variants(axis, points, key, palette, shadows)
        axis.set_ylabel(label, fontsize=8)
        missing = summary["endpoint_metrics"].get("error")
        axis.set_title(title + (f" - not read: {missing}"[:120] if missing else ""), fontsize=10)
        axis.legend(**LEGEND)
    _built_in_rates(time_axes[2], summary, set(points["errors"]))
    for axis, metric in zip(time_axes[4:], metrics, strict=True):
        _evidence(axis, metric, rows, summary)
    for axis in time_axes[1:]:
        for row in rows:
            if row.end >= 0:
                axis.axvline(row.start, color="#bbbbbb", linewidth=0.6, zorder=0)
        axis.grid(axis="y", color="#eeeeee")
    end = max([*(float(t) + 1 for t in summary["endpoint_metrics"]["seconds"]), *(r.end for r in rows), 1.0])
    strip.set_xlim(0, end)
    time_axes[-1].set_xlabel("demo seconds (wall seconds since the traffic started)")
    batch = figure.add_subplot(grid[-1])
    scores = summary["batch"].get("scores") or []
    batch.hist(scores, bins=20, color=PALETTE[0])
    batch.set_title(f"Batch transform: {len(scores):,} churn probabilities ({summary['batch']['status']})", fontsize=10)
    batch.set_xlabel("predicted churn probability")
    return figure


def png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


# ---------------------------------------------------------------- monitoring

DRIFT_LINES = 8  # features drawn in colour in the drift panel (the most drifted); the others in thin grey
VIOLATION_ROWS = 40


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


def _most_drifted(runs: list[MonitorRun]) -> list[str]:
    """Features by their largest distance over the runs, largest first (p-values count as their complement)."""
    peak: dict[str, float] = {}
    for run in runs:
        for row in run.drift:
            if row.distance is not None:
                value = 1.0 - row.distance if row.p_value else row.distance
                peak[row.name] = max(peak.get(row.name, 0.0), value)
    return sorted(peak, key=lambda name: (-peak[name], name))


def _drift_panel(axis: Any, runs: list[MonitorRun]) -> None:
    """Each feature's distance per run against its threshold; the hours the alert opened an episode marked."""
    origin = runs[0].at
    hours = [(run.at - origin).total_seconds() / 3600 for run in runs]
    ranked = _most_drifted(runs)
    shown = ranked[:DRIFT_LINES]
    for name in [*ranked[DRIFT_LINES:], *shown]:  # the grey ones underneath; the legend in order of drift
        values = [next((r.distance for r in run.drift if r.name == name), None) for run in runs]
        points = [math.nan if v is None else v for v in values]
        if name in shown:
            colour = PALETTE[shown.index(name) % len(PALETTE)]
            axis.plot(hours, points, color=colour, marker="o", markersize=3, linewidth=1.5, label=name)
        else:
            axis.plot(hours, points, color="#bbbbbb", linewidth=0.8)
    thresholds = sorted({(r.threshold, r.p_value) for run in runs for r in run.drift if r.threshold is not None})
    for value, p_value in thresholds:
        label = f"threshold {value:g}" + (" (p-value: drift below)" if p_value else "")
        axis.axhline(value, color=VERDICT_COLOURS["ROLLBACK"], linestyle="--", linewidth=1, label=label)
    for i, (hour, run) in enumerate(zip(hours, runs, strict=True)):
        if run.decision.get("drifting"):  # this run's share of the axis: half way to each neighbour, an hour at most
            left = (hours[i - 1] + hour) / 2 if i else hour - 0.5
            right = (hour + hours[i + 1]) / 2 if i + 1 < len(hours) else hour + 0.5
            axis.axvspan(max(left, hour - 0.5), min(right, hour + 0.5), color="#fdecea", zorder=0)
        if run.decision.get("alert"):
            axis.axvline(hour, color=VERDICT_COLOURS["ROLLBACK"], linewidth=2, alpha=0.6)
        if run.retrain_started:
            axis.axvline(hour, color="#333333", linestyle=":", linewidth=1.5)
    axis.plot([], [], color=VERDICT_COLOURS["ROLLBACK"], linewidth=2, alpha=0.6, label="alert opened")
    if any(run.retrain_started for run in runs):
        axis.plot([], [], color="#333333", linestyle=":", linewidth=1.5, label="retrain started")
    axis.set_xlabel(f"hours since the first run ({origin:%Y-%m-%d %H:%M} UTC, the cloud's clock)")
    axis.set_ylabel("distance to the baseline", fontsize=8)
    others = f"; {len(ranked) - len(shown)} more in grey" if len(ranked) > len(shown) else ""
    axis.set_title(f"Drift per feature at each monitor run (shaded: alert episode open{others})", fontsize=10)
    axis.grid(axis="y", color="#eeeeee")
    axis.legend(**LEGEND)


def _buckets(feature: dict[str, Any]) -> tuple[list[float], list[float]]:
    """(edges, densities) of a numerical feature's KLL buckets."""
    buckets = feature["numerical_statistics"]["distribution"]["kll"]["buckets"]
    total = sum(float(b["count"]) for b in buckets) or 1.0
    edges = [float(buckets[0]["lower_bound"])] + [float(b["upper_bound"]) for b in buckets]
    densities = [
        float(b["count"]) / total / max(float(b["upper_bound"]) - float(b["lower_bound"]), 1e-12) for b in buckets
    ]
    return edges, densities


def _shares(feature: dict[str, Any]) -> dict[str, float]:
    buckets = feature.get("string_statistics", {}).get("distribution", {}).get("categorical", {}).get("buckets", [])
    total = sum(int(b["count"]) for b in buckets) or 1
    return {str(b["value"]): int(b["count"]) / total for b in buckets}


def _distribution_panel(axis: Any, name: str, baseline: dict[str, Any], run: MonitorRun) -> None:
    """The baseline's distribution of a feature beside the run's: KLL buckets, or category shares."""
    before = next((f for f in baseline["features"] if f["name"] == name), None)
    after = next((f for f in run.statistics.get("features", []) if f["name"] == name), None)
    if before is None or after is None:
        axis.set_axis_off()
        return
    if "numerical_statistics" in before and "numerical_statistics" in after:
        edges, densities = _buckets(before)
        axis.stairs(densities, edges, color=PALETTE[0], fill=True, alpha=0.45, label="baseline")
        edges, densities = _buckets(after)
        axis.stairs(densities, edges, color=PALETTE[1], linewidth=2, label=f"run of {run.at:%H:%M}")
        axis.set_ylabel("density (KLL buckets)", fontsize=8)
    else:
        first, second = _shares(before), _shares(after)
        values = sorted(set(first) | set(second), key=lambda v: (-first.get(v, 0.0), v))[:20]
        positions = range(len(values))
        axis.bar([p - 0.2 for p in positions], [first.get(v, 0.0) for v in values], 0.4, label="baseline")
        axis.bar(
            [p + 0.2 for p in positions], [second.get(v, 0.0) for v in values], 0.4, label=f"run of {run.at:%H:%M}"
        )
        axis.set_xticks(list(positions), values, fontsize=8, rotation=30)
        axis.set_ylabel("share of values", fontsize=8)
    distance = next((r.distance for r in run.drift if r.name == name), None)
    shown = "" if distance is None else f", distance {distance:.3f}"
    axis.set_title(f"{name}: baseline vs the run where it drifted most{shown}", fontsize=10)
    axis.legend(**LEGEND)


def monitoring_figure(baseline: dict[str, Any], runs: list[MonitorRun]) -> Any:
    """Drift per feature over the runs, then the most drifted feature's distribution, baseline vs that run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (drift, distribution) = plt.subplots(2, 1, figsize=(10, 6.5), height_ratios=[3, 2.2])
    figure.subplots_adjust(hspace=0.55)
    _drift_panel(drift, runs)
    ranked = _most_drifted(runs)
    if ranked:
        name = ranked[0]

        def distance(run: MonitorRun) -> float:
            row = next((r for r in run.drift if r.name == name), None)
            if row is None or row.distance is None:
                return -1.0
            return 1.0 - row.distance if row.p_value else row.distance

        _distribution_panel(distribution, name, baseline, max(runs, key=distance))
    else:
        distribution.set_axis_off()
    return figure


def _violations_table(runs: list[MonitorRun]) -> str:
    rows = [(run.at, v) for run in reversed(runs) for v in run.violations]
    header = _cells("run", "feature", "check", "what Model Monitor says", header=True)
    body = "".join(
        _cells(
            f"{at:%Y-%m-%d %H:%M}",
            str(v.get("feature_name", "")),
            str(v.get("constraint_check_type", "")),
            str(v.get("description", "")),
        )
        for at, v in rows[:VIOLATION_ROWS]
    )
    more = (
        f"<p>{len(rows) - VIOLATION_ROWS:,} older violations in the reports.</p>" if len(rows) > VIOLATION_ROWS else ""
    )
    return f"<table>{header}{body}</table>{more}" if rows else "<p>No Model Monitor violations.</p>"


def monitoring_section(
    baseline: dict[str, Any] | None, reports: list[dict[str, Any]], constraints: dict[str, Any] | None = None
) -> str:
    """The report's Monitoring section: the drift figure and the violations, or "no monitor runs yet"."""
    if baseline is None or not reports:
        return "<h2>Monitoring</h2>\n<p>No monitor runs yet.</p>"
    import matplotlib.pyplot as plt

    runs = monitor_runs(baseline, reports, constraints)
    figure = monitoring_figure(baseline, runs)
    image = base64.b64encode(png(figure)).decode()
    plt.close(figure)
    alerts = [run.at for run in runs if run.decision.get("alert")]
    opened = ", ".join(f"{at:%Y-%m-%d %H:%M}" for at in alerts) if alerts else "never"
    retrains = [run.at for run in runs if run.retrain_started]
    started = ", ".join(f"{at:%Y-%m-%d %H:%M}" for at in retrains) if retrains else "none"
    violations = sum(len(run.violations) for run in runs)
    return f"""<h2>Monitoring</h2>
<p>{len(runs):,} monitor runs of the endpoint's captured requests against the champion's baseline
({violations:,} Model Monitor violations). Shepherd's alert opened an episode: {html.escape(opened)}; retrains
the monitor started: {html.escape(started)}.
Distances are Model Monitor's (the largest gap between the two distributions), against its thresholds;
the alert is Shepherd's own test, held to a stated false-alarm rate (docs/MONITORING.md).</p>
<img alt="Drift distance per feature at each monitor run against its threshold; the most drifted feature's
distribution, baseline vs current" src="data:image/png;base64,{image}">
<h3>Violations, newest first</h3>
{_violations_table(runs)}"""


# ---------------------------------------------------------------- words and numbers


def _seconds(value: float) -> str:
    return f"{value:,.1f} s" + (" (before the traffic)" if value < 0 else "")


def _percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f} %" if whole else "-"


def outcome_lines(summary: dict[str, Any]) -> list[tuple[str, str]]:
    """What a person wants first: each rollout's outcome, the batch, the traffic, as (what, words) pairs."""
    lines = []
    for r in summary["rollouts"]:
        path = [{"ab": "A/B"}.get(stage, stage) for stage in r.get("stages") or []]
        words = r["outcome"].replace("_", " ")
        if path:
            words += f" via {' → '.join(path)}" if r["outcome"] == "promoted" else f" in {path[-1]}"
        if r.get("reason"):
            words += f": {str(r['reason']).rstrip('.')}"
        lines.append((f"v{r['version']}", words))
    batch = summary["batch"]
    records = batch.get("records")
    batch_words = f"{batch.get('status')}, {records:,} records" if isinstance(records, int) else batch.get("status")
    lines.append(("batch", str(batch_words) + (f" → {batch['output']}" if batch.get("output") else "")))
    t = summary["traffic"]
    errors = t.get("model_errors") or {}
    by_variant = ", ".join(f"{v} {n:,}" for v, n in sorted(errors.items()))
    lines.append(
        (
            "requests",
            f"{t['sent']:,} sent, {t.get('answered', 0):,} answered, {sum(errors.values()):,} model errors"
            + (f" ({by_variant})" if by_variant else "")
            + f"; {t.get('malformed_sent', 0):,} sent malformed on purpose; "
            f"{t['failed']:,} failed because of a rollout",
        )
    )
    if "wall_seconds" in summary:
        lines.append(("wall time", _seconds(summary["wall_seconds"])))
    return lines


def summary_table(summary: dict[str, Any], out: Path) -> Table:
    """The summary `shepherd demo` prints at the end: aligned lines, then where the files are."""
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for what, words in outcome_lines(summary):
        table.add_row(what, words)
    table.add_row("report", str(out / "report.html"))
    table.add_row("records", f"{out / 'records.csv'}, {out / 'summary.json'}")
    return table


def _cells(*values: str, header: bool = False) -> str:
    tag = "th" if header else "td"
    return "<tr>" + "".join(f"<{tag}>{html.escape(v)}</{tag}>" for v in values) + "</tr>"


def _design_table(summary: dict[str, Any]) -> str:
    settings = summary["settings"]
    observed = observed_error_rates(summary["endpoint_metrics"])
    feedback = summary["traffic"].get("feedback") or {}
    labelled, wrong = feedback.get("labelled", {}), feedback.get("wrong", {})
    rows = [
        _cells(
            "variant",
            "role",
            "error rate built in",
            "error rate seen",
            "wrong predictions built in",
            "wrong predictions seen",
            "its rollout must end",
            header=True,
        )
    ]
    for d in designs(settings, summary.get("fault_share", 0.5)):
        errors, requests = observed.get(d.variant, (0, 0))
        seen_errors = f"{_percent(errors, requests)} of {requests:,}" if requests else "did not serve"
        n = labelled.get(d.variant, 0)
        seen_wrong = f"{_percent(wrong.get(d.variant, 0), n)} of {n:,}" if n else "no labelled answers"
        built_wrong = f"{100 * d.wrong:.1f} %" if d.wrong is not None else "-"
        rows.append(
            _cells(d.variant, d.role, f"{100 * d.error_rate:.1f} %", seen_errors, built_wrong, seen_wrong, d.expected)
        )
    return "<table>" + "".join(rows) + "</table>"


def _stage_table(rows: list[Stage], time_scale: float) -> str:
    header = _cells("rollout", "stage", "start", "end", "duration", "judge calls", "verdict", "why", header=True)
    body = "".join(
        _cells(
            r.rollout,
            r.stage,
            _seconds(r.start),
            _seconds(r.end),
            f"{_seconds(r.duration)} ({r.duration * time_scale / 60:,.0f} virtual min)",
            f"{r.judge_calls:,}",
            r.verdict,
            r.reason,
        )
        for r in rows
    )
    return f"<table>{header}{body}</table>"


def _monitoring(summary: dict[str, Any]) -> str:
    """summary["monitoring"]: {"baseline": statistics.json, "constraints": constraints.json, "reports": [...]}."""
    documents = summary.get("monitoring") or {}
    return monitoring_section(documents.get("baseline"), documents.get("reports") or [], documents.get("constraints"))


def report(summary: dict[str, Any], timeline_png: bytes) -> str:
    """report.html: outcomes, what the demo is built to show, the figure, the stages, the judge's settings."""
    settings, clock = summary["settings"], clock_of(summary)
    rows = stages(summary["records"], clock)
    glance = "".join(_cells(what, words) for what, words in outcome_lines(summary))
    image = base64.b64encode(timeline_png).decode()
    calls = sum(r.judge_calls for r in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Shepherd demo report</title>
<style>body{{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse;width:100%;font-size:13px;margin-bottom:1em}}
td,th{{border-bottom:1px solid #ddd;padding:4px;text-align:left;vertical-align:top}}
img{{max-width:100%}}</style></head><body>
<h1>Shepherd demo</h1>
<table>{glance}</table>
<h2>What the demo is built to show</h2>
<p>Each variant's rates as the demo builds them (malformed requests fail on every variant; the misclassification
rates are bench/demo_odds.py's measurements of the models the demo trains) next to what this run saw: errors from
the endpoint's metrics, shadow included; wrong predictions from the answers whose true outcome was uploaded
(a shadow's answers never reach the client). The judge must catch an error rate
{1 + settings["delta"]:g}x the champion's and a candidate wrong {1 + settings["quality_delta"]:g}x as often.</p>
{_design_table(summary)}
<p>{html.escape(odds(settings))}</p>
<h2>Timeline</h2>
<p>Every panel shares one time axis: demo seconds, wall seconds since the traffic started (one virtual minute
each at time scale {clock["time_scale"]:g}x). Grey lines mark stage starts.</p>
<img alt="Stages, requests, errors and latency per variant, the judge's evidence, the batch result"
src="data:image/png;base64,{image}">
<h2>Stages</h2>
<p>{len(rows):,} stages, {calls:,} judge calls; every record, CONTINUE verdicts and the evidence of each call
included: <a href="records.csv">records.csv</a> ({len(summary["records"]):,} rows), and
<a href="summary.json">summary.json</a>.</p>
{_stage_table(rows, clock["time_scale"])}
{_monitoring(summary)}
<h2>What the judge was asked to do</h2>
<p>Error rate judged with a sequential probability ratio test with anytime boundaries: alpha =
{settings["alpha"]:g} a stage, split between its two metrics (chance of rolling back a candidate as good as the
champion), beta = {settings["beta"]} (chance of promoting one whose error rate is {1 + settings["delta"]:g}x the
champion's), at least {settings["min_samples"]:,} requests per variant before a promotion.
Traffic {settings["rate"]:g} requests/s aimed at (the client reaches what the endpoint's latency allows) with
{100 * settings["malformed"]:g} % malformed requests (the errors every variant shares), time scale
{settings["time_scale"]:g}x (one judge call per virtual minute).
Decisions this fast need a large effect (the faulty candidate fails half of its requests) and enough traffic:
with a subtle regression the same judge would, honestly, take longer.</p>
<p>Prediction quality judged too: the traffic sends each request with an InferenceId and uploads the true outcome
of {100 * settings["feedback_share"]:g} % of the answers under <code>feedback/churn/</code>; the judge joins it
with the endpoint's data capture. In shadow it compares the labelled requests both variants answered (only the
pairs where exactly one of them was wrong carry evidence), in A/B each variant's labelled answers; delta =
{settings["quality_delta"]:g}, same alpha, beta and minimum samples.</p>
</body></html>
"""


def write(summary: dict[str, Any], out: Path) -> None:
    """timeline.png, report.html and records.csv into `out`, beside summary.json."""
    import matplotlib.pyplot as plt

    figure = timeline(summary)
    image = png(figure)
    plt.close(figure)
    (out / "timeline.png").write_bytes(image)
    (out / "records.csv").write_text(records_csv(summary["records"], clock_of(summary)))
    (out / "report.html").write_text(report(summary, image))
