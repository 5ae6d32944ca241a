"""The demo report's Monitoring section: drift per feature over the runs against its threshold, the most drifted
feature's distribution beside its baseline, the violations; "no monitor runs yet" without reports."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from shepherd.monitor.constraints import check, suggest_constraints
from shepherd.monitor.dataset import read_csv
from shepherd.monitor.metrics import feature_metrics
from shepherd.monitor.statistics import profile

from localcloud import demo_figures, demo_report, demo_summary

START = datetime(2026, 12, 1, 0, 5, tzinfo=UTC)
RECORDED = Path(__file__).resolve().parent.parent / "fixtures" / "demo" / "quick_summary.json"


def _table(
    rng: np.random.Generator, rows: int, *, shift: float = 0.0, plans: tuple[str, ...] = ("basic", "plus")
) -> Any:
    lines = ["tenure,plan,charges"] + [
        f"{rng.normal(24 + shift, 6):.2f},{rng.choice(plans)},{rng.normal(70, 10):.2f}" for _ in range(rows)
    ]
    return read_csv("\n".join(lines) + "\n", header=True)


def _reports(
    baseline: dict[str, Any], constraints: dict[str, Any], rng: np.random.Generator, **drift: Any
) -> list[dict[str, Any]]:
    """Six hourly reports; from the fourth on the capture drifts as ``drift`` says, the fifth opens an alert."""
    reports = []
    for hour in range(6):
        statistics = profile(_table(rng, 300, **(drift if hour >= 3 else {})))
        at = START + timedelta(hours=hour)
        decision = {"alert": hour == 4, "drifting": hour >= 4, "reason": "drift in tenure" if hour >= 4 else "no drift"}
        retrain = {"started": hour == 5}
        reports.append(
            {
                "statistics": statistics,
                "constraint_violations": check(statistics, baseline, constraints),
                "alert": {"at": at.isoformat(), "decision": decision, "retrain": retrain, "package": "arn:…/churn/2"},
            }
        )
    return reports


@pytest.fixture(scope="module")
def seeded() -> dict[str, Any]:
    """Given a baseline and six hourly reports in which tenure moves up from the fourth hour (seeded)."""
    rng = np.random.default_rng(8)
    baseline = profile(_table(rng, 2000))
    constraints = suggest_constraints(baseline)
    return {"baseline": baseline, "constraints": constraints, "reports": _reports(baseline, constraints, rng, shift=10)}


@pytest.fixture(scope="module")
def figure(seeded: dict[str, Any]) -> Iterator[Any]:
    import matplotlib.pyplot as plt

    runs = demo_summary.monitor_runs(seeded["baseline"], seeded["reports"], seeded["constraints"])
    drawn = demo_figures.monitoring_figure(seeded["baseline"], runs)
    yield drawn
    plt.close(drawn)


def test_each_feature_s_drift_is_drawn_per_run_as_the_monitor_publishes_it(seeded: dict[str, Any], figure: Any) -> None:
    drift_panel = figure.axes[0]
    lines = {line.get_label(): line for line in drift_panel.get_lines()}

    expected = [
        feature_metrics(r["statistics"], seeded["baseline"], seeded["constraints"])["feature_baseline_drift_tenure"]
        for r in seeded["reports"]
    ]
    assert list(lines["tenure"].get_ydata()) == pytest.approx(expected)
    assert list(lines["tenure"].get_xdata()) == [0, 1, 2, 3, 4, 5]  # hours since the first run
    assert max(expected[:3]) < 0.1 < min(expected[3:])  # the seeded shift crosses the threshold
    assert list(lines["threshold 0.1"].get_ydata()) == [0.1, 0.1]
    assert "retrain started" in lines
    dotted = [list(line.get_xdata()) for line in drift_panel.get_lines() if line.get_linestyle() == ":"]
    assert [5, 5] in dotted  # the hour the monitor started a retrain


def test_the_most_drifted_feature_is_shown_beside_its_baseline_from_the_kll_buckets(
    seeded: dict[str, Any], figure: Any
) -> None:
    distribution = figure.axes[1]

    assert distribution.get_title().startswith("tenure: baseline vs the run where it drifted most")
    baseline, current = distribution.patches[:2]  # stairs: one patch per distribution
    assert baseline.get_label() == "baseline"
    assert re.fullmatch(r"run of 0[3-5]:05", current.get_label())  # one of the drifted hours
    buckets = next(f for f in seeded["baseline"]["features"] if f["name"] == "tenure")["numerical_statistics"]
    lower = buckets["distribution"]["kll"]["buckets"][0]["lower_bound"]
    assert baseline.get_path().vertices[:, 0].min() == pytest.approx(lower)


def test_a_categorical_drift_is_drawn_as_shares_of_each_value() -> None:
    import matplotlib.pyplot as plt

    rng = np.random.default_rng(3)
    baseline = profile(_table(rng, 2000))
    constraints = suggest_constraints(baseline)
    reports = _reports(baseline, constraints, rng, plans=("gold", "plus"))
    drawn = demo_figures.monitoring_figure(baseline, demo_summary.monitor_runs(baseline, reports, constraints))
    try:
        distribution = drawn.axes[1]
        assert distribution.get_title().startswith("plan:")
        assert {t.get_text() for t in distribution.get_xticklabels()} == {"basic", "plus", "gold"}
    finally:
        plt.close(drawn)


def test_the_section_embeds_the_plot_and_lists_the_violations_newest_first(seeded: dict[str, Any]) -> None:
    section = demo_report.monitoring_section(seeded["baseline"], seeded["reports"], seeded["constraints"])

    image = re.search(r'src="data:image/png;base64,([^"]+)"', section)
    assert image is not None
    assert base64.b64decode(image.group(1)).startswith(b"\x89PNG")
    assert "6 monitor runs" in section
    assert "alert opened an episode: 2026-12-01 04:05; retrains\nthe monitor started: 2026-12-01 05:05" in section
    rows = re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>([^<]+)</td>", section)
    assert ("2026-12-01 05:05", "tenure", "baseline_drift_check") in rows
    assert [r[0] for r in rows] == sorted((r[0] for r in rows), reverse=True)


def test_without_monitor_documents_the_report_says_no_runs_yet() -> None:
    summary = json.loads(RECORDED.read_text())

    page = demo_report.report(summary, b"png")

    assert "<h2>Monitoring</h2>\n<p>No monitor runs yet.</p>" in page
    assert page.count("data:image/png") == 1  # the timeline only


def test_the_report_renders_the_section_from_the_summary_s_monitoring_documents(seeded: dict[str, Any]) -> None:
    summary = json.loads(RECORDED.read_text()) | {"monitoring": seeded}

    page = demo_report.report(summary, b"png")

    assert "No monitor runs yet" not in page
    assert page.count("data:image/png") == 2
    assert "baseline_drift_check" in page


def test_reports_read_back_by_file_name_draw_the_same(seeded: dict[str, Any]) -> None:
    as_read = [{f"{name}.json": document for name, document in r.items()} for r in seeded["reports"]]  # MonitorReports

    runs = demo_summary.monitor_runs(seeded["baseline"], as_read, seeded["constraints"])

    assert runs == demo_summary.monitor_runs(seeded["baseline"], seeded["reports"], seeded["constraints"])
