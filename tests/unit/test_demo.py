"""The demo's summary lists every rollout however it ended, its settings are the ones bench/demo_odds.py judges,
and its report (built from a recorded quick run, tests/fixtures/demo/) shows every variant on one time axis."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from shepherd.config import ModelConfig

from localcloud import demo_figures, demo_report, demo_summary
from localcloud.demo import (
    DRIFT_FEATURE,
    DRIFT_SHIFT,
    Settings,
    _rollout_outcome,
    drifted_rows,
    monitor_line,
    rollout_config,
    sys_path_example,
)

PACKAGE = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/2"


def _entries(*events: dict[str, object]) -> list[dict[str, object]]:
    return [{"package": PACKAGE, **event} for event in events]


def test_an_inconclusive_rollout_is_listed_with_its_reason() -> None:
    entries = _entries(
        {"event": "started"},
        {"event": "stage-entered", "stage": "shadow"},
        {"event": "verdict", "stage": "shadow", "verdict": "PROMOTE", "explanation": "passed"},
        {"event": "stage-entered", "stage": "full"},
        {"event": "verdict", "stage": "full", "verdict": "CONTINUE", "explanation": "not yet"},
        {"event": "verdict", "stage": "full", "verdict": "INCONCLUSIVE", "explanation": "No decision in 30 minutes"},
        {"event": "rolling-back", "step": "weights"},
        {"event": "inconclusive", "reason": "undecided"},
    )
    assert _rollout_outcome(PACKAGE, 2, entries) == {
        "model_package": PACKAGE,
        "version": 2,
        "outcome": "inconclusive",
        "stages": ["shadow", "full"],
        "reason": "No decision in 30 minutes",
        "cost": {
            "instance_hours": 0.0,
            "usd": None,
            "unknown": ["the rollout's records carry no run or time to measure its stages by"],
        },
        "live_requests": 0,
    }


def _metered(package: str, event: str, minutes: int, live: int) -> list[dict[str, Any]]:
    """A rollout's records with times, its shadow on 2 ml.m5.large for ``minutes``, ended by ``event``."""
    fleet = [{"role": "candidate", "instance_type": "ml.m5.large", "instance_count": 2}]
    statistics = [{"metric": "error_rate", "candidate_samples": live}]
    return [
        {"package": package, "run": "r", "event": "started", "at": "2026-12-07T12:00:00+00:00"},
        {
            "package": package,
            "run": "r",
            "event": "stage-entered",
            "stage": "shadow",
            "stage_index": 0,
            "instances": fleet,
            "at": "2026-12-07T12:00:00+00:00",
        },
        {
            "package": package,
            "run": "r",
            "event": "verdict",
            "stage": "shadow",
            "stage_index": 0,
            "verdict": "ROLLBACK",
            "statistics": statistics,
            "at": f"2026-12-07T12:{minutes - 1:02d}:00+00:00",
        },
        {"package": package, "run": "r", "event": event, "at": f"2026-12-07T12:{minutes:02d}:00+00:00"},
    ]


def test_a_rollout_in_the_summary_says_what_it_cost_and_its_live_requests() -> None:
    # Given a rollout rolled back after 30 minutes of shadow on 2 instances, whose ending record has no cost
    entries = _metered(PACKAGE, "rolled-back", 30, live=900)

    rollout = _rollout_outcome(PACKAGE, 2, entries)

    # Then its cost is measured from its records as the cost meter does, with its live requests
    assert rollout["cost"]["instance_hours"] == 1.0
    assert rollout["cost"]["usd"] > 0.1
    assert rollout["live_requests"] == 900


def test_a_rollout_s_recorded_cost_is_the_one_in_the_summary() -> None:
    recorded = {"instance_hours": 3.25, "usd": 0.5, "stages": [], "region": "us-east-1", "prices_as_of": "x"}
    entries = [*_metered(PACKAGE, "verdict", 30, live=1)[:-1]]
    entries.append(
        {
            "package": PACKAGE,
            "run": "r",
            "event": "promoted",
            "cost": recorded,
            "live_requests": 7,
            "at": "2026-12-07T13:00:00+00:00",
        }
    )

    rollout = _rollout_outcome(PACKAGE, 2, entries)

    assert (rollout["cost"], rollout["live_requests"]) == ({"instance_hours": 3.25, "usd": 0.5}, 7)


def test_the_report_shows_each_rollout_s_cost_per_stage() -> None:
    from shepherd import cost as prices
    from shepherd.rollout import cost

    entries = _metered(PACKAGE, "rolled-back", 30, live=900)
    ended = cost.summary(
        entries, run="r", ended_at=datetime(2026, 12, 7, 12, 30, tzinfo=UTC), prices=prices.prices("us-east-1")
    )
    entries[-1] |= ended
    summary = {"records": entries, "rollouts": [_rollout_outcome(PACKAGE, 2, entries)]}

    rows = demo_summary.cost_rows(summary)
    words = dict(demo_report.outcome_lines(summary | {"batch": {"status": "Missing"}, "traffic": TRAFFIC}))

    assert [(r[0], r[1], r[3], r[5]) for r in rows] == [("v2", "shadow", 1.0, 900)]
    assert "1.00 added instance-hours, about $0.12, 900 live requests" in words["v2"]  # 1 h x $0.115


TRAFFIC = {"sent": 0, "failed": 0, "model_errors": {}}


SHADOW = {"event": "stage-entered", "stage": "shadow"}


@pytest.mark.parametrize(
    ("events", "outcome"),
    [
        ([{"event": "started"}, {"event": "deploying", "stage": "first"}, {"event": "promoted"}], "deployed"),
        ([{"event": "started"}, SHADOW, {"event": "promoted"}], "promoted"),
        (
            [{"event": "started"}, SHADOW, {"event": "rolled-back"}],
            "rolled_back",
        ),
        ([{"event": "started"}, {"event": "rollback-failed", "problems": ["x"]}], "rollback_failed"),
        ([{"event": "started"}, {"event": "ended", "error": "States.Timeout"}], "failed"),
        ([{"event": "started"}, SHADOW], "running"),
    ],
)
def test_every_ending_has_an_outcome(events: list[dict[str, object]], outcome: str) -> None:
    assert _rollout_outcome(PACKAGE, 2, _entries(*events))["outcome"] == outcome


def test_a_failed_rollout_without_verdicts_carries_its_error() -> None:
    entries = _entries({"event": "started"}, {"event": "ended", "error": "States.Timeout"})
    assert _rollout_outcome(PACKAGE, 2, entries)["reason"] == "States.Timeout"


@pytest.mark.parametrize("quick", [True, False])
def test_the_demos_rollout_settings_are_a_valid_config(quick: bool) -> None:
    rollout = rollout_config(Settings.for_mode(quick))
    config = ModelConfig.model_validate(
        {"framework": "sklearn", "entry_point": "train.py", "rollout": rollout}, strict=False
    )
    assert config.rollout.judge.error_rate.anytime
    assert config.rollout.full.max_duration_minutes == Settings.for_mode(quick).stage_max_minutes


def test_the_report_quotes_the_simulated_odds_of_exactly_these_settings() -> None:
    from dataclasses import asdict

    odds = demo_summary.odds
    quick = asdict(Settings.for_mode(True))
    assert "demos failed" in odds(quick)  # bench/results/demo_odds.json simulated these very settings
    assert "8 judged tests" in odds(quick)
    # the rates are the rollout's (shepherd/rollout/budget.py): alpha whole over the stages, not alpha per stage
    alpha, beta = quick["alpha"], quick["beta"]
    assert f"rolled back by chance in at most {alpha:.2%} of rollouts" in odds(quick)
    assert f"reaches full in at most {beta:.0%}" in odds(quick)
    assert f"shadow taking {alpha / 2:.2g}" in odds(quick)
    changed = quick | {"alpha": 0.05}
    assert "demos failed" not in odds(changed)  # results of other settings are not quoted


# ---------------------------------------------------------------- the report, from a recorded quick run

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "demo" / "quick_summary.json"


@pytest.fixture(scope="module")
def summary() -> dict[str, Any]:
    return json.loads(RECORDED.read_text())


@pytest.fixture(scope="module")
def figure(summary: dict[str, Any]) -> Iterator[Any]:
    import matplotlib.pyplot as plt

    drawn = demo_figures.timeline(summary)
    yield drawn
    plt.close(drawn)


def _panel(figure: Any, title_start: str) -> Any:
    return next(axis for axis in figure.axes if axis.get_title().startswith(title_start))


def _drawn_colours(axis: Any) -> set[str]:
    """The colours of the lines that carry data (legend-only handles have none)."""
    from matplotlib.colors import to_hex

    return {to_hex(line.get_color()) for line in axis.lines if any(not math.isnan(y) for y in line.get_ydata())}


@pytest.mark.parametrize("panel", ["Requests", "Errors", "Model latency"])
def test_every_variant_that_served_has_a_line_shadow_included(summary: dict[str, Any], figure: Any, panel: str) -> None:
    from matplotlib.colors import to_hex

    # Given a run where v3 served only as a shadow (the client never saw it)
    served = {v for bucket in summary["endpoint_metrics"]["seconds"].values() for v in bucket["requests"]}
    assert "v3" in served
    assert "v3" not in summary["traffic"]["by_variant"]
    # Then the panel has a line in each served variant's own colour
    palette = demo_figures.colours(summary)
    assert _drawn_colours(_panel(figure, panel)) >= {to_hex(palette[v]) for v in served}


def test_variants_have_distinct_colours_that_are_not_the_verdicts(summary: dict[str, Any]) -> None:
    palette = demo_figures.colours(summary)
    assert len(set(palette.values())) == len(palette) == 3
    assert not set(palette.values()) & {"tab:red", "tab:green"}


def test_a_variant_serving_as_a_shadow_is_drawn_dashed(summary: dict[str, Any], figure: Any) -> None:
    from matplotlib.colors import to_hex

    v3 = to_hex(demo_figures.colours(summary)["v3"])
    lines = [line for line in _panel(figure, "Requests").lines if to_hex(line.get_color()) == v3]
    with_data = [line for line in lines if any(not math.isnan(y) for y in line.get_ydata())]
    assert [line.get_linestyle() for line in with_data] == ["--"]


def test_the_judges_evidence_shares_the_traffics_time_axis(summary: dict[str, Any], figure: Any) -> None:
    # Given the error-rate evidence panel and the requests panel
    evidence, requests = _panel(figure, "The judge's evidence on error rate"), _panel(figure, "Requests")
    # Then they are on one x axis, and the evidence sits at the demo second of each judge call
    assert evidence.get_shared_x_axes().joined(evidence, requests)
    clock = demo_summary.clock_of(summary)
    calls = {
        round(demo_summary.demo_second(r["at"], clock), 6)
        for r in summary["records"]
        if any(st["metric"] == "error_rate" for st in r.get("statistics") or [])
    }
    plotted = {round(float(x), 6) for line in evidence.lines for x in line.get_xdata()}
    assert calls <= plotted


def test_the_shadow_variants_traffic_falls_within_its_shadow_stage(summary: dict[str, Any]) -> None:
    # The endpoint's metrics and the rollout's records come from two clocks' worth of bookkeeping (CloudWatch
    # periods, record keys): mapped to demo seconds, v3's requests must fall inside v3's shadow stage.
    rows = demo_summary.stage_rows(summary["records"], demo_summary.clock_of(summary))
    shadow = next(r for r in rows if r.rollout == "v3" and r.stage == "shadow")
    seconds = [int(t) for t, b in summary["endpoint_metrics"]["seconds"].items() if "v3" in b["requests"]]
    assert seconds
    assert shadow.start - 1 <= min(seconds)
    assert max(seconds) <= shadow.end + 1


def test_boundaries_are_drawn_over_their_own_stage_only(summary: dict[str, Any], figure: Any) -> None:
    rows = demo_summary.stage_rows(summary["records"], demo_summary.clock_of(summary))
    evidence = _panel(figure, "The judge's evidence on error rate")
    segments = [segment for collection in evidence.collections for segment in collection.get_segments()]
    judged = [r for r in rows if r.judge_calls]
    # one rollback and one promote boundary per judged stage, each within its stage's seconds
    assert len(segments) == 2 * len(judged)
    for segment in segments:
        (x0, _), (x1, _) = segment
        assert any(r.start - 1e-6 <= x0 <= x1 <= r.end + 1e-6 for r in judged), (x0, x1)


def test_the_stage_table_collapses_continue_verdicts_into_judge_calls(summary: dict[str, Any]) -> None:
    records = summary["records"]
    rows = demo_summary.stage_rows(records, demo_summary.clock_of(summary))
    assert [(r.rollout, r.stage, r.verdict) for r in rows] == [
        ("v1", "first deployment", "DEPLOYED"),
        ("v2", "shadow", "PROMOTE"),
        ("v2", "A/B 50%", "PROMOTE"),
        ("v2", "full", "PROMOTE"),
        ("v2", "watch", "PROMOTE"),
        ("v3", "shadow", "ROLLBACK"),
    ]
    assert sum(r.judge_calls for r in rows) == sum(r["event"] == "verdict" for r in records)
    assert rows[-1].reason.startswith("The candidate's error rate is higher")
    assert all(a.end <= b.start for a, b in itertools.pairwise(rows))


def _record(at_second: float, **entry: Any) -> dict[str, Any]:
    return {"package": PACKAGE, "at": f"2026-01-01T00:{int(at_second):02d}:00+00:00", **entry}


def test_a_stage_still_judging_is_running_and_times_follow_the_time_scale() -> None:
    # Given a stage entered one virtual minute after the traffic started, judged twice, not decided yet
    clock = {"origin": "2026-01-01T00:00:00+00:00", "time_scale": 60.0}
    records = [
        _record(1, event="stage-entered", stage="ab", weight=25.0),
        _record(2, event="verdict", stage="ab", weight=25.0, verdict="CONTINUE"),
        _record(3, event="verdict", stage="ab", weight=25.0, verdict="CONTINUE"),
    ]
    # Then it is one row, running, from demo second 1 to 3
    assert demo_summary.stage_rows(records, clock) == [
        demo_summary.StageRow("v2", "A/B 25%", 1.0, 3.0, judge_calls=2, verdict="running", reason="")
    ]


def test_a_rollout_that_failed_before_its_first_stage_is_a_row_with_its_error() -> None:
    clock = {"origin": "2026-01-01T00:00:00+00:00", "time_scale": 60.0}
    records = [_record(1, event="started"), _record(2, event="ended", error="States.Timeout")]
    [row] = demo_summary.stage_rows(records, clock)
    assert (row.stage, row.verdict, row.reason) == ("starting", "ENDED", "States.Timeout")


def test_the_full_record_keeps_every_row_with_its_demo_second(summary: dict[str, Any]) -> None:
    text = demo_summary.records_csv(summary["records"], demo_summary.clock_of(summary))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert len(rows) == len(summary["records"])
    assert sum(r["verdict"] == "CONTINUE" for r in rows) > 0
    seconds = [float(r["demo_s"]) for r in rows]
    assert seconds == sorted(seconds)
    assert "error_rate" in next(r["evidence"] for r in rows if r["verdict"] == "ROLLBACK")


def test_the_printed_summary_is_aligned_words_not_a_dict(summary: dict[str, Any]) -> None:
    console = Console(record=True, width=160)
    console.print(demo_report.summary_table(summary, Path("demo-output")))
    text = console.export_text()
    assert "{" not in text
    assert "}" not in text
    assert "1,550 sent" in text  # the recorded run's 1550 requests, with a thousands separator
    assert any(line.startswith("v3") and "rolled back in shadow: The candidate's" in line for line in text.splitlines())
    assert "demo-output/report.html" in text


def test_the_report_states_the_rates_the_demo_is_built_for_and_links_the_full_record(
    summary: dict[str, Any],
) -> None:
    page = demo_report.report(summary, b"png")
    models = json.loads(demo_summary.ODDS.read_text())["models"]
    assert "55.0 %" in page  # v3: the malformed 10 % plus half of the rest
    assert f"{100 * models['v1_wrong']:.1f} %" in page
    assert '<a href="records.csv">' in page
    assert "<td>CONTINUE</td>" not in page
    assert "{'" not in page  # no Python dict shown to people
    assert page.count("<tr>") == len(demo_report.outcome_lines(summary)) + 4 + 7  # glance, designs, stages


def test_a_run_whose_endpoint_metrics_could_not_be_read_still_draws_and_says_why(summary: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    unread = summary | {"endpoint_metrics": {"seconds": {}, "error": "ClientError: the cloud had stopped"}}
    drawn = demo_figures.timeline(unread)
    try:
        assert "not read: ClientError: the cloud had stopped" in _panel(drawn, "Requests").get_title()
    finally:
        plt.close(drawn)


def test_the_report_files_are_written_beside_the_summary(summary: dict[str, Any], tmp_path: Path) -> None:
    demo_report.write(summary, tmp_path)
    assert {p.name for p in tmp_path.iterdir()} == {"timeline.png", "report.html", "records.csv"}
    assert (tmp_path / "timeline.png").read_bytes().startswith(b"\x89PNG")


def test_the_drifted_rows_shift_only_the_drift_feature_and_keep_their_labels() -> None:
    sys_path_example()
    from generate_data import generate  # examples/churn/generate_data.py

    frame = generate(50, seed=3).drop(columns=["target"])
    rows = [(",".join(str(v) for v in row), index % 2) for index, row in enumerate(frame.itertuples(index=False))]
    column = list(frame.columns).index(DRIFT_FEATURE)
    drifted = drifted_rows(rows, column, DRIFT_SHIFT)
    assert [label for _, label in drifted] == [label for _, label in rows]
    for (before, _), (after, _) in zip(rows, drifted, strict=True):
        old, new = before.split(","), after.split(",")
        assert float(new[column]) == pytest.approx(float(old[column]) + DRIFT_SHIFT)
        assert new[:column] + new[column + 1 :] == old[:column] + old[column + 1 :]


@pytest.mark.parametrize(
    ("drifted", "decision", "line"),
    [
        ([], {"alert": False, "drifting": False}, "monitor: no drift"),
        (["x"], {"alert": True, "drifting": True}, "monitor: 1 feature drifted (x), alert opened"),
        (["a", "b"], {"alert": False, "drifting": True}, "monitor: 2 features drifted (a, b), alert episode open"),
        (["a"], {}, "monitor: 1 feature drifted (a)"),
    ],
)
def test_a_monitor_run_is_one_line_of_the_story(drifted: list[str], decision: dict[str, Any], line: str) -> None:
    assert monitor_line(drifted, decision) == line


def test_the_timeline_names_each_rollout_with_what_it_cost(summary: dict[str, Any]) -> None:
    import matplotlib.pyplot as plt

    metered = summary | {
        "rollouts": [
            r | {"cost": {"instance_hours": 1.25, "usd": 0.1438}, "live_requests": 4321} for r in summary["rollouts"]
        ]
    }
    drawn = demo_figures.timeline(metered)
    try:
        labels = [tick.get_text() for tick in _panel(drawn, "Stages").get_yticklabels()]
    finally:
        plt.close(drawn)
    assert any(label.endswith("$0.14, 1.25 inst-h, 4,321 live") for label in labels), labels
