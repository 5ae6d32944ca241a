"""The replay's verdict: the candidate's answers to captured requests against the champion's (pure functions).

Crashes and malformed answers reject without spending alpha (the champion answered those very requests). The
disagreement rate is tested against what the evaluation predicted, widened by the tolerance for the shift between
evaluation data and live traffic; an estimate from n validation rows is tested as the count it is (an exact
conditional test of the two counts). Why and how: shepherd/replay/README.md.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from shepherd.replay.binomial import conditional_upper_tail, upper_bound, upper_tail
from shepherd.replay.records import Captured, Shard
from shepherd.rollout.quality import finite_number, first_value

ROWS, DISAGREEMENT, BAND, PROBLEM = (
    "shepherd:paired-rows",
    "shepherd:paired-disagreement",
    "shepherd:paired-band",
    "shepherd:problem",
)
PROBLEMS = ("classification", "regression")
MAX_EXAMPLES = 20
MAX_EXAMPLE_CHARS = 1000  # a captured request can be large; an example shows its start
BOUND_SHARE = 0.1  # of alpha, for the validation rate's upper bound: it only turns the rate tolerance into odds
DECISION_THRESHOLD = 0.5  # a score in [0, 1] is the label of its side (as the judge's quality Rule)


@dataclass(frozen=True, slots=True)
class Expectation:
    """What the evaluation predicts of the candidate against the champion on live inputs."""

    problem: Literal["classification", "regression"]
    disagreement: float  # classification: the share of records whose labels differ; regression: |diff| > band
    band: float  # regression only (0 for classification)
    source: str  # human words: "validation rows (n=2000)", "config default", ...
    rows: int | None = None  # the validation rows `disagreement` was estimated from; None: a stated bound, exact


def expectation(metadata: Mapping[str, str], *, problem: str | None, default_disagreement: float) -> Expectation:
    """From the candidate package's CustomerMetadataProperties (written by the evaluation): the paired disagreement
    with the champion on the candidate's validation rows. Absent: ``default_disagreement`` (the config's), said so
    in ``source``. The metadata's problem type, when there, wins over ``problem`` (the config's): it is the one the
    rate was measured for. ValueError naming the key when a value is there but unreadable."""
    kind = metadata.get(PROBLEM) or problem
    if kind is not None and kind not in PROBLEMS:
        raise ValueError(f"{PROBLEM}: {kind!r} is neither classification nor regression")
    if DISAGREEMENT not in metadata:
        if kind is None:  # labels of a regressor would all differ: judge only crashes and formats
            return Expectation("classification", 1.0, 0.0, "problem unknown: disagreement not judged")
        if kind == "regression":
            return Expectation("regression", 1.0, 0.0, "regression without a paired band: disagreement not judged")
        _rate("default_disagreement", str(default_disagreement))
        return Expectation("classification", default_disagreement, 0.0, "config default")
    rate = _rate(DISAGREEMENT, metadata[DISAGREEMENT])
    rows = _rows(metadata.get(ROWS))
    if kind is None:
        raise ValueError(f"{DISAGREEMENT} is given without {PROBLEM}, and no problem type is configured")
    band = 0.0
    if kind == "regression":
        if BAND not in metadata:
            raise ValueError(f"{DISAGREEMENT} of a regression is given without {BAND}")
        band = finite_number(metadata[BAND]) or 0.0
        if band <= 0:
            raise ValueError(f"{BAND}: {metadata[BAND]!r} is not a positive number")
    source = f"validation rows (n={rows})" if rows is not None else "evaluation, rows not stated"
    return Expectation(kind, rate, band, source, rows)  # type: ignore[arg-type]  # kind checked against PROBLEMS


def _rate(key: str, text: str) -> float:
    value = finite_number(text)
    if value is None or not 0 <= value <= 1:
        raise ValueError(f"{key}: {text!r} is not a rate in [0, 1]")
    return value


def _rows(text: str | None) -> int | None:
    if text is None:
        return None
    try:
        rows = int(text)
    except ValueError:
        raise ValueError(f"{ROWS}: {text!r} is not a number of rows") from None
    if rows < 1:
        raise ValueError(f"{ROWS}: {text!r} is not a number of rows")
    return rows


@dataclass(frozen=True, slots=True)
class ShardOutcome:
    shard: str
    answers: tuple[str, ...] | None  # the candidate's output lines; None: the shard produced no output (failed)


@dataclass(frozen=True, slots=True)
class ReplayResult:
    verdict: Literal["PASS", "REJECT"]
    records: int  # records replayed
    failed: int  # records in shards that produced no output
    malformed: int  # answers that do not parse like the champion's (a label where a number was, JSON vs CSV...)
    disagreed: int  # answers that disagree (per Expectation)
    reasons: list[str]  # one line each, for the notification
    examples: list[dict[str, str]]  # at most 20: {"event_id", "request", "champion", "candidate" or "error"}
    statistics: dict[str, float]  # p-values, bounds, the alpha spent, throughput ratio...


@dataclass(frozen=True, slots=True)
class DisagreementTest:
    """Whether ``disagreed`` of ``compared`` live answers is significantly above what the evaluation predicted."""

    compared: int
    disagreed: int
    allowed: float  # the expectation x (1 + tolerance), at most 1: the live rate a good candidate may have
    upper: float  # the validation rate's upper confidence bound (the expectation itself when it is stated)
    odds_ratio: float  # the conditional test's bound on odds(live) / odds(validation); 0: the one-sample test
    alpha_bound: float  # spent on the upper bound
    alpha_test: float  # spent on the test
    p_value: float

    @property
    def rejects(self) -> bool:
        return self.p_value <= self.alpha_test


def disagreement_test(
    disagreed: int, compared: int, expected: Expectation, *, alpha: float, tolerance: float
) -> DisagreementTest:
    """Whether ``disagreed`` of ``compared`` is significantly above ``expected.disagreement x (1 + tolerance)``,
    with P(REJECT) <= alpha for every candidate whose live rate is at most its true validation rate x (1 + tolerance).

    Estimated from n validation rows: the exact conditional test of the live count against the validation count
    (Fisher's noncentral hypergeometric, the two counts' odds ratio), whose H0 odds ratio the rate tolerance gives
    at the validation rate's upper bound (BOUND_SHARE of alpha). Stated (the config's default): the one-sided exact
    binomial test against it x (1 + tolerance), with all of alpha. Why: shepherd/replay/README.md."""
    if not 0 < alpha < 1 or tolerance < 0 or not 0 <= disagreed <= compared:
        raise ValueError(f"no disagreement test for alpha={alpha}, tolerance={tolerance}, {disagreed}/{compared}")
    allowed = min(1.0, expected.disagreement * (1 + tolerance))
    if not expected.rows:
        p_value = upper_tail(disagreed, compared, allowed)
        return DisagreementTest(compared, disagreed, allowed, expected.disagreement, 0.0, 0.0, alpha, p_value)
    rows = expected.rows
    hits = min(rows, round(expected.disagreement * rows))
    alpha_bound = alpha * BOUND_SHARE
    upper = upper_bound(hits, rows, alpha_bound)
    if upper * (1 + tolerance) >= 1:  # every live rate is allowed
        return DisagreementTest(compared, disagreed, allowed, upper, 0.0, alpha_bound, alpha - alpha_bound, 1.0)
    # odds(q (1 + t)) / odds(q), rising in q: at the bound it is at least the true one (unless the bound fails)
    odds_ratio = (1 + tolerance) * (1 - upper) / (1 - (1 + tolerance) * upper)
    p_value = conditional_upper_tail(disagreed, compared, hits, rows, odds_ratio)
    return DisagreementTest(compared, disagreed, allowed, upper, odds_ratio, alpha_bound, alpha - alpha_bound, p_value)


def answer_shape(text: str) -> Any:
    """What an answer looks like, as a value equal for answers of the same format: CSV (its number of cells and
    which are numbers) or JSON (its keys and value types, an array by its first item); None: unreadable."""
    text = text.strip()
    if not text:
        return None
    if text[0] in "[{":
        try:
            return ("json", _skeleton(json.loads(text)))
        except ValueError:
            return None
    cells = text.splitlines()[0].split(",")
    return ("csv", tuple(finite_number(cell) is not None for cell in cells))


def _skeleton(value: Any) -> Any:
    if isinstance(value, dict):
        return tuple(sorted((key, _skeleton(item)) for key, item in value.items()))
    if isinstance(value, list):
        return ("array", _skeleton(value[0]) if value else None)
    if isinstance(value, bool) or value is None:
        return type(value).__name__
    if isinstance(value, (int, float)):
        return "number"
    return "string"


def disagree(champion: str, candidate: str, expected: Expectation) -> bool:
    """Whether two answers of the same shape disagree: labels differ (classification: a score in [0, 1] stands for
    its side of 0.5), or numbers differ by more than the band (regression). The first value of each is compared."""
    ours, theirs = first_value(candidate), first_value(champion)
    if ours is None or theirs is None:
        return ours != theirs
    if expected.problem == "regression":
        a, b = finite_number(ours), finite_number(theirs)
        return a is None or b is None or abs(a - b) > expected.band
    return _label(ours) != _label(theirs)


def _label(value: str) -> str | float:
    number = finite_number(value)
    if number is None:
        return value.strip()
    if 0 <= number <= 1:
        return float(number >= DECISION_THRESHOLD)
    return number


@dataclass
class _Tally:
    replayed: int = 0
    failed: int = 0
    malformed: int = 0
    disagreed: int = 0
    compared: int = 0
    incomparable: int = 0
    failures: list[dict[str, str]] = field(default_factory=list)
    misshapen: list[dict[str, str]] = field(default_factory=list)
    differences: list[dict[str, str]] = field(default_factory=list)

    def examples(self) -> list[dict[str, str]]:
        return (self.failures + self.misshapen + self.differences)[:MAX_EXAMPLES]


def _clip(text: str) -> str:
    return text if len(text) <= MAX_EXAMPLE_CHARS else text[:MAX_EXAMPLE_CHARS] + "…"


def _example(record: Captured, **outcome: str) -> dict[str, str]:
    shown = {key: _clip(value) for key, value in outcome.items()}
    return {"event_id": record.event_id, "request": _clip(record.body), "champion": _clip(record.answer), **shown}


def _tally(
    by_id: Mapping[str, Captured], shards: Sequence[Shard], outcomes: Mapping[str, ShardOutcome], expected: Expectation
) -> _Tally:
    tally = _Tally()
    shapes: dict[str, Any] = {}  # answers repeat (labels): each text's shape is worked out once

    def shape_of(text: str) -> Any:
        if text not in shapes:
            shapes[text] = answer_shape(text)
        return shapes[text]

    for shard in shards:
        answers = outcomes[shard.name].answers
        tally.replayed += len(shard.event_ids)
        first = by_id[shard.event_ids[0]]
        if answers is None:
            tally.failed += len(shard.event_ids)
            error = f"{shard.name} ({len(shard.event_ids)} requests, this one among them) produced no output"
            tally.failures.append(_example(first, error=error))
            continue
        if len(answers) != len(shard.event_ids):
            tally.malformed += len(shard.event_ids)
            error = f"{shard.name}: {len(answers)} answer lines for {len(shard.event_ids)} requests"
            tally.misshapen.append(_example(first, error=error))
            continue
        for event_id, answer in zip(shard.event_ids, answers, strict=True):
            record = by_id[event_id]
            shape = shape_of(record.answer)
            if shape is None:  # the champion's own answer is unreadable: nothing to compare with
                tally.incomparable += 1
            elif shape_of(answer) != shape:
                tally.malformed += 1
                tally.misshapen.append(_example(record, candidate=answer))
            else:
                tally.compared += 1
                if disagree(record.answer, answer, expected):
                    tally.disagreed += 1
                    tally.differences.append(_example(record, candidate=answer))
    return tally


def judge(
    records: Sequence[Captured],
    shards: Sequence[Shard],
    outcomes: Sequence[ShardOutcome],
    expectation: Expectation,
    *,
    alpha: float,
    tolerance: float,
    job_failure: str | None = None,
    seconds: float | None = None,
    champion_seconds: float | None = None,
    max_slowdown: float | None = None,
) -> ReplayResult:
    """REJECT when the job failed outright (``job_failure``, e.g. a crash on load), any shard failed (a crash on
    real inputs the champion answered: no alpha spent), any answer is malformed, the disagreement is significantly
    above ``expectation.disagreement x (1 + tolerance)`` at level alpha (:func:`disagreement_test`), or, when both
    timings are given, seconds / champion_seconds > max_slowdown. PASS otherwise.

    ``records`` are those sampled (including any :func:`~shepherd.replay.records.left_out`), ``shards`` the
    transform's input made of them, ``outcomes`` one per shard (none needed when the job failed)."""
    by_id = {record.event_id: record for record in reversed(records)}  # the first record of an id wins
    in_shards = sum(len(shard.event_ids) for shard in shards)
    unknown = [i for shard in shards for i in shard.event_ids if i not in by_id]
    if unknown:
        raise ValueError(f"shards name records not given: {unknown[:3]}")
    statistics: dict[str, float] = {"alpha": alpha, "left_out": float(len(records) - in_shards)}
    if job_failure is not None:
        reason = f"the transform job failed: {job_failure}"
        return ReplayResult("REJECT", in_shards, in_shards, 0, 0, [reason], [], statistics | {"alpha_spent": 0.0})
    named = {outcome.shard: outcome for outcome in outcomes}
    missing = [shard.name for shard in shards if shard.name not in named]
    if missing:
        raise ValueError(f"no outcome for shards {missing[:3]}")
    tally = _tally(by_id, shards, named, expectation)
    reasons = []
    if tally.failed:
        failed_shards = sum(1 for shard in shards if named[shard.name].answers is None)
        reasons.append(
            f"{failed_shards} of {len(shards)} input files produced no output: the candidate failed on requests "
            f"the champion answered ({tally.failed} of {tally.replayed} records in them)"
        )
    if tally.malformed:
        reasons.append(f"{tally.malformed} of {tally.replayed} answers are not shaped like the champion's")
    statistics |= {
        "compared": float(tally.compared),
        "incomparable": float(tally.incomparable),
        "expected_disagreement": expectation.disagreement,
    }
    if tally.compared:
        test = disagreement_test(tally.disagreed, tally.compared, expectation, alpha=alpha, tolerance=tolerance)
        observed = tally.disagreed / tally.compared
        statistics |= {
            "observed_disagreement": observed,
            "allowed_disagreement": test.allowed,
            "expectation_upper": test.upper,
            "odds_ratio_bound": test.odds_ratio,
            "p_value": test.p_value,
            "alpha_bound": test.alpha_bound,
            "alpha_test": test.alpha_test,
            "alpha_spent": alpha,
        }
        if test.rejects:
            reasons.append(
                f"{tally.disagreed} of {tally.compared} answers disagree with the champion's ({observed:.1%}), "
                f"significantly above the {test.allowed:.1%} allowed ({expectation.disagreement:.1%} from "
                f"{expectation.source}, x {1 + tolerance:g}; "
                f"p = {test.p_value:.2g} <= {test.alpha_test:.2g})"
            )
    else:
        statistics["alpha_spent"] = 0.0
    if seconds is not None and champion_seconds and champion_seconds > 0:
        slowdown = seconds / champion_seconds
        statistics["slowdown"] = slowdown
        if max_slowdown is not None and slowdown > max_slowdown:
            reasons.append(f"the candidate took {slowdown:.1f}x the champion's time (at most {max_slowdown:g}x)")
    verdict: Literal["PASS", "REJECT"] = "REJECT" if reasons else "PASS"
    return ReplayResult(
        verdict, tally.replayed, tally.failed, tally.malformed, tally.disagreed, reasons, tally.examples(), statistics
    )


__all__ = [
    "DisagreementTest",
    "Expectation",
    "ReplayResult",
    "ShardOutcome",
    "answer_shape",
    "disagree",
    "disagreement_test",
    "expectation",
    "judge",
]
