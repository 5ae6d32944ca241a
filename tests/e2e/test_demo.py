"""`shepherd demo --quick` end to end: the whole story on the local cloud, checked from its summary.json."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def test_the_quick_demo_promotes_one_candidate_rolls_back_one_and_scores_a_batch(tmp_path):
    # Given a fresh output directory, when the quick demo runs as a user runs it (its own process)
    result = subprocess.run(
        [str(Path(sys.executable).parent / "shepherd"), "demo", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-3000:])
    summary = json.loads((tmp_path / "summary.json").read_text())
    # Then one candidate went through shadow, A/B and full
    assert [p["stages"] for p in summary["promotions"]] == [["shadow", "ab", "full"]]
    # and the faulty one was rolled back, in shadow, before any client saw its errors
    assert [(r["version"], r["stage"]) for r in summary["rollbacks"]] == [(3, "shadow")]
    # and the batch file was scored
    assert summary["batch"]["status"] == "Completed"
    assert summary["batch"]["records"] > 0
    # and no request failed because of a rollout (only the deliberately malformed ones were refused)
    traffic = summary["traffic"]
    assert traffic["failed"] == 0, traffic["failures"]
    assert traffic["answered"] + traffic["malformed_refused"] == traffic["sent"]
    assert "v3" not in traffic["by_variant"]
    report = (tmp_path / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2
    print(f"demo wall time: {summary['wall_seconds']} s")
