"""EventBridge's delivery to targets: what a target receives, whether EventBridge may deliver, and the delivery.

Rules (localcloud.moto.events) and schedules (localcloud.scheduler) deliver through a cloud's EventDelivery to its
state machines, Lambda functions and queues.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from localcloud.iam import Check
from localcloud.iam.authorizer import Authorizer
from localcloud.iam.principals import RoleNotAssumable
from localcloud.lambdas import LambdaRuntime
from localcloud.moto import sqs, stepfunctions
from localcloud.services import RoleSessions

log = logging.getLogger("shepherd.local.events")


def _render_input_template(template: str, paths_map: dict[str, str], event: dict[str, Any]) -> Any:
    """InputTransformer: <name> inside a JSON string is raw text, elsewhere a JSON value."""
    from jsonpath_ng.ext import parse

    values: dict[str, Any] = {}
    for name, path in (paths_map or {}).items():
        found = parse(path).find(event)
        values[name] = found[0].value if found else None
    values.setdefault("aws.events.event.json", event)
    out: list[str] = []
    i, in_string = 0, False
    while i < len(template):
        ch = template[i]
        if ch == "\\" and in_string:
            out.append(template[i : i + 2])
            i += 2
            continue
        if ch == '"':
            in_string = not in_string
        if ch == "<":
            end = template.find(">", i)
            placeholder = template[i + 1 : end] if end > 0 else None
            if placeholder in values:
                value = values[placeholder]
                if in_string:
                    out.append(json.dumps(value if isinstance(value, str) else json.dumps(value))[1:-1])
                else:
                    out.append(json.dumps(value))
                i = end + 1
                continue
        out.append(ch)
        i += 1
    text = "".join(out)
    try:
        return json.loads(text)
    except ValueError:
        return text


def target_input(target: dict[str, Any], event: dict[str, Any]) -> Any:
    """What a rule target receives: Input, InputPath, InputTransformer, or the event."""
    if "Input" in target:
        return json.loads(target["Input"])
    if "InputPath" in target:
        from jsonpath_ng.ext import parse

        found = parse(target["InputPath"]).find(event)
        return found[0].value if found else None
    transformer = target.get("InputTransformer")
    if transformer:
        return _render_input_template(transformer.get("InputTemplate", ""), transformer.get("InputPathsMap", {}), event)
    return event


class EventDelivery:
    """One cloud's EventBridge delivery: its IAM decides, its functions run; once closed (the cloud stopped),
    nothing is delivered."""

    def __init__(self, authorizer: Authorizer, sessions: RoleSessions, lambdas: LambdaRuntime) -> None:
        self.authorizer = authorizer
        self.sessions = sessions
        self.lambdas = lambdas
        self._closed = False

    def close(self) -> None:
        self._closed = True

    def _allowed(self, target_arn: str, target: dict[str, Any], source_arn: str) -> bool:
        """What EventBridge needs to deliver ("Using resource-based policies for Amazon EventBridge", "Using IAM
        roles for Amazon EventBridge targets"): a Lambda function's resource policy allowing events.amazonaws.com
        from the rule, or, for a state machine, a target RoleArn that EventBridge may assume and that may start it.
        A refused delivery is dropped, as AWS counts it in FailedInvocations, and logged as a refusal."""
        service, account = target_arn.split(":")[2], target_arn.split(":")[4]
        if service == "lambda":
            name = target_arn.split(":")[6]
            function = f"arn:aws:lambda:{target_arn.split(':')[3]}:{account}:function:{name}"
            check = Check("lambda:InvokeFunction", function)
            refusal = self.authorizer.authorize_service("events.amazonaws.com", check, source_arn, account)
        elif service == "states":
            role = target.get("RoleArn")
            if not role:
                log.warning("%s: target %s has no RoleArn; EventBridge cannot start it", source_arn, target_arn)
                return False
            try:
                credentials = self.sessions.role_credentials(str(role), "events.amazonaws.com", "events")
            except RoleNotAssumable as exc:
                log.warning("%s: %s", source_arn, exc)
                return False
            checks = [Check("states:StartExecution", target_arn)]
            refusal = self.authorizer.authorize(credentials.principal, checks, "us-east-1", service="events")
        else:
            return True
        if refusal is not None:
            log.warning("%s: delivery to %s refused: %s", source_arn, target_arn, refusal.message)
        return refusal is None

    def deliver(
        self, target_arn: str, payload: Any, target: dict[str, Any] | None = None, source_arn: str | None = None
    ) -> None:
        """Start a state machine, invoke a Lambda function asynchronously or send to a queue, as EventBridge does.

        With ``source_arn`` (the rule), EventBridge's own permissions are checked first (``_allowed``).
        """
        if self._closed:
            raise RuntimeError("no local cloud is running")
        if source_arn is not None and not self._allowed(target_arn, target or {}, source_arn):
            return
        body = json.dumps(payload, default=str)
        service = target_arn.split(":")[2]
        if service == "sqs":
            group = ((target or {}).get("SqsParameters") or {}).get("MessageGroupId")
            text = payload if isinstance(payload, str) else body  # a non-JSON InputTemplate arrives as text
            sqs.send_message(target_arn, text, group)
        elif service == "states":
            stepfunctions.start_execution(target_arn, body)
        elif service == "lambda":
            self.lambdas.invoke(target_arn, body.encode(), "Event")
        else:
            raise NotImplementedError(f"target {target_arn}")

    def deliver_to_target(self, target: dict[str, Any], event: dict[str, Any], rule_arn: str) -> None:
        """A rule's delivery of an event to one of its targets (localcloud.moto.events.Deliver)."""
        self.deliver(target["Arn"], target_input(target, event), target, rule_arn)
