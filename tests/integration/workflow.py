"""Driving the application's template.yaml on the local cloud the way a user does: uploads, then watching."""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

from .conftest import finished_execution, wait_for

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "churn"
sys.path.insert(0, str(EXAMPLE))
from generate_data import generate  # noqa: E402


class App:
    """One deployed copy of template.yaml and the S3/SQS/Step Functions views a test needs."""

    def __init__(self, cloud: Any, outputs: dict[str, str]) -> None:
        self.cloud, self.outputs = cloud, outputs
        self.bucket = outputs["DataBucketName"]
        self.s3 = cloud.client("s3")
        self.sfn = cloud.client("stepfunctions")
        self.sagemaker = cloud.client("sagemaker")
        sqs = cloud.client("sqs")
        self.queue = sqs.create_queue(QueueName=f"notifications-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        cloud.client("sns").subscribe(
            TopicArn=outputs["NotificationTopicArn"],
            Protocol="sqs",
            Endpoint=queue_arn,
            Attributes={"RawMessageDelivery": "true"},
        )
        self.sqs = sqs
        self._seen: list[dict[str, Any]] = []

    def function(self, logical_id: str) -> str:
        names = [f["FunctionName"] for f in self.cloud.client("lambda").list_functions()["Functions"]]
        prefix = f"{self.outputs['_stack']}-{logical_id}" if "_stack" in self.outputs else logical_id
        return next(n for n in names if n.startswith(prefix))

    def upload_project(self, model: str, config: dict[str, Any], code: dict[str, bytes] | None = None) -> None:
        self.s3.put_object(
            Bucket=self.bucket, Key=f"models/{model}/shepherd.yaml", Body=yaml.safe_dump(config).encode()
        )
        files = code or {name: (EXAMPLE / name).read_bytes() for name in ("train.py", "inference.py")}
        for name, body in files.items():
            self.s3.put_object(Bucket=self.bucket, Key=f"models/{model}/code/{name}", Body=body)

    def upload_dataset(
        self, model: str, dataset: str, *, rows: int = 900, seed: int = 7, breaking: bool = False
    ) -> str:
        frame = generate(rows, seed)
        cut = int(rows * 0.75)
        splits = {"train": frame.iloc[:cut], "validation": frame.iloc[cut:]}
        for split, part in splits.items():
            # train.py cannot train without its label column
            rows_out = part.drop(columns=["target"]) if breaking else part
            self.s3.put_object(
                Bucket=self.bucket,
                Key=f"training/{model}/{dataset}/{split}/{split}.csv",
                Body=rows_out.to_csv(index=False).encode(),
            )
        return str(
            self.s3.put_object(Bucket=self.bucket, Key=f"training/{model}/{dataset}/_READY", Body=b"")["VersionId"]
        )

    def executions(self, prefix: str = "") -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.outputs["ModelLifecycleStateMachineArn"])["executions"]
        return [e for e in listed if e["name"].startswith(prefix)]

    def run_of(self, model: str, dataset: str, timeout: float = 60.0) -> dict[str, Any]:
        (execution,) = wait_for(lambda: self.executions(f"{model}-{dataset}-"), timeout=20)
        return finished_execution(self.cloud, execution["executionArn"], timeout=timeout)

    def history(self, execution_arn: str) -> list[dict[str, Any]]:
        return self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)["events"]

    def notifications(self, event: str, model: str, timeout: float = 10.0, match: Any = None) -> dict[str, Any]:
        def wanted(n: dict[str, Any]) -> bool:
            return n.get("event") == event and (match(n) if match else n.get("model") == model)

        def find() -> dict[str, Any] | None:
            for message in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
                self._seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            return next((n for n in self._seen if wanted(n)), None)

        return wait_for(find, timeout=timeout)

    def packages(self, group: str) -> list[dict[str, Any]]:
        try:
            listed = self.sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
        except self.sagemaker.exceptions.ClientError:
            return []
        return [self.sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


def churn_config(model: str, *, approval: str = "manual", **changes: Any) -> dict[str, Any]:
    """The documented example config, for another model name, with some keys changed (dotted paths).

    Approval is manual unless a test needs the automatic rollout: an approved package deploys an
    endpoint (two worker processes), which tests of training and registry do not need.
    """
    config = yaml.safe_load((EXAMPLE / "shepherd.yaml").read_text())
    config["registry"]["approval"] = approval
    config["registry"]["model_package_group"] = model
    config["endpoint"]["name"] = model
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return config


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def wait_seconds(seconds: float) -> None:
    time.sleep(seconds)


class Traffic:
    """A steady stream of real InvokeEndpoint calls, every outcome counted (a share deliberately malformed)."""

    def __init__(
        self, cloud: Any, endpoint: str, *, rate: float = 80.0, malformed: float = 0.05, target_model: str = ""
    ) -> None:
        import threading

        import numpy as np

        self.runtime = cloud.client("sagemaker-runtime")
        self.endpoint, self.rate, self.malformed = endpoint, rate, malformed
        self.target = {"TargetModel": target_model} if target_model else {}  # a multi-model endpoint's artifact
        rows = generate(400, seed=21).drop(columns=["target"])
        self.rows = [",".join(str(v) for v in row) for row in rows.itertuples(index=False)]
        self.random = np.random.default_rng(5)
        self.sent = self.ok = self.malformed_sent = self.malformed_failed = 0
        self.unexpected: list[str] = []
        self.variants: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="traffic", daemon=True)

    def __enter__(self) -> Traffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        while not self._stop.wait(interval):
            bad = self.random.random() < self.malformed
            body = "1,2" if bad else self.rows[int(self.random.integers(len(self.rows)))]
            self.sent += 1
            self.malformed_sent += bad
            try:
                answer = self.runtime.invoke_endpoint(
                    EndpointName=self.endpoint, ContentType="text/csv", Body=body, **self.target
                )
            except self.runtime.exceptions.ModelError:
                if bad:
                    self.malformed_failed += 1
                else:
                    self.unexpected.append("ModelError on a valid row")
                continue
            except Exception as exc:  # anything else is the rollout's fault
                self.unexpected.append(f"{type(exc).__name__}: {exc}")
                continue
            variant = answer["InvokedProductionVariant"]
            self.variants[variant] = self.variants.get(variant, 0) + 1
            if bad:
                self.unexpected.append("a malformed row was answered")
            else:
                self.ok += 1


def task_attempts(history: list[dict[str, Any]], state: str) -> list[dict[str, Any]]:
    """Every attempt of a Task state, in order: {"error", "cause"} when it failed, {"output"} when it succeeded."""
    attempts: list[dict[str, Any]] = []
    current = None
    for event in history:
        if event["type"].endswith("StateEntered"):
            current = event["stateEnteredEventDetails"]["name"]
        elif current == state and event["type"] in ("TaskFailed", "TaskTimedOut"):
            details = event.get("taskFailedEventDetails") or event.get("taskTimedOutEventDetails") or {}
            attempts.append({"error": details.get("error"), "cause": details.get("cause")})
        elif current == state and event["type"] == "TaskSucceeded":
            attempts.append({"output": json.loads(event["taskSucceededEventDetails"]["output"])})
    return attempts
