"""`shepherd demo --quick` end to end: the whole story on the local cloud, checked from its summary.json."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from localcloud.demo import DRIFT_FEATURE

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


# The demo's stages may each take up to 240 virtual minutes (4 wall minutes) where a loaded machine thins its
# traffic (localcloud/demo.py, bench/demo_odds.py); it takes about 120 s here, up to 20 s of it the monitor's
# drifted traffic (DRIFT_MINUTES, beside the batch). Its own limit, not pytest's 300 s default, decides, with room
# for three times that on a loaded machine; past it the demo's output is shown.
DEMO_SECONDS = 900


@pytest.mark.timeout(DEMO_SECONDS + 120)
def test_the_quick_demo_promotes_one_candidate_rolls_back_one_scores_a_batch_and_sees_drift(tmp_path):
    # Given a fresh output directory, when the quick demo runs as a user runs it (its own process)
    command = [str(Path(sys.executable).parent / "shepherd"), "demo", "--quick", "--out", str(tmp_path)]
    try:
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=DEMO_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the demo ran over {DEMO_SECONDS} s: {str(exc.stdout)[-4000:]} {str(exc.stderr)[-3000:]}")
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-3000:])
    summary = json.loads((tmp_path / "summary.json").read_text())
    # Then one candidate went through shadow, A/B, full and the post-promotion watch, and the faulty one was
    # rolled back in shadow
    outcomes = [(r["version"], r["outcome"], r["stages"]) for r in summary["rollouts"]]
    assert outcomes == [(2, "promoted", ["shadow", "ab", "full", "watch"]), (3, "rolled_back", ["shadow"])]
    assert summary["rollouts"][0]["model_package"].endswith("/2")
    # and each says what it cost and how many requests its candidate answered live (shadow copies included)
    for rollout in summary["rollouts"]:
        assert rollout["cost"]["instance_hours"] > 0, rollout
        assert rollout["cost"]["usd"] > 0, rollout
        assert rollout["live_requests"] > 0, rollout
    # and the batch file was scored
    assert summary["batch"]["status"] == "Completed"
    assert summary["batch"]["records"] > 0
    assert summary["batch"]["output"].startswith("s3://")
    # The whole story ran under IAM enforcement, and the stack's roles were refused nothing (docs/LOCAL_IAM.md)
    assert summary["iam"]["refusals"] == [], summary["iam"]["refusals"][:3]
    # and no request failed because of a rollout; the only model errors are the deliberately malformed requests,
    # and no client ever met the faulty candidate
    traffic = summary["traffic"]
    assert traffic["failed"] == 0, traffic["failures"]
    assert sum(traffic["model_errors"].values()) == traffic["malformed_sent"]
    assert traffic["valid_requests_refused"] == 0
    assert "v3" not in traffic["by_variant"]
    assert "v3" not in traffic["model_errors"]
    # The judge weighed v2's and v1's predictions in A/B from the endpoint's data capture joined with the ground
    # truth the traffic uploaded (how: tests/unit/test_rollout_quality.py, tests/unit/handlers/test_judge_stage.py)
    quality = [
        m
        for r in summary["records"]
        if r["event"] == "verdict" and r["package"].endswith("/2") and r["stage"] == "ab"
        for m in r.get("statistics", [])
        if m["metric"] == "quality"
    ]
    assert any(m["candidate_samples"] > 0 and m["champion_samples"] > 0 for m in quality), quality[-1:]
    assert (tmp_path / "timeline.png").stat().st_size > 10_000
    # The monitor, run by hand on v1's clean traffic and on v2's after a burst of drifted requests, found the
    # drifted feature and opened an alert; the report's Monitoring section draws its runs, each in a folder of its
    # own (the schedule may also run in between: a chart that crossed restarts, so the run after the one that
    # opened the episode names no feature while the episode stays open)
    runs = [report["alert.json"]["decision"] for report in summary["monitoring"]["reports"]]
    assert len(runs) >= 2, runs
    assert not runs[0]["drifting"], runs[0]
    assert any(run["alert"] and DRIFT_FEATURE in run["features"] for run in runs[1:]), runs
    assert runs[-1]["drifting"], runs[-1]
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2  # the timeline and the monitoring figure
    assert "data:image/png;base64," in report.split("<h2>Monitoring</h2>", 1)[1].split("<h2>", 1)[0]
    print(f"demo wall time: {summary['wall_seconds']} s")
    # and the report renders in a real browser, plots included (a screenshot that is not blank)
    _assert_renders(tmp_path / "report.html", tmp_path / "report.png")


def _assert_renders(page: Path, screenshot: Path) -> None:
    from PIL import Image

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={screenshot.parent / 'chromium-profile'}",
            "--window-size=1100,1600",
            f"--screenshot={screenshot}",
            page.as_uri(),
        ],
        capture_output=True,
        timeout=60,
        check=True,
    )
    image = Image.open(screenshot).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    # Text alone is a few greys; the two plots bring their line colours and antialiasing shades.
    assert len(colours) > 200, f"the report rendered with only {len(colours)} colours"
    orange = sum(count for count, (r, g, b) in colours if r > 200 and 100 < g < 170 and b < 80)
    assert orange > 100, "the plots' lines are missing from the rendered report"
