"""The demo's report for people: report.html, timeline.png, records.csv and the summary printed at the end.

Built from summary.json alone (localcloud.demo_summary reads it), so a recorded run rebuilds (and tests) it.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from rich.table import Table

from localcloud.demo_figures import monitoring_figure, png, timeline
from localcloud.demo_summary import (
    MonitorRun,
    StageRow,
    clock_of,
    cost_rows,
    designs,
    monitor_runs,
    observed_error_rates,
    odds,
    records_csv,
    stage_rows,
)

VIOLATION_ROWS = 40


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
        words += _cost_words(r)
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


def _usd(value: Any) -> str:
    return f"${value:,.2f}" if isinstance(value, int | float) else "USD unknown"


def _cost_words(rollout: dict[str, Any]) -> str:
    """'; 0.42 instance-hours, about $0.05, 1,234 live requests' ('' for a summary without the cost meter)."""
    metered = rollout.get("cost")
    if not isinstance(metered, dict):
        return ""
    return (
        f"; {float(metered.get('instance_hours') or 0):.2f} added instance-hours, about {_usd(metered.get('usd'))}, "
        f"{int(rollout.get('live_requests') or 0):,} live requests"
    )


def _cost_table(summary: dict[str, Any]) -> str:
    rows = cost_rows(summary)
    if not rows:
        return "<p>No rollout has ended with a cost recorded.</p>"
    header = _cells("rollout", "stage", "minutes", "added instance-hours", "USD", "live requests", header=True)
    body = "".join(
        _cells(rollout, stage, f"{minutes:,.1f}", f"{hours:.3f}", _usd(usd), f"{live:,}")
        for rollout, stage, minutes, hours, usd, live in rows
    )
    return f"<table>{header}{body}</table>"


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


def _stage_table(rows: list[StageRow], time_scale: float) -> str:
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
    rows = stage_rows(summary["records"], clock)
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
<h2>What the rollouts cost</h2>
<p>Each rollout's record carries the cost meter's estimate (docs/ROLLOUTS.md, "What a rollout costs"): the
instances a stage adds beside the champion's fleet for as long as it lasts, in virtual time, at on-demand list
prices, Step Functions and Lambda included; live requests are those the candidate answered, shadow copies
included.</p>
{_cost_table(summary)}
{_monitoring(summary)}
<h2>What the judge was asked to do</h2>
<p>Error rate judged with a sequential probability ratio test with anytime boundaries: alpha =
{settings["alpha"]:g} for the whole rollout (chance of rolling back a candidate as good as the champion at any
stage), beta = {settings["beta"]} for the whole rollout (chance that one whose error rate is
{1 + settings["delta"]:g}x the champion's reaches full), spent across the stages and split between the two metrics
in each, at least {settings["min_samples"]:,} requests per variant before a promotion.
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
