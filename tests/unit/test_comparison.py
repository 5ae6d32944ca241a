"""Tests for shepherd.comparison: Evaluate plans the champion's scoring on the candidate's validation rows only
when a gate asks and a champion exists; JudgeOnSameRows compares both answers and records the result."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from shepherd import comparison
from shepherd.comparison import Deps, EvaluateRequest, JudgeRequest, evaluate_run, judge_run
from shepherd.errors import NotFound
from shepherd.model_archive import RepackedModel

BUCKET = "shepherd-data"
RUN = "churn-2026-11-25-abc"
PREFIX = f"artifacts/churn/{RUN}/"
LINEAGE = f"s3://{BUCKET}/{PREFIX}lineage.json"
SOURCE = f"s3://{BUCKET}/{PREFIX}sourcedir.tar.gz"
CHAMPION = "arn:aws:sagemaker:us-east-1:123456789012:model-package/churn/3"
ROLE = "arn:aws:iam::123456789012:role/shepherd-test-sagemaker"
HEADER = "tenure,target,spend"


@dataclass
class Objects:
    stored: dict[str, bytes] = field(default_factory=dict)

    def read_bytes(self, bucket: str, key: str, version_id: str | None = None) -> bytes:
        if key not in self.stored:
            raise NotFound(f"s3://{bucket}/{key}")
        return self.stored[key]

    def write_bytes(self, bucket: str, key: str, data: bytes, content_type: str = "") -> str | None:
        self.stored[key] = data
        return None


@dataclass
class Models:
    champion: dict[str, Any] | None = None
    created: dict[str, dict[str, Any]] = field(default_factory=dict)
    lookups: int = 0

    def latest_approved_package(self, group: str) -> dict[str, Any] | None:
        self.lookups += 1
        return self.champion

    def create_model(self, request: dict[str, Any]) -> None:
        self.created[request["ModelName"]] = request


@dataclass
class Archives:
    repacked: list[tuple[str, str, str]] = field(default_factory=list)

    def repack_in_s3(self, model_uri: str, source_uri: str, target_uri: str, *, program: str) -> RepackedModel:
        self.repacked.append((model_uri, source_uri, target_uri))
        return RepackedModel(1, 1, 10, 0)


def world(*, champion: bool = True, validation: str | None = None) -> Deps:
    objects = Objects()
    data = []
    if validation is not None:
        key = "training/churn/2026-11-25/validation/validation.csv"
        objects.stored[key] = validation.encode()
        data.append({"key": key, "version_id": "v1", "size": len(validation)})
    data.append({"key": "training/churn/2026-11-25/train/train.csv", "version_id": "v2", "size": 10})
    lineage = {"dataset": f"s3://{BUCKET}/training/churn/2026-11-25/", "data": data}
    objects.stored[f"{PREFIX}lineage.json"] = json.dumps(lineage).encode()
    return Deps(
        objects=objects,
        models=Models({"ModelPackageArn": CHAMPION} if champion else None),
        archives=Archives(),
        sagemaker_role_arn=ROLE,
        kms_key_arn="arn:aws:kms:us-east-1:123456789012:key/k",
    )


def config(*, margin: float | None = 0.0, target: str | None = "target", **judge: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "framework": "sklearn",
        "entry_point": "train.py",
        "inference_entry_point": "inference.py",
        "training": {
            "target_column": target,
            "metric_definitions": [{"name": "validation:accuracy", "regex": "accuracy=([0-9.]+)"}],
        },
        "evaluation": {
            "gates": [
                {"metric": "validation:accuracy", "direction": "maximize", "threshold": 0.7},
            ]
        },
    }
    document["evaluation"]["gates"][0]["must_beat_champion_by"] = margin
    if judge:
        document["endpoint"] = {"data_capture": {"enabled": True}}
        document["rollout"] = {"judge": {"quality": judge}}
    return document


def request(accuracy: float = 0.8, **changes: Any) -> EvaluateRequest:
    return EvaluateRequest.model_validate(
        {
            "model": "churn",
            "run": RUN,
            "group": "churn",
            "config": config(),
            "job": {
                "job_name": "churn-train-1",
                "model_data_url": f"s3://{BUCKET}/artifacts/churn/training/churn-train-1/output/model.tar.gz",
                "metrics": {"validation:accuracy": accuracy},
            },
            "image": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
            "source_uri": SOURCE,
            "lineage_uri": LINEAGE,
        }
        | changes
    )


VALIDATION = HEADER + "\n" + "".join(f"{i},{i % 2},{i * 1.5}\n" for i in range(10))


# ---------------------------------------------------------------- Evaluate


def test_a_first_registration_compares_nothing_and_says_so() -> None:
    deps = world(champion=False, validation=VALIDATION)
    result = evaluate_run(deps, request())
    assert (result["passed"], result["compare"], result["champion_arn"]) == (True, False, None)
    assert result["summary"].endswith("(no Approved champion in the group yet: nothing to compare with)")
    assert json.loads(deps.objects.read_bytes(BUCKET, f"{PREFIX}evaluation.json"))["passed"] is True
    assert result["record_uri"] == f"s3://{BUCKET}/{PREFIX}evaluation.json"


def test_a_failed_threshold_rejects_without_looking_for_the_champion() -> None:
    deps = world(validation=VALIDATION)
    result = evaluate_run(deps, request(accuracy=0.5))
    assert (result["passed"], result["compare"]) == (False, False)
    assert deps.models.lookups == 0  # type: ignore[attr-defined]


def test_gates_without_a_champion_margin_start_no_jobs() -> None:
    deps = world(validation=VALIDATION)
    result = evaluate_run(deps, request(config=config(margin=None)))
    assert (result["passed"], result["compare"]) == (True, False)
    assert deps.models.lookups == 0  # type: ignore[attr-defined]


def test_with_a_champion_both_models_are_planned_on_the_validation_features() -> None:
    # Given an Approved champion and a run with a validation channel
    deps = world(validation=VALIDATION)
    # When Evaluate runs
    result = evaluate_run(deps, request())
    # Then it asks for the comparison, with the rows written without their header and label column
    assert (result["passed"], result["compare"], result["champion_arn"]) == (False, True, CHAMPION)
    plan = result["comparison"]
    stored = deps.objects.stored  # type: ignore[attr-defined]
    features = stored[f"{PREFIX}comparison/features.csv"].decode().splitlines()
    assert features[:2] == ["0,0.0", "1,1.5"]
    assert len(features) == plan["rows"] == 10
    assert json.loads(stored[f"{PREFIX}comparison/labels.json"])[:3] == ["0", "1", "0"]
    # and one transform job per side on the one manifest, headerless CSV in, one line out per row
    candidate, champion = plan["candidate"]["request"], plan["champion"]["request"]
    for side, job in (("candidate", candidate), ("champion", champion)):
        assert job["TransformInput"]["ContentType"] == "text/csv"
        assert job["TransformInput"]["DataSource"]["S3DataSource"]["S3Uri"].endswith("comparison/manifest.json")
        assert job["TransformOutput"]["S3OutputPath"] == f"s3://{BUCKET}/{PREFIX}comparison/{side}/"
        assert job["TransformOutput"]["AssembleWith"] == "Line"
    assert candidate["TransformJobName"] != champion["TransformJobName"]
    # and the candidate's model serves its repacked archive, the champion's its package, both isolated
    models = deps.models.created  # type: ignore[attr-defined]
    assert models[candidate["ModelName"]]["PrimaryContainer"]["ModelDataUrl"] == f"s3://{BUCKET}/{PREFIX}model.tar.gz"
    assert models[champion["ModelName"]]["PrimaryContainer"] == {"ModelPackageName": CHAMPION}
    assert all(m["EnableNetworkIsolation"] and m["ExecutionRoleArn"] == ROLE for m in models.values())
    assert deps.archives.repacked[0][2] == f"s3://{BUCKET}/{PREFIX}model.tar.gz"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("deps", "changes", "why"),
    [
        (world(validation=None), {}, "has no validation/ channel of CSV files to compare on"),
        (world(validation=VALIDATION), {"config": config(target=None)}, "training.target_column is not set"),
        (world(validation="tenure,spend\n1,2\n"), {}, "has no header naming 'target'"),
    ],
)
def test_a_comparison_that_cannot_be_made_rejects_and_says_why(deps: Deps, changes: Any, why: str) -> None:
    result = evaluate_run(deps, request(**changes))
    assert (result["passed"], result["compare"]) == (False, False)
    assert "not compared with the champion" in result["summary"]
    assert why in result["summary"]


def with_baseline(deps: Deps, features: list[str]) -> Deps:
    """The champion registered with a data baseline whose statistics.json names ``features``."""
    key = "monitoring/churn/baseline/3/statistics.json"
    deps.objects.write_bytes(BUCKET, key, json.dumps({"features": [{"name": n} for n in features]}).encode())
    uri = f"s3://{BUCKET}/{key}"
    deps.models.champion["DriftCheckBaselines"] = {"ModelDataQuality": {"Statistics": {"S3Uri": uri}}}  # type: ignore[attr-defined]
    return deps


def test_a_champion_trained_on_the_same_columns_is_compared() -> None:
    result = evaluate_run(with_baseline(world(validation=VALIDATION), ["tenure", "spend"]), request())
    assert result["compare"] is True


def test_a_champion_trained_on_other_columns_is_not_scored_and_the_gate_says_why() -> None:
    # Given a champion whose baseline names a column the candidate's rows do not have
    deps = with_baseline(world(validation=VALIDATION), ["tenure", "spend", "plan"])
    # When Evaluate runs, then no job is planned and the schema change fails the gate
    result = evaluate_run(deps, request())
    assert (result["passed"], result["compare"]) == (False, False)
    assert (
        "the champion was trained on other feature columns (tenure, spend, plan) than the candidate's validation "
        "rows hold (tenure, spend): a changed schema"
    ) in result["summary"]
    assert deps.models.created == {}  # type: ignore[attr-defined]


def test_a_lineage_without_a_dataset_is_not_compared() -> None:
    deps = world(validation=VALIDATION)
    deps.objects.write_bytes(BUCKET, f"{PREFIX}lineage.json", b"{}")
    result = evaluate_run(deps, request())
    assert result["passed"] is False
    assert "names no dataset to read validation rows from" in result["summary"]


def test_the_rows_compared_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(comparison, "MAX_ROWS", 4)
    result = evaluate_run(world(validation=VALIDATION), request())
    assert result["comparison"]["rows"] == 4


# ---------------------------------------------------------------- JudgeOnSameRows


def judged(deps: Deps, candidate: list[str] | None, champion: list[str] | None, **changes: Any) -> dict[str, Any]:
    """JudgeOnSameRows after Evaluate's plan, each side's answers written (None: that side's job failed)."""
    planned = evaluate_run(deps, request(**changes))
    scoring = []
    for side, answers in (("candidate", candidate), ("champion", champion)):
        if answers is None:
            scoring.append({"failed": True, "error": "TransformJobFailed", "cause": f"{side}: ValueError: 3 features"})
            continue
        key = f"{PREFIX}comparison/{side}/features.csv.out"
        deps.objects.write_bytes(BUCKET, key, "".join(f"{a}\n" for a in answers).encode())
        scoring.append({"failed": False, "job_name": side})
    event = request(**changes).model_dump() | {"evaluation": planned, "scoring": scoring}
    return judge_run(deps, JudgeRequest.model_validate(event))


def labelled(rows: int, share_right: float) -> tuple[str, list[str]]:
    """A validation CSV of ``rows`` rows with 0/1 labels, and probabilities right on the first share of them."""
    labels = [i % 2 for i in range(rows)]
    csv = HEADER + "\n" + "".join(f"{i},{y},{i * 0.5}\n" for i, y in enumerate(labels))
    right = round(rows * share_right)
    answers = [f"{0.9 if y else 0.1}" if i < right else f"{0.1 if y else 0.9}" for i, y in enumerate(labels)]
    return csv, answers


def test_a_candidate_shown_better_on_the_same_rows_passes_with_the_metadata_replay_reads() -> None:
    csv, candidate = labelled(1000, 0.85)
    _, champion = labelled(1000, 0.75)
    deps = world(validation=csv)
    result = judged(deps, candidate, champion)
    assert result["passed"] is True, result["summary"]
    paired = result["paired"]
    assert paired["shepherd:problem"] == "classification"
    assert paired["shepherd:paired-rows"] == "1000"
    assert float(paired["shepherd:paired-disagreement"]) == pytest.approx(0.1)
    assert "shepherd:paired-band" not in paired
    assert float(paired["shepherd:paired-improvement"]) == pytest.approx(0.1)
    assert paired["shepherd:evaluation"] == f"s3://{BUCKET}/{PREFIX}evaluation.json"
    record = json.loads(deps.objects.read_bytes(BUCKET, f"{PREFIX}evaluation.json"))
    assert record["champion"] == CHAMPION
    assert record["paired"]["validation:accuracy"]["method"].startswith("McNemar exact test")
    assert record["gates"][0]["compared"] == "accuracy"


def test_a_candidate_no_better_than_the_champion_is_rejected_with_the_numbers() -> None:
    # Given two models each right on 80 % of the rows, not the same rows
    csv, answers = labelled(400, 0.8)
    result = judged(world(validation=csv), answers, answers[200:] + answers[:200])
    assert result["passed"] is False
    assert result["summary"].startswith(
        "rejected: validation:accuracy: on the same 400 validation rows accuracy 0.8 against the champion's 0.8, "
        "improvement +0 (95% lower bound -0.0"
    )
    assert result["paired"] is None  # nothing is registered


def test_identical_answers_meet_a_zero_margin() -> None:
    csv, answers = labelled(50, 0.8)
    assert judged(world(validation=csv), answers, answers)["passed"] is True


def test_a_champion_that_cannot_score_the_rows_fails_the_gate_and_the_record_says_why() -> None:
    csv, answers = labelled(50, 0.9)
    deps = world(validation=csv)
    result = judged(deps, answers, None)
    assert result["passed"] is False
    assert (
        "the champion's model could not score the candidate's validation rows (a changed schema?)"
        in (result["summary"])
    )
    assert "champion: ValueError: 3 features" in result["summary"]
    assert "beating it cannot be shown" in result["summary"]
    record = json.loads(deps.objects.read_bytes(BUCKET, f"{PREFIX}evaluation.json"))
    assert record["passed"] is False
    assert record["paired"] == {}


def test_a_candidate_that_cannot_score_its_own_rows_is_rejected() -> None:
    csv, answers = labelled(50, 0.9)
    result = judged(world(validation=csv), None, answers)
    assert "the candidate could not score its own validation rows" in result["summary"]


def test_answers_missing_rows_are_not_compared() -> None:
    csv, answers = labelled(50, 0.9)
    result = judged(world(validation=csv), answers[:-1], answers)
    assert "holds 49 answers for 50 rows" in result["summary"]


def test_a_regressor_is_compared_on_its_errors_with_the_champions_rmse_as_the_band() -> None:
    # Given numeric labels, and a candidate closer to them than the champion
    rows = 300
    csv = HEADER + "\n" + "".join(f"{i},{i * 0.37:.2f},{i}\n" for i in range(rows))
    truth = [i * 0.37 for i in range(rows)]
    candidate = [f"{y + (0.1 if i % 2 else -0.1):.3f}" for i, y in enumerate(truth)]
    champion = [f"{y + (1.0 if i % 2 else -1.0):.3f}" for i, y in enumerate(truth)]
    # When both are judged, the gate on a mean absolute error
    result = judged(world(validation=csv), candidate, champion, config=config(tolerance=0.5))
    # Then the comparison is a regression's, with its band
    assert result["passed"] is True, result["summary"]
    paired = result["paired"]
    assert paired["shepherd:problem"] == "regression"
    assert paired["shepherd:paired-metric"] == "mae"
    assert float(paired["shepherd:paired-band"]) == pytest.approx(1.0, abs=1e-3)
    assert float(paired["shepherd:paired-disagreement"]) == 0.0  # 0.9 apart: within the champion's RMSE
