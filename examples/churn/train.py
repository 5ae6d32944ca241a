"""Churn classifier training script for the SageMaker scikit-learn container (script mode).

It reads what the sagemaker-training toolkit provides: hyperparameters as ``--key value``
arguments, data and model locations from SM_CHANNEL_TRAIN, SM_CHANNEL_VALIDATION (optional),
SM_MODEL_DIR and SM_OUTPUT_DATA_DIR (metrics.json and, with a validation channel,
validation_predictions.csv: each validation row's label and probability, Shepherd's model-quality
baseline). It prints metric lines such as ``validation:accuracy=0.8120;`` that a MetricDefinitions regex like
``validation:accuracy=([0-9.]+)`` turns into FinalMetricDataList and CloudWatch metrics.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import NoReturn

import joblib
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.metrics import accuracy_score, roc_auc_score

TARGET = "target"


def fail(message: str) -> NoReturn:
    """End the job with a one-line reason: SageMaker shows what /opt/ml/output/failure holds as its FailureReason."""
    output = Path(os.environ.get("SM_OUTPUT_DIR", "/opt/ml/output"))
    if output.is_dir():
        (output / "failure").write_text(message + "\n")
    raise SystemExit(message)


def read_channel(directory: str) -> pd.DataFrame:
    """Every CSV in a channel directory (SageMaker downloads a whole S3 prefix into it), each with the target."""
    files = sorted(Path(directory).rglob("*.csv"))
    if not files:
        fail(f"no CSV files in {directory}")
    frames = []
    for path in files:
        name = path.relative_to(directory)
        try:
            frame = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
            fail(f"{name}: {' '.join(str(exc).split())}")
        if TARGET not in frame.columns:
            fail(f"{name}: no column {TARGET!r} (the header has {', '.join(map(str, frame.columns))})")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def evaluate(model: RandomForestClassifier, frame: pd.DataFrame, split: str) -> dict[str, float]:
    features, labels = frame.drop(columns=[TARGET]), frame[TARGET]
    scores = {
        f"{split}:accuracy": float(accuracy_score(labels, model.predict(features))),
        f"{split}:auc": float(roc_auc_score(labels, model.predict_proba(features)[:, 1])),
    }
    for name, value in scores.items():
        print(f"{name}={value:.4f};")
    return scores


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_estimators", type=int, default=100)
    parser.add_argument("--max_depth", type=int, default=5)
    parser.add_argument("--random_state", type=int, default=0)
    parser.add_argument("--model-dir", default=os.environ.get("SM_MODEL_DIR", "/opt/ml/model"))
    parser.add_argument("--train", default=os.environ.get("SM_CHANNEL_TRAIN", "/opt/ml/input/data/train"))
    parser.add_argument("--validation", default=os.environ.get("SM_CHANNEL_VALIDATION"))
    parser.add_argument("--output-data-dir", default=os.environ.get("SM_OUTPUT_DATA_DIR"))
    args, unknown = parser.parse_known_args()
    if unknown:
        print(f"ignoring unknown arguments: {unknown}")
    return args


def main() -> None:
    args = parse_args()
    train = read_channel(args.train)
    print(f"training on {len(train)} rows, {train.shape[1] - 1} features")
    model = RandomForestClassifier(
        n_estimators=args.n_estimators, max_depth=args.max_depth, random_state=args.random_state, n_jobs=1
    )
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    metrics = evaluate(model, train, "train")
    validation = read_channel(args.validation) if args.validation else None
    if validation is not None:
        metrics |= evaluate(model, validation, "validation")

    Path(args.model_dir).mkdir(parents=True, exist_ok=True)
    joblib.dump(model, Path(args.model_dir) / "model.joblib")
    if args.output_data_dir:
        Path(args.output_data_dir).mkdir(parents=True, exist_ok=True)
        (Path(args.output_data_dir) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        if validation is not None:  # Shepherd's model-quality baseline: the label and the served probability
            predictions = pd.DataFrame(
                {
                    "label": validation[TARGET],
                    "probability": model.predict_proba(validation.drop(columns=[TARGET]))[:, 1],
                }
            )
            predictions.to_csv(Path(args.output_data_dir) / "validation_predictions.csv", index=False)
    print(f"model saved to {args.model_dir}/model.joblib")


if __name__ == "__main__":
    main()
