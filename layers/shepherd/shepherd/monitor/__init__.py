"""Shepherd's Model Monitor analyzer: profiles data and checks it against a baseline in Model Monitor's file formats.

Model Monitor is closed to new customers; its documented files (statistics.json, constraints.json,
constraint_violations.json) and CloudWatch metric names stay the contract.
"""

from shepherd.monitor.constraints import check, suggest_constraints
from shepherd.monitor.dataset import Dataset, from_capture, read_csv, read_jsonl
from shepherd.monitor.metrics import feature_data_statistics, feature_metrics
from shepherd.monitor.statistics import merge, profile

__all__ = [
    "Dataset",
    "check",
    "feature_data_statistics",
    "feature_metrics",
    "from_capture",
    "merge",
    "profile",
    "read_csv",
    "read_jsonl",
    "suggest_constraints",
]
