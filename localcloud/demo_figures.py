"""The demo report's figures: the rollout timeline (stages, traffic, the judge's evidence, the batch) and drift."""

from __future__ import annotations

import io
import math
from typing import Any

from localcloud.demo_summary import (
    MonitorRun,
    StageRow,
    clock_of,
    demo_second,
    designs,
    stage_rows,
    variant_of,
)

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


def cost_label(rollout: dict[str, Any]) -> str:
    """A rollout's cost under its name in the stage strip: '$0.35, 1.2 inst-h, 9,000 live' ('' without one)."""
    metered = rollout.get("cost")
    if not isinstance(metered, dict):
        return ""
    usd = metered.get("usd")
    money = f"${usd:,.2f}" if isinstance(usd, int | float) else "$?"
    hours = float(metered.get("instance_hours") or 0)
    return f"{money}, {hours:.2f} inst-h, {int(rollout.get('live_requests') or 0):,} live"


def _stage_strip(axis: Any, rows: list[StageRow], palette: dict[str, str], costs: dict[str, str] | None = None) -> None:
    """Which rollout was in which stage when: one bar per stage, edged in its verdict's colour; under each
    rollout's name, what it cost (``costs`` by variant)."""
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
    names = [f"{v} rollout" + (f"\n{costs[v]}" if costs and costs.get(v) else "") for v in rollouts]
    axis.set_yticks(range(len(rollouts)), names, fontsize=8)
    axis.set_ylim(len(rollouts) - 0.5, -0.5)
    axis.set_title("Stages (edge: green promoted, red rolled back, grey inconclusive), demo seconds", fontsize=10)


def _evidence(axis: Any, metric: str, rows: list[StageRow], summary: dict[str, Any]) -> None:
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
    rows = stage_rows(records, clock)
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
    costs = {f"v{r['version']}": cost_label(r) for r in summary.get("rollouts") or [] if "version" in r}
    _stage_strip(strip, [r for r in rows if r.end >= 0], palette, costs)
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
