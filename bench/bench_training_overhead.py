"""Benchmark: what the local SageMaker adds around a training script.

Target: median < 1.5 s. A report, not a test: it prints its figures and exits 0.
How it is built: docs/BENCHMARKS.md, "bench_training_overhead.py".
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from localcloud.server import LocalCloud

TARGET_S = 1.5
POLL_S = 0.02
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "bench-training"
SCRIPT = b"""import time
started = time.time()
import json, os
open(os.path.join(os.environ["SM_MODEL_DIR"], "times.json"), "w").write(
    json.dumps({"start": started, "end": time.time()})
)
"""


def upload_source(s3: Any) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(SCRIPT)
        tar.addfile(info, io.BytesIO(SCRIPT))
    s3.put_object(Bucket=BUCKET, Key="code/sourcedir.tar.gz", Body=buffer.getvalue())
    s3.put_object(Bucket=BUCKET, Key="data/train/train.csv", Body=b"a,target\n1,0\n2,1\n")
    return f"s3://{BUCKET}/code/sourcedir.tar.gz"


def one_job(sm: Any, s3: Any, source: str) -> dict[str, float]:
    name = f"bench-{uuid.uuid4().hex[:10]}"
    started = time.time()
    sm.create_training_job(
        TrainingJobName=name,
        AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        RoleArn="arn:aws:iam::123456789012:role/Bench",
        HyperParameters={"sagemaker_program": '"train.py"', "sagemaker_submit_directory": json.dumps(source)},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/data/train"}},
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    while True:
        described = sm.describe_training_job(TrainingJobName=name)
        if described["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            break
        time.sleep(POLL_S)
    wall = time.time() - started
    if described["TrainingJobStatus"] != "Completed":
        raise RuntimeError(f"{name} ended {described['TrainingJobStatus']}: {described.get('FailureReason')}")
    body = s3.get_object(Bucket=BUCKET, Key=f"output/{name}/output/model.tar.gz")["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        member = tar.extractfile("times.json")
        assert member is not None
        times = json.loads(member.read())
    phases = {
        t["Status"]: (t["EndTime"] - t["StartTime"]).total_seconds()
        for t in described["SecondaryStatusTransitions"]
        if "EndTime" in t and t["Status"] != "Completed"
    }
    script = times["end"] - times["start"]
    return {"wall": wall, "script": script, "overhead": wall - script, **phases}


def interpreter_start() -> float:
    """The bare interpreter's start, which the overhead includes (the script times itself from its first line)."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as state:
        cloud = LocalCloud(port=0, state_dir=Path(state)).start()
        try:
            sm, s3 = cloud.client("sagemaker"), cloud.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            source = upload_source(s3)
            warm = one_job(sm, s3, source)
            runs = [one_job(sm, s3, source) for _ in range(args.runs)]
        except Exception as exc:
            print(f"FAILED: {exc}")
            return
        finally:
            cloud.stop()

    print(f"training-job overhead, {args.runs} runs after one warm-up (poll every {POLL_S * 1000:.0f} ms)")
    print(f"{'run':>5} {'wall s':>8} {'script s':>9} {'overhead s':>11}")
    for i, run in enumerate(runs, 1):
        print(f"{i:>5} {run['wall']:>8.3f} {run['script']:>9.4f} {run['overhead']:>11.3f}")
    median = statistics.median(r["overhead"] for r in runs)
    print(f"warm-up (first job: imports, first S3 and Logs clients): overhead {warm['overhead']:.3f} s")
    for phase in ("Starting", "Downloading", "Training", "Uploading"):
        values = [r[phase] for r in runs if phase in r]
        if values:
            print(f"  median time in {phase:<12} {statistics.median(values):.3f} s")
    print(f"  bare interpreter start (included in Training): {interpreter_start():.3f} s")
    verdict = "PASS" if median < TARGET_S else "OVER"
    print(f"median overhead {median:.3f} s (target < {TARGET_S} s): {verdict}")


if __name__ == "__main__":
    main()
