"""A processing job's run: inputs from S3 into its /opt/ml/processing, the container, outputs back to S3.

The container's /opt/ml is a directory of the job's own (SHEPHERD_CONTAINER_ROOT tells the container where), as
SageMaker's processing contract lays it out ("How Amazon SageMaker Processing Runs Your Processing Container Image"):
/opt/ml/config/processingjobconfig.json and resourceconfig.json, inputs at their LocalPath, outputs uploaded from
theirs, /opt/ml/output/message as the job's ExitMessage or FailureReason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from localcloud.iam import container_environment
from localcloud.sagemaker.jobs import Job, RunnerContext, utcnow
from localcloud.sagemaker.network_isolation import ISOLATED, NETWORK_GUARD

LOG_GROUP = "/aws/sagemaker/ProcessingJobs"
METRICS = "/opt/ml/output/metrics/cloudwatch"
# The guide's pages disagree ("/aws/sagemaker/Endpoints/data-metric", "/aws/sagemaker/Endpoint/data-metrics");
# this is the namespace AWS's Model Monitor examples query.
METRICS_NAMESPACE = "aws/sagemaker/Endpoints/data-metrics"
# A model-quality analysis's metrics ("Model quality CloudWatch metrics", SageMaker guide).
QUALITY_NAMESPACE = "aws/sagemaker/Endpoints/model-metrics"
LAYER = Path(__file__).resolve().parents[3] / "layers" / "shepherd"
CONTAINER = [sys.executable, "-m", "shepherd.monitor.container"]
DEFAULT_MAX_RUNTIME = 86400
MESSAGE_MAX = 1024


class _Ended(Exception):
    """The job ended before its container did: stopped, or past MaxRuntimeInSeconds."""

    def __init__(self, status: str, reason: str | None = None) -> None:
        super().__init__(reason or status)
        self.status = status
        self.reason = reason


def _local(root: Path, container_path: str) -> Path:
    return root / container_path.lstrip("/")


def _split(uri: str) -> tuple[str, str]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return bucket, key


class ProcessingRun:
    def __init__(self, job: Job, ctx: RunnerContext) -> None:
        self.job = job
        self.ctx = ctx
        self.request = job.request
        self.root = ctx.work_root / "processing" / job.name
        self.stream = f"{job.name}/algo-1-{int(time.time())}"

    def log(self, line: str) -> None:
        self.ctx.log(LOG_GROUP, self.stream, line)

    def run(self) -> None:
        self.job.update(ProcessingStartTime=utcnow())
        try:
            self._check()
            self._download_inputs()
            self._write_config()
            returncode = self._container()
            message = self._message()
            if returncode != 0:
                reason = f"AlgorithmError: {message or f'the container exited with code {returncode}'}"
                self.job.set_status("Failed", FailureReason=reason[:MESSAGE_MAX], ProcessingEndTime=utcnow())
                return
            self._upload_outputs()
            self._publish_metrics()
        except _Ended as ended:
            fields = {"FailureReason": ended.reason} if ended.reason else {}
            self.job.set_status(ended.status, ProcessingEndTime=utcnow(), **fields)
            return
        except Exception as exc:
            self.log(f"Processing job failed: {exc}")
            self.job.set_status("Failed", FailureReason=f"ClientError: {exc}"[:MESSAGE_MAX], ProcessingEndTime=utcnow())
            return
        fields = {"ExitMessage": message[:MESSAGE_MAX]} if message else {}
        self.job.set_status("Completed", ProcessingEndTime=utcnow(), **fields)

    def _check(self) -> None:
        if self.job.stop_requested.is_set():
            raise _Ended("Stopped")

    def _download_inputs(self) -> None:
        s3 = self.ctx.client("s3")
        for item in self.request.get("ProcessingInputs", []):
            source = item.get("S3Input")
            if source is None:
                raise ValueError(f"input {item['InputName']}: only S3Input is supported locally")
            if source.get("S3DataType", "S3Prefix") != "S3Prefix":
                raise ValueError(f"input {item['InputName']}: only S3DataType S3Prefix is supported locally")
            bucket, prefix = _split(source["S3Uri"])
            base = prefix[: prefix.rfind("/") + 1] if not prefix.endswith("/") else prefix
            target = _local(self.root, source["LocalPath"])
            target.mkdir(parents=True, exist_ok=True)
            count = 0
            for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for obj in page.get("Contents", []):
                    if obj["Key"].endswith("/"):
                        continue
                    path = target / obj["Key"][len(base) :]
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
                    count += 1
            if count == 0:
                raise ValueError(f'No S3 objects found under S3 URL "{source["S3Uri"]}" given in input data source.')
            self._check()
        for output in self.request.get("ProcessingOutputConfig", {}).get("Outputs", []):
            if "S3Output" in output:
                _local(self.root, output["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)

    def _write_config(self) -> None:
        config = _local(self.root, "/opt/ml/config")
        config.mkdir(parents=True, exist_ok=True)
        (config / "processingjobconfig.json").write_text(json.dumps(self.request, default=str))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        _local(self.root, "/opt/ml/output").mkdir(parents=True, exist_ok=True)

    def _container(self) -> int:
        # The analyzer needs no AWS: the cloud's keys and endpoint stay out of its environment.
        env = {
            **container_environment(os.environ),
            **self.request.get("Environment", {}),
            "PYTHONPATH": str(LAYER),
            "SHEPHERD_CONTAINER_ROOT": str(self.root),
        }
        if (self.request.get("NetworkConfig") or {}).get("EnableNetworkIsolation"):
            env |= {"PYTHONPATH": os.pathsep.join((str(NETWORK_GUARD.parent), str(LAYER))), ISOLATED: "1"}
        process = subprocess.Popen(
            CONTAINER,
            cwd=str(self.root),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        assert process.stdout is not None
        pump = threading.Thread(target=self._pump, args=(process.stdout,), daemon=True, name=f"{self.job.name}-out")
        pump.start()
        clock = getattr(self.ctx, "clock", None)
        limit = (self.request.get("StoppingCondition") or {}).get("MaxRuntimeInSeconds", DEFAULT_MAX_RUNTIME)
        deadline = time.monotonic() + (clock.wall_seconds(limit) if clock is not None else limit)
        try:
            while process.poll() is None:
                if self.job.stop_requested.is_set():
                    raise _Ended("Stopped")
                if time.monotonic() > deadline:
                    raise _Ended("Failed", f"Processing job exceeded MaxRuntimeInSeconds ({limit} s).")
                time.sleep(0.02)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            pump.join(timeout=5)
        return process.returncode

    def _pump(self, stream: Any) -> None:
        for raw in iter(stream.readline, b""):
            self.log(raw.decode("utf-8", errors="replace").rstrip("\n"))

    def _message(self) -> str:
        path = _local(self.root, "/opt/ml/output/message")
        return path.read_text().strip() if path.is_file() else ""

    def _upload_outputs(self) -> None:
        s3 = self.ctx.client("s3")
        config = self.request.get("ProcessingOutputConfig", {})
        extra = {"SSEKMSKeyId": config["KmsKeyId"], "ServerSideEncryption": "aws:kms"} if config.get("KmsKeyId") else {}
        for output in config.get("Outputs", []):
            target = output.get("S3Output")
            if target is None:
                continue
            bucket, prefix = _split(target["S3Uri"])
            source = _local(self.root, target["LocalPath"])
            for path in sorted(p for p in source.rglob("*") if p.is_file()):
                key = "/".join(part for part in (prefix.rstrip("/"), path.relative_to(source).as_posix()) if part)
                s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **extra)

    def _publish_metrics(self) -> None:
        """The container's metric lines, put as the job's role when the job asks for CloudWatch metrics."""
        environment = self.request.get("Environment", {})
        if environment.get("publish_cloudwatch_metrics") != "Enabled":
            return
        namespace = QUALITY_NAMESPACE if environment.get("analysis_type") == "MODEL_QUALITY" else METRICS_NAMESPACE
        data = [
            json.loads(line)
            for path in sorted(_local(self.root, METRICS).glob("*"))
            for line in path.read_text().splitlines()
            if line.strip()
        ]
        cloudwatch = self.ctx.client("cloudwatch") if data else None
        for start in range(0, len(data), 1000):
            assert cloudwatch is not None
            cloudwatch.put_metric_data(Namespace=namespace, MetricData=data[start : start + 1000])


def run_processing_job(job: Job, ctx: RunnerContext) -> None:
    ProcessingRun(job, ctx).run()
