"""Benchmark of the local cloud's IAM enforcement: what authorizing a request costs.

A report, not a test: it prints, per call, the median round trip of the same request signed with outside keys
(passed through untouched: the baseline) and with a role session (described, evaluated against the role's
policies and the bucket policy, logged), interleaved in rounds so that machine load hits both alike, and the ratio.

    .venv/bin/python bench/bench_iam.py [--calls N] [--rounds R]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from localcloud.server import LocalCloud

ROLE = "bench-iam"
BUCKET = "bench-iam-bucket"


def _role(cloud: LocalCloud) -> Any:
    iam = cloud.client("iam")
    trust = {
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]
    }
    iam.create_role(RoleName=ROLE, AssumeRolePolicyDocument=json.dumps(trust))
    statements = [  # the shape of the template's roles: several scoped statements, one with a condition
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": f"arn:aws:s3:::{BUCKET}/models/*"},
        {"Effect": "Allow", "Action": ["s3:PutObject"], "Resource": f"arn:aws:s3:::{BUCKET}/artifacts/*"},
        {
            "Effect": "Allow",
            "Action": ["s3:ListBucket"],
            "Resource": f"arn:aws:s3:::{BUCKET}",
            "Condition": {"StringLike": {"s3:prefix": ["models/*"]}},
        },
        {"Effect": "Allow", "Action": ["dynamodb:GetItem", "dynamodb:PutItem"], "Resource": "*"},
    ]
    document = {"Version": "2012-10-17", "Statement": statements}
    iam.put_role_policy(RoleName=ROLE, PolicyName="bench", PolicyDocument=json.dumps(document))
    return cloud.role_credentials(f"arn:aws:iam::123456789012:role/{ROLE}", "lambda.amazonaws.com", "bench")


def _median_ms(call: Callable[[], object], calls: int) -> float:
    times = []
    for _ in range(calls):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="calls per round and kind")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cloud = LocalCloud(port=0, state_dir=Path(tmp)).start()
        try:
            credentials = _role(cloud)
            s3 = cloud.client("s3")
            s3.create_bucket(Bucket=BUCKET)
            deny_http = {  # the template's bucket policy statement: evaluated for every role request
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            }
            s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(deny_http))
            s3.put_object(Bucket=BUCKET, Key="models/m.tar.gz", Body=b"x" * 1024)
            role_s3 = cloud.role_client("s3", credentials)
            kinds = {"outside keys (baseline)": s3, "role session": role_s3}
            calls = {
                "s3 GetObject": lambda c: c.get_object(Bucket=BUCKET, Key="models/m.tar.gz")["Body"].read(),
                "s3 ListObjectsV2": lambda c: c.list_objects_v2(Bucket=BUCKET, Prefix="models/"),
            }
            for name, call in calls.items():
                medians: dict[str, list[float]] = {kind: [] for kind in kinds}
                for _ in range(args.rounds):
                    for kind, client in kinds.items():
                        medians[kind].append(_median_ms(lambda c=client, f=call: f(c), args.calls))
                base = statistics.median(medians["outside keys (baseline)"])
                role = statistics.median(medians["role session"])
                print(
                    f"{name}: baseline {base:.2f} ms, role {role:.2f} ms, ratio {role / base:.2f} "
                    f"(median of {args.rounds} rounds x {args.calls} calls)"
                )
        finally:
            cloud.stop()


if __name__ == "__main__":
    main()
