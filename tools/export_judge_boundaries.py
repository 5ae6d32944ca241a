"""Precompute the judge's calibrated SPRT boundaries for the default settings (layers/.../judge/boundaries.json).

Calibrating one (alpha, beta, ratio, share) takes ~0.2 s (an exact dynamic programme), and a judge
call may need a dozen shares: a cold Lambda would spend seconds on it. The defaults (beta 0.2, a
doubling, alpha 0.05 split over 1-3 metrics) are computed once here, for every share on the grid:

    .venv/bin/python tools/export_judge_boundaries.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "layers/shepherd/shepherd/judge/boundaries.json"
sys.path.insert(0, str(ROOT / "layers/shepherd"))

from shepherd.judge import sprt  # noqa: E402

SETTINGS = [(0.05 / metrics, 0.2, 2.0) for metrics in (1, 2, 3)] + [(0.01, 0.2, 2.0)]  # 0.01: the demo


def _budgeted() -> list[tuple[float, float, float]]:
    """The default rollout's stages before full (shadow, A/B 10/25/50) with their parts of one budget
    (shepherd.rollout.budget), the floor's share of beta taken, alpha split over 1-3 metrics: as JudgeStage
    computes them. With the replay stage first (the default where the endpoint captures data) and without."""
    from shepherd.judge.engine import FLOOR_SHARE
    from shepherd.rollout import budget

    out = []
    default = ["shadow", "ab", "ab", "ab", "full", "watch"]
    parts = [
        part
        for kinds in (default, ["replay", *default])
        for kind, part in zip(kinds, budget.split(kinds), strict=True)
        if kind in budget.PRE_FULL_KINDS
    ]
    for part in parts:
        for metrics in (1, 2, 3):
            setting = (part.alpha(0.05) / metrics, part.beta(0.2) * (1.0 - FLOOR_SHARE), 2.0)
            if setting not in out:
                out.append(setting)
    return out


SETTINGS += _budgeted()


def main() -> None:
    table: dict[str, list[list[float]]] = {}
    for alpha, beta, ratio in SETTINGS:
        rows = []
        for step in range(1, sprt.SHARE_GRID):
            upper, lower = sprt._calibrate(alpha, beta, ratio, step / sprt.SHARE_GRID)
            rows.append([round(upper, 12), round(lower, 12)])
        table[sprt.table_key(alpha, beta, ratio)] = rows
        print(f"alpha {alpha:.6g} beta {beta} ratio {ratio}: {len(rows)} shares")
    TARGET.write_text(json.dumps({"share_grid": sprt.SHARE_GRID, "boundaries": table}, indent=0) + "\n")
    print(f"wrote {TARGET}")


if __name__ == "__main__":
    main()
