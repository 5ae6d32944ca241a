"""The monitor's adapters: SageMaker's endpoint and packages, CloudWatch metrics, ModelLifecycle, the schedules."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from shepherd.aws import sagemaker
from shepherd.aws.clients import client
from shepherd.aws.errors import mapped
from shepherd.aws.stepfunctions import start_once
from shepherd.errors import Conflict, NotFound
from shepherd.monitor.layout import REPORT_TAG

PUT_BATCH = 20  # metrics per PutMetricData request: the long-standing limit, safe in every partition
# CloudWatch dimension and metric names: at most 255 characters (PutMetricData's API reference).
NAME_MAX = 255


class SageMakerModels:
    """Implements shepherd.monitor.ports.Models.

    Calls through the module, not imported names: tools/check_iam.py then counts only what the monitor calls."""

    def describe_endpoint(self, name: str) -> dict[str, Any] | None:
        return sagemaker.describe_endpoint(name)

    def describe_package(self, arn: str) -> dict[str, Any]:
        with mapped(f"describing {arn}"):
            return dict(client("sagemaker").describe_model_package(ModelPackageName=arn))

    def latest_approved_package(self, group: str) -> dict[str, Any] | None:
        return sagemaker.latest_approved_package(group)


class TaggedReports:
    """Implements shepherd.monitor.ports.Reports: JSON written with REPORT_TAG (needs s3:PutObjectTagging too)."""

    def write(self, bucket: str, key: str, data: bytes) -> None:
        with mapped(f"writing s3://{bucket}/{key}"):
            client("s3").put_object(
                Bucket=bucket, Key=key, Body=data, ContentType="application/json", Tagging=urlencode([REPORT_TAG])
            )


def newest_package_version(group: str) -> int:
    """The version of the group's newest package, any status; 0 for a group with none (or no group yet)."""
    try:
        with mapped(f"listing model packages of {group}"):
            listed = client("sagemaker").list_model_packages(
                ModelPackageGroupName=group, SortBy="CreationTime", SortOrder="Descending", MaxResults=1
            )["ModelPackageSummaryList"]
    except NotFound:
        return 0
    if not listed:
        return 0
    found = re.search(r"/(\d+)$", str(listed[0]["ModelPackageArn"]))
    return int(found.group(1)) if found else int(listed[0].get("ModelPackageVersion") or 0)


class CloudWatchMetrics:
    """Implements shepherd.monitor.ports.Metrics."""

    def put(self, namespace: str, dimensions: Mapping[str, str], values: Mapping[str, float], at: datetime) -> None:
        data = [
            {
                "MetricName": name[:NAME_MAX],
                "Dimensions": [{"Name": k, "Value": v[:NAME_MAX]} for k, v in dimensions.items()],
                "Timestamp": at,
                "Value": float(value),
                "Unit": "None",
            }
            for name, value in sorted(values.items())
        ]
        for start in range(0, len(data), PUT_BATCH):
            with mapped(f"publishing {namespace} metrics"):
                client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data[start : start + PUT_BATCH])


class StepFunctionsLifecycle:
    """Implements shepherd.monitor.ports.Lifecycle on the ModelLifecycle state machine."""

    def __init__(self, state_machine_arn: str) -> None:
        self.state_machine_arn = state_machine_arn

    def start(self, name: str, payload: dict[str, Any]) -> bool:
        with mapped(f"starting {name}"):
            return start_once(client("stepfunctions"), self.state_machine_arn, name, payload)


class MonitorSchedules:
    """Implements shepherd.monitor.ports.Schedules: EventBridge Scheduler schedules that start the monitor."""

    def __init__(self, state_machine_arn: str, role_arn: str) -> None:
        self.state_machine_arn = state_machine_arn
        self.role_arn = role_arn

    def upsert(self, name: str, expression: str, target_input: dict[str, Any]) -> None:
        request = {
            "Name": name,
            "ScheduleExpression": expression,
            "ScheduleExpressionTimezone": "UTC",
            "FlexibleTimeWindow": {"Mode": "OFF"},
            "State": "ENABLED",
            "Description": "Shepherd: starts the model's monitor",
            "Target": {
                "Arn": self.state_machine_arn,
                "RoleArn": self.role_arn,
                "Input": json.dumps(target_input),
                "RetryPolicy": {"MaximumEventAgeInSeconds": 3600, "MaximumRetryAttempts": 3},
            },
        }
        try:
            with mapped(f"creating schedule {name}"):
                client("scheduler").create_schedule(**request)
        except Conflict:  # it exists: UpdateSchedule replaces every setting
            with mapped(f"updating schedule {name}"):
                client("scheduler").update_schedule(**request)

    def delete(self, name: str) -> bool:
        try:
            with mapped(f"deleting schedule {name}"):
                client("scheduler").delete_schedule(Name=name)
        except NotFound:
            return False
        return True
