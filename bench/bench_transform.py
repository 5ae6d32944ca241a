"""Batch transform throughput on the local cloud vs. the single-process limit, measured in the same run.

A report, not a test: prints its figures and exits 0. How it is built: docs/BENCHMARKS.md, "bench_transform.py".
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import os
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from localcloud.server import LocalCloud

THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
FEATURES = 8
SCRIPT = """import os

import joblib


def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))
"""


CHURN = Path(__file__).resolve().parents[1] / "examples" / "churn"


def _churn_data() -> Any:
    spec = importlib.util.spec_from_file_location("churn_generate_data", CHURN / "generate_data.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make_model(kind: str) -> tuple[Any, str]:
    from sklearn.ensemble import (
        GradientBoostingRegressor,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression

    if kind == "churn":  # as examples/churn/train.py fits it
        frame = _churn_data().generate(6000, 7)
        model = RandomForestClassifier(n_estimators=100, max_depth=5, random_state=0, n_jobs=1)
        model.fit(frame.drop(columns=["target"]), frame["target"])
        return model, "examples/churn RandomForestClassifier(100 trees, depth 5) with its inference.py"

    rng = np.random.default_rng(1)
    x = rng.normal(size=(20_000, FEATURES))
    y = x @ rng.normal(size=FEATURES) + np.sin(3 * x[:, 0]) + 0.1 * rng.normal(size=len(x))
    models: dict[str, tuple[Any, str]] = {
        "gbr": (
            GradientBoostingRegressor(n_estimators=100, max_depth=3, random_state=0),
            "GradientBoostingRegressor(100 trees, depth 3)",
        ),
        "hgb": (
            HistGradientBoostingRegressor(max_iter=100, random_state=0),
            "HistGradientBoostingRegressor(100 iterations)",
        ),
        "forest": (
            RandomForestRegressor(n_estimators=20, max_depth=10, random_state=0),
            "RandomForestRegressor(20 trees, depth 10)",
        ),
        "linear": (LinearRegression(), "LinearRegression"),
    }
    model, label = models[kind]
    return model.fit(x, y), label


def write_csv(path: Path, rows: int, kind: str = "gbr") -> None:
    if kind == "churn":  # the example's features, no header, no target: what a batch file holds
        _churn_data().generate(rows, 11).drop(columns=["target"]).to_csv(path, header=False, index=False)
        return
    rng = np.random.default_rng(2)
    with path.open("w") as out:
        for start in range(0, rows, 100_000):
            block = rng.normal(size=(min(100_000, rows - start), FEATURES))
            np.savetxt(out, block, delimiter=",", fmt="%.6f")


def single_process(model: Any, source: Path, target: Path, kind: str = "gbr") -> tuple[float, list[str]]:
    """The limit one process reaches: read all, predict all, write all."""
    started = time.perf_counter()
    if kind == "churn":  # examples/churn/inference.py's steps, on the whole file at once
        values = pd.read_csv(source, header=None, dtype=np.float64).to_numpy()
        frame = pd.DataFrame(values, columns=[str(n) for n in model.feature_names_in_])
        probabilities = model.predict_proba(frame)[:, 1]
        text = "\n".join(f"{v:.6g}" for v in probabilities.tolist()) + "\n"
    else:
        features = pd.read_csv(source, header=None, dtype=np.float64).to_numpy().astype(np.float32)
        predictions = model.predict(features)
        text = "\n".join(map(repr, predictions.tolist())) + "\n"
    target.write_text(text)
    return time.perf_counter() - started, text[:2000].splitlines()[:10]


def model_archive(model: Any, kind: str = "gbr") -> bytes:
    buffer = io.BytesIO()
    blob = io.BytesIO()
    joblib.dump(model, blob)
    script = (CHURN / "inference.py").read_bytes() if kind == "churn" else SCRIPT.encode()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in (("model.joblib", blob.getvalue()), ("code/inference.py", script)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def transform(
    cloud: LocalCloud, model_name: str, bucket: str, workers: int, payload_mb: int
) -> tuple[float, float, str]:
    sm = cloud.client("sagemaker")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model_name,
        MaxConcurrentTransforms=workers,
        MaxPayloadInMB=payload_mb,
        BatchStrategy="MultiRecord",
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{bucket}/in/data.csv"}},
            "ContentType": "text/csv",
            "SplitType": "Line",
        },
        TransformOutput={"S3OutputPath": f"s3://{bucket}/out/{name}", "Accept": "text/csv", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
    )
    while True:
        described = sm.describe_transform_job(TransformJobName=name)
        if described["TransformJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    if described["TransformJobStatus"] != "Completed":
        raise RuntimeError(f"transform job {described['TransformJobStatus']}: {described.get('FailureReason')}")
    in_job = (described["TransformEndTime"] - described["TransformStartTime"]).total_seconds()
    return elapsed, in_job, name


@dataclass
class Figures:
    baseline: list[float] = field(default_factory=list)
    client_side: list[float] = field(default_factory=list)
    in_job: list[float] = field(default_factory=list)
    cold: float = 0.0


def measure(args: argparse.Namespace, work: Path, source: Path, model: Any) -> Figures:
    """Baseline and transform runs, alternating; the first transform's output is checked."""
    figures = Figures()
    cloud = LocalCloud(port=0, state_dir=work / "state").start()
    try:
        s3 = cloud.client("s3")
        bucket = "bench-transform"
        s3.create_bucket(Bucket=bucket)
        s3.upload_file(str(source), bucket, "in/data.csv")
        s3.put_object(Bucket=bucket, Key="model/model.tar.gz", Body=model_archive(model, args.model))
        cloud.client("sagemaker").create_model(
            ModelName="bench-model",
            ExecutionRoleArn="arn:aws:iam::123456789012:role/bench",
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{bucket}/model/model.tar.gz"},
        )
        # The first job of a local cloud also starts the model worker zygote (imports scikit-learn once).
        figures.cold, _, _ = transform(cloud, "bench-model", bucket, args.workers, args.payload_mb)
        for run in range(args.runs):
            with threadpool_limits(1):
                seconds, expected = single_process(model, source, work / "predictions.txt", args.model)
            figures.baseline.append(seconds)
            elapsed, job_seconds, name = transform(cloud, "bench-model", bucket, args.workers, args.payload_mb)
            figures.client_side.append(elapsed)
            figures.in_job.append(job_seconds)
            if run == 0:
                body = s3.get_object(Bucket=bucket, Key=f"out/{name}/data.csv.out")["Body"].read().decode()
                lines = body.splitlines()
                if len(lines) != args.rows or lines[: len(expected)] != expected:
                    raise SystemExit(f"transform output differs from the baseline ({len(lines)} lines)")
    finally:
        cloud.stop()
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--model", choices=["gbr", "hgb", "forest", "linear", "churn"], default="gbr")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--payload-mb", type=int, default=6)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    if args.rows < 200_000:
        parser.error("--rows must be at least 200000")
    for name in THREAD_ENV:  # the model workers inherit these
        os.environ[name] = "1"

    with tempfile.TemporaryDirectory(prefix="bench-transform-") as tmp:
        work = Path(tmp)
        source = work / "data.csv"
        write_csv(source, args.rows, args.model)
        size_mb = source.stat().st_size / 1e6
        model, label = make_model(args.model)
        probe: Any = np.random.default_rng(3).normal(size=(100_000, FEATURES)).astype(np.float32)
        predict = model.predict
        if args.model == "churn":
            probe = _churn_data().generate(100_000, 5).drop(columns=["target"]).astype(np.float64)
            predict = model.predict_proba
        with threadpool_limits(1):
            t0 = time.perf_counter()
            predict(probe)
            per_row_us = (time.perf_counter() - t0) / len(probe) * 1e6
        figures = measure(args, work, source, model)

    base = statistics.median(figures.baseline)
    job = statistics.median(figures.client_side)
    inside = statistics.median(figures.in_job)
    rows = args.rows
    print(f"data:   {rows:,} rows x {FEATURES} features, {size_mb:.1f} MB CSV")
    how = "predict_proba, float64" if args.model == "churn" else "float32"
    print(f"model:  {label}, predict {per_row_us:.2f} us/row ({how}, 1 thread)")
    print(f"setup:  MaxConcurrentTransforms={args.workers}, MaxPayloadInMB={args.payload_mb}, MultiRecord, Line")
    print(f"runs:   {args.runs} (median); OMP/OPENBLAS/MKL_NUM_THREADS=1; {os.cpu_count()} cores")
    print()
    print(f"{'':36} {'seconds':>8} {'rows/s':>12}")
    print(f"{'single process (read+predict+write)':36} {base:8.2f} {rows / base:12,.0f}")
    print(f"{'transform job, client wall clock':36} {job:8.2f} {rows / job:12,.0f}")
    print(f"{'transform job, Start->EndTime':36} {inside:8.2f} {rows / inside:12,.0f}")
    print(f"{'first job of the cloud (cold, info)':36} {figures.cold:8.2f} {rows / figures.cold:12,.0f}")
    print()
    print(f"ratio (transform / single process, client wall clock): {base / job:.2f}x  (target >= 1.0x)")
    print(f"ratio (in-job time):                                   {base / inside:.2f}x")
    singles = ", ".join(f"{v:.2f}" for v in figures.baseline)
    jobs = ", ".join(f"{v:.2f}" for v in figures.client_side)
    print(f"all runs (s): single [{singles}], job [{jobs}]")


if __name__ == "__main__":
    main()
