"""Driving the application's template.yaml on the local cloud the way a user does: uploads, then watching."""

from __future__ import annotations

import hashlib
import io
import json
import sys
import tarfile
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from localcloud import traffic
from tests.tarballs import tar_gz

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
        events: list[dict[str, Any]] = []
        token: dict[str, str] = {}
        while True:
            page = self.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000, **token)
            events.extend(page["events"])
            if not page.get("nextToken"):
                return events
            token = {"nextToken": page["nextToken"]}

    def path(self, execution: dict[str, Any]) -> list[str]:
        """The states an execution entered, in order (see `path`)."""
        return path(self.history(execution["executionArn"]))

    def rollouts(self, prefix: str) -> list[dict[str, Any]]:
        listed = self.sfn.list_executions(stateMachineArn=self.outputs["RolloutStateMachineArn"])["executions"]
        return [e for e in listed if e["name"].startswith(prefix)]

    def rollout(self, model: str, version: int, timeout: float = 240.0) -> dict[str, Any]:
        """The finished Rollout execution of ``model``'s package ``version`` (started by its approval)."""
        (execution,) = wait_for(lambda: self.rollouts(f"{model}-v{version}-"), timeout=60)
        finished = finished_execution(self.cloud, execution["executionArn"], timeout=timeout)
        if finished["status"] != "SUCCEEDED":  # shown with a failing test's output
            print(f"{execution['name']}: {finished['status']} {finished.get('error')}: {finished.get('cause')}")
            print("path:", self.path(execution))
            for event in self.history(execution["executionArn"]):
                if event["type"].endswith(("Failed", "TimedOut")):
                    print(json.dumps(event, default=str)[:1500])
            for record in self.records(model)[-4:]:
                print(json.dumps(record, default=str)[:1500])
        return finished

    def records(self, endpoint: str) -> list[dict[str, Any]]:
        """The endpoint's rollout records (stage changes, verdicts, outcomes), oldest first."""
        items = self.cloud.client("dynamodb").query(
            TableName=self.outputs["RolloutsTableName"],
            KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
            ExpressionAttributeValues={":pk": {"S": f"endpoint#{endpoint}"}, ":r": {"S": "record#"}},
        )["Items"]
        return [json.loads(i["entry"]["S"]) for i in items]

    def lock(self, endpoint: str) -> dict[str, Any] | None:
        found = self.cloud.client("dynamodb").get_item(
            TableName=self.outputs["RolloutsTableName"],
            Key={"pk": {"S": f"endpoint#{endpoint}"}, "sk": {"S": "lock"}},
            ConsistentRead=True,
        )
        return found.get("Item")

    def serving(self, endpoint: str) -> list[tuple[str, float]]:
        """The endpoint's production variants and their weights, once it is InService ([] while it changes)."""
        live = self.sagemaker.describe_endpoint(EndpointName=endpoint)
        if live["EndpointStatus"] != "InService":
            return []
        return [(v["VariantName"], v["CurrentWeight"]) for v in live["ProductionVariants"]]

    def register(self, model: str, source: dict[str, Any], inference: str | None = None) -> str:
        """Register (approved) another version of ``model`` that serves ``source``'s trained model, as a
        retraining would without training: its rollout starts at once. ``inference`` replaces its serving script.
        """
        if not self.packages(model):
            self.sagemaker.create_model_package_group(ModelPackageGroupName=model)
        spec = source["InferenceSpecification"]
        container = dict(spec["Containers"][0])
        if inference is not None:
            container["ModelDataUrl"] = self._with_inference(container["ModelDataUrl"], model, inference)
        return str(
            self.sagemaker.create_model_package(
                ModelPackageGroupName=model,
                InferenceSpecification={"Containers": [container]}
                | {k: spec[k] for k in ("SupportedContentTypes", "SupportedResponseMIMETypes")},
                ModelApprovalStatus="Approved",
                CustomerMetadataProperties={"shepherd:model": model},
            )["ModelPackageArn"]
        )

    def _with_inference(self, model_data_url: str, model: str, inference: str) -> str:
        """A copy of a packaged model.tar.gz whose code/inference.py is ``inference``."""
        bucket, key = model_data_url.removeprefix("s3://").split("/", 1)
        body = self.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        with tarfile.open(fileobj=io.BytesIO(body)) as archive:
            members = {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}
        (script,) = [name for name in members if name.removeprefix("./") == "code/inference.py"]
        members[script] = inference.encode()
        digest = hashlib.sha256(inference.encode()).hexdigest()[:12]
        copy = f"artifacts/{model}/serving-{digest}/model.tar.gz"
        self.s3.put_object(Bucket=bucket, Key=copy, Body=tar_gz(members))
        return f"s3://{bucket}/{copy}"

    def notifications(self, event: str, model: str, timeout: float = 10.0, match: Any = None) -> dict[str, Any]:
        def wanted(n: dict[str, Any]) -> bool:
            return n.get("event") == event and (match(n) if match else n.get("model") == model)

        def find() -> dict[str, Any] | None:
            for message in self.sqs.receive_message(QueueUrl=self.queue, MaxNumberOfMessages=10).get("Messages", []):
                self._seen.append(json.loads(message["Body"]))
                self.sqs.delete_message(QueueUrl=self.queue, ReceiptHandle=message["ReceiptHandle"])
            return next((n for n in self._seen if wanted(n)), None)

        return wait_for(find, timeout=timeout)

    def captured(self, endpoint: str, variant: str = "v1") -> int:
        """Requests captured so far for an endpoint's variant (its data capture's JSON lines)."""
        prefix = f"capture/{endpoint}/{endpoint}/{variant}/"
        listed = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        return sum(
            len(self.s3.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read().splitlines()) for o in listed
        )

    def packages(self, group: str) -> list[dict[str, Any]]:
        try:
            listed = self.sagemaker.list_model_packages(ModelPackageGroupName=group)["ModelPackageSummaryList"]
        except self.sagemaker.exceptions.ClientError:
            return []
        return [self.sagemaker.describe_model_package(ModelPackageName=p["ModelPackageArn"]) for p in listed]


def churn_config(model: str, *, approval: str = "manual", **changes: Any) -> dict[str, Any]:
    """The documented example config, for another model name, with some keys changed (dotted paths).

    Approval is manual unless a test needs the automatic rollout: an approved package deploys an
    endpoint (two worker processes), which tests of training and registry do not need. The monitor's
    schedule is weekly (a virtual week: not due in a session).
    """
    config = yaml.safe_load((EXAMPLE / "shepherd.yaml").read_text())
    config["registry"]["approval"] = approval
    config["registry"]["model_package_group"] = model
    config["endpoint"]["name"] = model
    # Registration schedules the model's monitor: rate(1 hour) would start a monitor run every wall minute for the
    # rest of the session (about 0.5 CPU-s each, issue 17); the monitor's tests trigger its schedule themselves.
    config["monitoring"]["schedule"] = "rate(7 days)"
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = config
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = value
    return config


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


class Traffic(traffic.Traffic):
    """The shared generator (localcloud/traffic.py) as rollout tests drive it, a context manager: the churn
    example's rows, malformed requests every n-th (not at random: the same error rate before a stage and in it),
    and InferenceIds only with ``feedback``."""

    def __init__(
        self,
        cloud: Any,
        endpoint: str,
        *,
        rate: float = 80.0,
        malformed: float = 0.05,
        target_model: str = "",
        before_each: Callable[[], None] | None = None,
        feedback: traffic.Feedback | None = None,
    ) -> None:
        frame = generate(400, seed=21)
        features = frame.drop(columns=["target"]).itertuples(index=False)
        rows = [
            (",".join(str(v) for v in row), int(label)) for row, label in zip(features, frame["target"], strict=True)
        ]
        super().__init__(
            cloud.client("sagemaker-runtime"),
            endpoint,
            rows,
            rate=rate,
            malformed=malformed,
            evenly=True,
            ids="traffic" if feedback is not None else "",
            target_model=target_model,
            before_each=before_each,
            feedback=feedback,
        )

    @property
    def ok(self) -> int:
        """Valid requests answered."""
        return self.answered - self.malformed_answered

    @property
    def variants(self) -> dict[str, int]:
        return dict(self.by_variant)


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


# ---------------------------------------------------------------- rollouts

# The judge's settings in rollout tests: a verdict never depends on how loaded the machine is. Every candidate
# that must be rolled back fails every request it serves (or is slower than the threshold on every one, or wrong
# on most), so it crosses the rollback boundary within a judged minute or two. A good candidate is the champion's
# model again (or one as good) and errs on exactly the malformed requests (Traffic): in shadow both variants fail
# the same ones, in full and the watch its rate is the baseline's; in A/B the router's draw decides which variant
# meets each, and alpha 1e-6 a metric makes a chance rollback a one-in-a-million event. delta 3 (rule out 4x the
# champion's rate) decides in a few judged minutes; anytime boundaries never leave a stage unable to promote.
JUDGE = {"alpha": 1e-6, "beta": 0.2, "delta": 3.0, "min_samples": 50, "anytime": True}


def rollout_config(
    model: str,
    *,
    shadow: bool = True,
    ab: bool = True,
    watch: bool = False,
    autoscaling: bool = False,
    kind: str = "realtime",
    replay: bool = False,
) -> dict[str, Any]:
    """The churn example for a rollout test, approved automatically: judged every virtual minute, each stage
    allowed 3 virtual hours (a loaded machine thins the traffic; the verdict, not the time, ends a stage). The
    watch, which only rolls back, lasts 20 virtual minutes: a candidate failing every request is caught within
    a few, and a good one's promotion stands at its end. Replay (its two transform jobs) only where a test asks: it
    replays 200 captured requests."""
    config = churn_config(model, approval="automatic")
    for gate in config["evaluation"]["gates"]:
        gate["must_beat_champion_by"] = None  # the datasets differ by seed; the thresholds still hold
    if not autoscaling:  # fixed capacity: the tests assert instance counts, and idle policies cost CPU per minute
        config["endpoint"]["autoscaling"] = {"enabled": False, "reason": "rollout tests assert fixed capacity"}
    if kind == "serverless":
        config["endpoint"] = {"name": model, "kind": kind, "serverless": {"memory_mb": 2048, "max_concurrency": 20}}
    elif kind != "realtime":
        config["endpoint"]["kind"] = kind
    config["rollout"] = {
        "judge_interval_minutes": 1,
        "replay": {"enabled": replay, "sample_size": 200},
        "shadow": {"enabled": shadow, "max_duration_minutes": 180},
        "ab": {"enabled": ab, "steps": [50], "max_duration_minutes": 180},
        "full": {"max_duration_minutes": 180},
        "post_promotion_watch": {"enabled": watch, "max_duration_minutes": 20},
        "judge": {"error_rate": dict(JUDGE)},
    }
    return config


def serving_script(replacement: str) -> str:
    """The example's serving script with predict_fn wrapped: ``replacement`` defines predict_fn(data, model)
    and calls the example's as _predict(data, model)."""
    return (EXAMPLE / "inference.py").read_text() + "\n\n_predict = predict_fn\n\n\n" + replacement


FAILING = serving_script(
    """def predict_fn(data, model):  # a candidate that fails every request it serves
    raise RuntimeError("injected fault")
"""
)


CRASHES_ON_SOME = serving_script(
    """def predict_fn(data, model):  # a candidate that fails on a feature value some real requests have
    import numpy as np

    if (np.asarray(data, dtype=float)[:, 3] >= 4).any():  # support_calls
        raise ValueError("support_calls above 3 is out of range")
    return _predict(data, model)
"""
)


# The Rollout state machine's paths (statemachines/rollout.asl.json), as `path` gives them.
FIRST_DEPLOYMENT = [
    "Defaults",
    "Continuing",
    "Prepare",
    "AlreadyChampion",
    "DeployFirst",
    "Promoted",
    "DescribePromotion",
    "NotifyPromoted",
    "Done",
]
STARTED = ["Defaults", "Continuing", "Prepare", "AlreadyChampion", "Start", "MoreStages"]
JUDGED = ["StageWait", "Judge", "Verdict"]  # one judge call
STAGE = ["EnterStage", "Entered", *JUDGED]  # a stage entered and judged until its verdict
PASSED = ["NextStage", "MoreStages"]  # its verdict was PROMOTE
PROMOTED = ["Finalize", "Promoted", "DescribePromotion", "NotifyPromoted", "Done"]
ROLLED_BACK = [
    "RollbackWeights",
    "RollbackConfig",
    "VerifyRollback",
    "RollbackOutcome",
    "DescribeRollback",
    "NotifyRolledBack",
    "RolledBack",
]
# replay's REJECT: the package Rejected, the endpoint untouched, the lock freed (docs/ROLLOUTS.md, "Replay")
REJECTED = ["Reject", "DescribeRejected", "NotifyRejected", "Rejected"]
# an INCONCLUSIVE verdict: the champion restored as for a rollback, the package kept for a person to decide
INCONCLUSIVE = [
    "Undecided",
    "RollbackWeights",
    "RollbackConfig",
    "VerifyRollback",
    "RollbackOutcome",
    "DescribeInconclusive",
    "NotifyInconclusive",
    "Inconclusive",
]


def stages_passed(count: int) -> list[str]:
    return (STAGE + PASSED) * count


def path(history: list[dict[str, Any]]) -> list[str]:
    """The states an execution entered, in order, each stage's judge calls that answered CONTINUE left out:
    the path it took, whatever the number of calls the verdict needed."""
    entered: list[str] = []
    for event in history:
        if event["type"].endswith("StateEntered"):
            name = event["stateEnteredEventDetails"]["name"]
            if name == JUDGED[0] and entered[-3:] == JUDGED:  # the last call answered CONTINUE
                del entered[-3:]
            entered.append(name)
    return entered
