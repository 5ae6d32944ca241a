"""Deploys a (SAM) CloudFormation template into the local cloud, resource by resource.

Every resource is created through the AWS API of the local endpoint, as CloudFormation
would; Lambda functions are registered with the local Lambda runtime. A resource type
that cannot be emulated stops the deploy before anything is created.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from localcloud.asl import AslError, check_definition
from localcloud.iam import LOG_DELIVERY_ACTIONS, Check
from localcloud.iam.authorizer import Authorizer
from localcloud.iam.principals import RoleNotAssumable
from localcloud.lambdas import FunctionSpec, LambdaRuntime
from localcloud.services import Clients, RoleSessions
from localcloud.template import ACCOUNT_ID, PARTITION, Evaluator, TemplateError, deployment_order, load_template

Handler = Callable[["Deployer", str, dict[str, Any]], tuple[str, dict[str, Any]]]
_HANDLERS: dict[str, Handler] = {}
# Accepted and recorded, not applied (docs/LOCAL_IAM.md).
_RECORDED_ONLY = {
    "AWS::SQS::QueuePolicy",
    "AWS::Lambda::EventInvokeConfig",
    "AWS::CloudWatch::Dashboard",
}


def handles(resource_type: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        _HANDLERS[resource_type] = fn
        return fn

    return register


def supported_types() -> set[str]:
    return set(_HANDLERS) | _RECORDED_ONLY


class DeployTarget(Clients, RoleSessions, Protocol):
    """What a deploy uses of the cloud (a LocalCloud is one): its API, the checks CloudFormation's own calls make
    (a role the service may assume, what that role may do), and the Lambda runtime with the layers deployed."""

    @property
    def authorizer(self) -> Authorizer: ...

    @property
    def lambdas(self) -> LambdaRuntime: ...

    @property
    def lambda_layers(self) -> dict[str, Path]: ...


class Deployer:
    def __init__(self, cloud: DeployTarget, stack_name: str) -> None:
        self.cloud = cloud
        self.stack_name = stack_name
        self.region = "us-east-1"
        self._clients: dict[str, Any] = {}
        self.evaluator: Evaluator
        self.recorded: dict[str, dict[str, Any]] = {}

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self.cloud.client(service)
        return self._clients[service]

    def arn(self, service: str, resource: str, region: bool = True) -> str:
        return f"arn:{PARTITION}:{service}:{self.region if region else ''}:{ACCOUNT_ID}:{resource}"

    def physical_name(self, logical_id: str, max_length: int = 64, lower: bool = False) -> str:
        name = f"{self.stack_name}-{logical_id}"[:max_length]
        return name.lower() if lower else name

    def deploy(self, path: Path, parameters: dict[str, str]) -> dict[str, str]:
        template = load_template(path, parameters, self.region, self.stack_name)
        self.evaluator = Evaluator(template, self.region, self.stack_name)
        resources = template.resources
        unsupported = [
            f"{lid} ({r.get('Type')})" for lid, r in resources.items() if r.get("Type") not in supported_types()
        ]
        if unsupported:
            raise TemplateError(f"{path}: resource type(s) the local cloud cannot emulate: {', '.join(unsupported)}")
        for logical_id in deployment_order(resources, path):
            resource = resources[logical_id]
            if not self.evaluator.included(resource):
                continue
            resource_type = resource["Type"]
            try:
                properties = self.evaluator.resolve(resource.get("Properties") or {})
            except TemplateError as exc:
                raise TemplateError(f"{logical_id} ({resource_type}): {exc}") from exc
            handler = _HANDLERS.get(resource_type)
            attributes: dict[str, Any]
            if handler is None:
                physical_id, attributes = self.physical_name(logical_id), {}
                self.recorded[logical_id] = {"Type": resource_type, "Properties": properties}
            else:
                try:
                    physical_id, attributes = handler(self, logical_id, properties)
                except TemplateError:
                    raise
                except Exception as exc:
                    raise TemplateError(f"{path}: {logical_id} ({resource_type}) failed to deploy: {exc}") from exc
            self.evaluator.physical_ids[logical_id] = physical_id
            self.evaluator.attributes[logical_id] = attributes
        outputs: dict[str, str] = {}
        for name, output in (template.body.get("Outputs") or {}).items():
            if "Condition" in output and not self.evaluator.condition(output["Condition"]):
                continue
            value = self.evaluator.resolve(output["Value"])
            outputs[name] = ",".join(value) if isinstance(value, list) else str(value)
        return outputs

    def local_path(self, location: dict[str, Any], logical_id: str, what: str) -> Path:
        path = self.evaluator.template.artifacts.local_path(location)
        if path is None:
            raise TemplateError(
                f"{logical_id}: {what} {location} is not a local path; the local cloud deploys local code"
            )
        return path


def _tags(properties: dict[str, Any]) -> list[dict[str, str]]:
    tags = properties.get("Tags") or []
    if isinstance(tags, dict):
        return [{"Key": k, "Value": str(v)} for k, v in tags.items()]
    return [{"Key": t["Key"], "Value": str(t["Value"])} for t in tags]


def _lifecycle_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """CloudFormation's lifecycle rule shape, in the S3 API's."""
    out: dict[str, Any] = {
        "ID": rule.get("Id", "rule"),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        out["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    noncurrent = rule.get("NoncurrentVersionExpiration") or {}
    if "NoncurrentDays" in noncurrent:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(noncurrent["NoncurrentDays"])}
    if "NoncurrentVersionExpirationInDays" in rule:
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["NoncurrentVersionExpirationInDays"])}
    return out


@handles("AWS::S3::Bucket")
def _bucket(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("BucketName") or re.sub(r"[^a-z0-9-]", "-", d.physical_name(logical_id, 63, lower=True))
    s3 = d.client("s3")
    s3.create_bucket(Bucket=name)
    if (p.get("VersioningConfiguration") or {}).get("Status"):
        s3.put_bucket_versioning(
            Bucket=name, VersioningConfiguration={"Status": p["VersioningConfiguration"]["Status"]}
        )
    encryption = (p.get("BucketEncryption") or {}).get("ServerSideEncryptionConfiguration")
    if encryption:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": r.get("ServerSideEncryptionByDefault", {}),
                **({"BucketKeyEnabled": r["BucketKeyEnabled"] in (True, "true")} if "BucketKeyEnabled" in r else {}),
            }
            for r in encryption
        ]
        s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": rules})
    if p.get("PublicAccessBlockConfiguration"):
        s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=p["PublicAccessBlockConfiguration"])
    notification = p.get("NotificationConfiguration") or {}
    if (notification.get("EventBridgeConfiguration") or {}).get("EventBridgeEnabled") in (True, "true", "True"):
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}}
        )
    lifecycle = (p.get("LifecycleConfiguration") or {}).get("Rules")
    if lifecycle:
        s3.put_bucket_lifecycle_configuration(
            Bucket=name, LifecycleConfiguration={"Rules": [_lifecycle_rule(r) for r in lifecycle]}
        )
    arn = f"arn:{PARTITION}:s3:::{name}"
    return name, {
        "Arn": arn,
        "DomainName": f"{name}.s3.amazonaws.com",
        "RegionalDomainName": f"{name}.s3.{d.region}.amazonaws.com",
    }


@handles("AWS::DynamoDB::Table")
def _table(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("TableName") or d.physical_name(logical_id, 255)
    args: dict[str, Any] = {
        "TableName": name,
        "KeySchema": p["KeySchema"],
        "AttributeDefinitions": p["AttributeDefinitions"],
    }
    args["BillingMode"] = p.get("BillingMode", "PROVISIONED")
    if args["BillingMode"] == "PROVISIONED":
        args["ProvisionedThroughput"] = p.get("ProvisionedThroughput") or {
            "ReadCapacityUnits": 5,
            "WriteCapacityUnits": 5,
        }
    for key in ("GlobalSecondaryIndexes", "LocalSecondaryIndexes", "StreamSpecification", "SSESpecification"):
        if p.get(key):
            args[key] = p[key]
    if "SSESpecification" in args:
        # CloudFormation says SSEEnabled where the DynamoDB API says Enabled.
        sse = dict(args["SSESpecification"])
        if "SSEEnabled" in sse:
            sse["Enabled"] = sse.pop("SSEEnabled") in (True, "true")
        args["SSESpecification"] = sse
    ddb = d.client("dynamodb")
    table = ddb.create_table(**args)["TableDescription"]
    ttl = p.get("TimeToLiveSpecification")
    if ttl and ttl.get("Enabled") in (True, "true"):
        ddb.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl["AttributeName"]}
        )
    pitr = p.get("PointInTimeRecoverySpecification")
    if pitr and pitr.get("PointInTimeRecoveryEnabled") in (True, "true"):
        ddb.update_continuous_backups(
            TableName=name, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
        )
    return name, {"Arn": table["TableArn"], "StreamArn": table.get("LatestStreamArn", "")}


@handles("AWS::SNS::Topic")
def _topic(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("TopicName") or d.physical_name(logical_id, 256)
    attributes = {"KmsMasterKeyId": p["KmsMasterKeyId"]} if p.get("KmsMasterKeyId") else {}
    arn = d.client("sns").create_topic(Name=name, Attributes=attributes)["TopicArn"]
    for subscription in p.get("Subscription") or []:
        d.client("sns").subscribe(TopicArn=arn, Protocol=subscription["Protocol"], Endpoint=subscription["Endpoint"])
    return arn, {"TopicArn": arn, "TopicName": name}


@handles("AWS::SNS::Subscription")
def _subscription(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    arn = d.client("sns").subscribe(
        TopicArn=p["TopicArn"], Protocol=p["Protocol"], Endpoint=p["Endpoint"], ReturnSubscriptionArn=True
    )["SubscriptionArn"]
    return arn, {}


@handles("AWS::SQS::Queue")
def _queue(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("QueueName") or d.physical_name(logical_id, 80)
    attributes = {
        k: (json.dumps(v) if isinstance(v, dict) else str(v)) for k, v in p.items() if k not in ("QueueName", "Tags")
    }
    url = d.client("sqs").create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    arn = d.arn("sqs", name)
    return url, {"Arn": arn, "QueueName": name, "QueueUrl": url}


@handles("AWS::SSM::Parameter")
def _parameter(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("Name") or f"/{d.stack_name}/{logical_id}"
    d.client("ssm").put_parameter(Name=name, Value=str(p["Value"]), Type=p.get("Type", "String"), Overwrite=True)
    return name, {"Type": p.get("Type", "String"), "Value": str(p["Value"])}


@handles("AWS::KMS::Key")
def _kms_key(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    args: dict[str, Any] = {"Description": p.get("Description", logical_id)}
    if p.get("KeyPolicy"):
        args["Policy"] = json.dumps(p["KeyPolicy"])
    key = d.client("kms").create_key(**args)["KeyMetadata"]
    if p.get("EnableKeyRotation") in (True, "true"):
        d.client("kms").enable_key_rotation(KeyId=key["KeyId"])
    return key["KeyId"], {"Arn": key["Arn"], "KeyId": key["KeyId"]}


@handles("AWS::IAM::Role")
def _role(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("RoleName") or d.physical_name(logical_id, 64)
    iam = d.client("iam")
    role = iam.create_role(
        RoleName=name, Path=p.get("Path", "/"), AssumeRolePolicyDocument=json.dumps(p["AssumeRolePolicyDocument"])
    )["Role"]
    for policy in p.get("Policies") or []:
        # IAM reads a document without Version as the 2008 language; moto refuses it, so name it.
        document = {"Version": "2012-10-17", **policy["PolicyDocument"]}
        iam.put_role_policy(RoleName=name, PolicyName=policy["PolicyName"], PolicyDocument=json.dumps(document))
    for policy_arn in p.get("ManagedPolicyArns") or []:
        # IAM refuses a policy it does not have ("Policy ... does not exist or is not attachable"), as moto does.
        iam.attach_role_policy(RoleName=name, PolicyArn=str(policy_arn))
    d.recorded[logical_id] = {"Type": "AWS::IAM::Role", "ManagedPolicyArns": p.get("ManagedPolicyArns") or []}
    return name, {"Arn": role["Arn"], "RoleId": role["RoleId"]}


@handles("AWS::S3::BucketPolicy")
def _bucket_policy(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    d.client("s3").put_bucket_policy(Bucket=str(p["Bucket"]), Policy=json.dumps(p["PolicyDocument"]))
    return f"{p['Bucket']}-policy", {}


@handles("AWS::IAM::Policy")
def _policy(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    document = json.dumps({"Version": "2012-10-17", **p["PolicyDocument"]})
    for role_name in p.get("Roles") or []:
        d.client("iam").put_role_policy(RoleName=str(role_name), PolicyName=p["PolicyName"], PolicyDocument=document)
    return str(p["PolicyName"]), {}


@handles("AWS::IAM::ManagedPolicy")
def _managed_policy(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    iam = d.client("iam")
    name = p.get("ManagedPolicyName") or d.physical_name(logical_id, 128)
    document = json.dumps({"Version": "2012-10-17", **p["PolicyDocument"]})
    arn = iam.create_policy(PolicyName=name, Path=p.get("Path", "/"), PolicyDocument=document)["Policy"]["Arn"]
    for role_name in p.get("Roles") or []:
        iam.attach_role_policy(RoleName=str(role_name), PolicyArn=arn)
    return arn, {"PolicyArn": arn}


@handles("AWS::SNS::TopicPolicy")
def _topic_policy(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    for topic in p.get("Topics") or []:
        d.client("sns").set_topic_attributes(
            TopicArn=str(topic), AttributeName="Policy", AttributeValue=json.dumps(p["PolicyDocument"])
        )
    return d.physical_name(logical_id), {}


@handles("AWS::Lambda::Permission")
def _permission(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A statement of the function's resource policy: what EventBridge needs to invoke it (docs/LOCAL_IAM.md)."""
    args = {k: str(p[k]) for k in ("SourceArn", "SourceAccount", "PrincipalOrgID") if p.get(k)}
    d.client("lambda").add_permission(
        FunctionName=str(p["FunctionName"]),
        StatementId=logical_id,
        Action=str(p["Action"]),
        Principal=str(p["Principal"]),
        **args,
    )
    return logical_id, {}


@handles("AWS::KMS::Alias")
def _kms_alias(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    d.client("kms").create_alias(AliasName=str(p["AliasName"]), TargetKeyId=str(p["TargetKeyId"]))
    return str(p["AliasName"]), {}


@handles("AWS::Logs::LogGroup")
def _log_group(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("LogGroupName") or d.physical_name(logical_id, 512)
    logs = d.client("logs")
    # With KmsKeyId, CloudWatch Logs refuses a key it may not use for this group (localcloud.iam.logs_checks).
    key = {"kmsKeyId": str(p["KmsKeyId"])} if p.get("KmsKeyId") else {}
    logs.create_log_group(logGroupName=name, **key)
    if p.get("RetentionInDays"):
        logs.put_retention_policy(logGroupName=name, retentionInDays=int(p["RetentionInDays"]))
    return name, {"Arn": d.arn("logs", f"log-group:{name}:*")}


@handles("AWS::Lambda::LayerVersion")
def _layer(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    path = d.local_path(p["Content"], logical_id, "ContentUri")
    name = p.get("LayerName") or logical_id
    arn = d.arn("lambda", f"layer:{name}:1")
    d.cloud.lambda_layers[arn] = path
    return arn, {}


@handles("AWS::Lambda::Function")
def _function(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("FunctionName") or d.physical_name(logical_id, 64)
    code_dir = d.local_path(p["Code"], logical_id, "CodeUri")
    layers = []
    for layer_arn in p.get("Layers") or []:
        if layer_arn not in d.cloud.lambda_layers:
            raise TemplateError(f"{logical_id}: layer {layer_arn} is not defined in this template")
        layers.append(d.cloud.lambda_layers[layer_arn])
    runtime = p.get("Runtime", "")
    if not str(runtime).startswith("python"):
        raise TemplateError(f"{logical_id} (AWS::Lambda::Function): runtime {runtime!r} is not supported locally")
    arn = d.arn("lambda", f"function:{name}")
    spec = FunctionSpec(
        name=name,
        arn=arn,
        handler=p["Handler"],
        runtime=runtime,
        code_dir=code_dir,
        layer_dirs=tuple(layers),
        environment={k: str(v) for k, v in ((p.get("Environment") or {}).get("Variables") or {}).items()},
        timeout_seconds=int(p.get("Timeout", 3)),
        memory_mb=int(p.get("MemorySize", 128)),
        log_group=(p.get("LoggingConfig") or {}).get("LogGroup", ""),
        role_arn=str(p["Role"]),
    )
    # Also known to moto, so GetFunction and ListFunctions answer; Invoke is ours.
    stub = io.BytesIO()
    with zipfile.ZipFile(stub, "w") as archive:
        archive.writestr("README", f"local code: {code_dir}\n")
    d.client("lambda").create_function(
        FunctionName=name,
        Runtime=runtime,
        Role=p["Role"],
        Handler=p["Handler"],
        Code={"ZipFile": stub.getvalue()},
        Timeout=spec.timeout_seconds,
        MemorySize=spec.memory_mb,
        Environment={"Variables": spec.environment},
        Architectures=p.get("Architectures") or ["x86_64"],
    )
    try:
        d.cloud.lambdas.register(spec)
    except RoleNotAssumable as exc:
        # CreateFunction's InvalidParameterValueException (Lambda API reference, CreateFunction: Role).
        raise TemplateError(
            f"{logical_id} (AWS::Lambda::Function): The role defined for the function cannot be assumed by Lambda. "
            f"({exc})"
        ) from exc
    return name, {"Arn": arn}


def _definition(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, Path | None]:
    if "DefinitionS3Location" in p:
        path = d.local_path(p["DefinitionS3Location"], logical_id, "DefinitionUri")
        try:
            text = path.read_text()
        except OSError as exc:
            raise TemplateError(f"{logical_id}: cannot read definition {path}: {exc}") from exc
        return text, path
    if "DefinitionString" in p:
        return str(p["DefinitionString"]), None
    if "Definition" in p:
        return json.dumps(p["Definition"]), None
    raise TemplateError(f"{logical_id} (AWS::StepFunctions::StateMachine): no definition")


def _check_states_role(d: Deployer, logical_id: str, p: dict[str, Any]) -> None:
    """What CreateStateMachine checks of its role: that Step Functions may assume it, and with logging on, that it
    may deliver logs ("Logging using CloudWatch Logs", step-functions/latest/dg/cw-logs.html)."""
    try:
        credentials = d.cloud.role_credentials(str(p["RoleArn"]), "states.amazonaws.com", "shepherd-states")
    except RoleNotAssumable as exc:
        raise TemplateError(
            f"{logical_id} (AWS::StepFunctions::StateMachine): Neither the global service principal "
            f"states.amazonaws.com, nor the regional one is authorized to assume the provided role. ({exc})"
        ) from exc
    if ((p.get("LoggingConfiguration") or {}).get("Level") or "OFF") == "OFF":
        return
    checks = [Check(action, "*") for action in LOG_DELIVERY_ACTIONS]
    refusal = d.cloud.authorizer.authorize(
        credentials.principal, checks, d.region, service="stepfunctions", operation="CreateStateMachine"
    )
    if refusal is not None:
        raise TemplateError(
            f"{logical_id} (AWS::StepFunctions::StateMachine): The state machine IAM Role is not authorized to "
            f"access the Log Destination ({refusal.message})"
        )


@handles("AWS::StepFunctions::StateMachine")
def _state_machine(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    text, path = _definition(d, logical_id, p)
    for key, value in (p.get("DefinitionSubstitutions") or {}).items():
        text = text.replace("${" + key + "}", str(value))
    where = f"{logical_id} ({path or 'inline definition'})"
    try:
        check_definition(text)
    except AslError as exc:
        raise TemplateError(f"{where}: not valid ASL: {exc}") from exc
    _check_states_role(d, logical_id, p)
    name = p.get("StateMachineName") or d.physical_name(logical_id, 80)
    args: dict[str, Any] = {
        "name": name,
        "definition": text,
        "roleArn": p["RoleArn"],
        "type": p.get("StateMachineType", "STANDARD"),
    }
    if _tags(p):
        args["tags"] = [{"key": t["Key"], "value": t["Value"]} for t in _tags(p)]
    arn = d.client("stepfunctions").create_state_machine(**args)["stateMachineArn"]
    return arn, {"Arn": arn, "Name": name}


@handles("AWS::Events::Rule")
def _rule(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("Name") or d.physical_name(logical_id, 64)
    args: dict[str, Any] = {"Name": name, "State": p.get("State", "ENABLED")}
    if p.get("EventPattern"):
        pattern = p["EventPattern"]
        args["EventPattern"] = pattern if isinstance(pattern, str) else json.dumps(pattern)
    if p.get("ScheduleExpression"):
        args["ScheduleExpression"] = p["ScheduleExpression"]
    if p.get("EventBusName"):
        args["EventBusName"] = p["EventBusName"]
    events = d.client("events")
    arn = events.put_rule(**args)["RuleArn"]
    targets = []
    for target in p.get("Targets") or []:
        targets.append(
            {
                k: v
                for k, v in target.items()
                if k
                in ("Id", "Arn", "RoleArn", "Input", "InputPath", "InputTransformer", "RetryPolicy", "DeadLetterConfig")
            }
        )
    if targets:
        bus = {"EventBusName": p["EventBusName"]} if p.get("EventBusName") else {}
        events.put_targets(Rule=name, Targets=targets, **bus)
    return name, {"Arn": arn}


@handles("AWS::Scheduler::Schedule")
def _schedule(d: Deployer, logical_id: str, p: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    name = p.get("Name") or d.physical_name(logical_id, 64)
    target = {k: v for k, v in p["Target"].items() if k in ("Arn", "RoleArn", "Input", "RetryPolicy")}
    d.client("scheduler").create_schedule(
        Name=name,
        ScheduleExpression=p["ScheduleExpression"],
        FlexibleTimeWindow=p["FlexibleTimeWindow"],
        Target=target,
        State=p.get("State", "ENABLED"),
    )
    return name, {"Arn": d.arn("scheduler", f"schedule/default/{name}")}
