"""Cold start of every Lambda function in a fresh process, against a naive baseline (issue 5).

Target: every function at most 0.6x the naive baseline; writes bench/results/coldstart.json. A report, not
a test: always exits 0. How it is built: docs/BENCHMARKS.md, "coldstart.py".
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EVENTS = ROOT / "events"
RESULTS = ROOT / "bench" / "results" / "coldstart.json"
EXAMPLE = ROOT / "examples" / "churn"
TARGET_RATIO = 0.6
NAIVE = "_naive_baseline"
MODEL = "churn"
DATASET = "coldstart"
BATCH_KEY = f"batch/{MODEL}/input/coldstart.csv"
JUDGED_MINUTES = 10  # how far into its stage JudgeStage's sample call is

# The sample events name a deployment with these placeholders; the run substitutes the deployed values.
PLACEHOLDERS = {
    "bucket": "shepherd-data-123456789012",
    "role": "arn:aws:iam::123456789012:role/shepherd-sagemaker-execution-role",
    "key": "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000",
}
_PASSED_THROUGH_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")

# Runs in a fresh interpreter. Everything before t0 is the bench's own plumbing (the event is parsed
# first); the figure is t0 -> the handler's return: import of the handler module (with its layer)
# plus the first invocation.
CHILD = r"""
import json, os, sys, time, uuid
mode, event_path, out_path = sys.argv[1], sys.argv[2], sys.argv[3]
with open(event_path) as f:
    event = json.load(f)

class Context:
    def __init__(self):
        self.function_name = os.environ["AWS_LAMBDA_FUNCTION_NAME"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = os.environ["COLDSTART_FUNCTION_ARN"]
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = "coldstart"
        self.identity = None
        self.client_context = None
        self._deadline = time.time() + 60
    def get_remaining_time_in_millis(self):
        return int(max(0, self._deadline - time.time()) * 1000)

context = Context()
outcome, detail = "ok", ""
t0, c0 = time.perf_counter(), time.process_time()
t1 = None
try:
    if mode == "naive":
        import boto3, pydantic
        from aws_lambda_powertools import Logger, Metrics, Tracer
        logger, tracer, metrics = Logger(), Tracer(), Metrics()
        clients = [boto3.client(s) for s in ("s3", "sagemaker", "stepfunctions", "dynamodb", "sns")]

        class Answer(pydantic.BaseModel):
            ok: bool

        def handler(event, context):
            return Answer(ok=True).model_dump()
        t1 = time.perf_counter()
        result = handler(event, context)
    else:
        import app
        t1 = time.perf_counter()
        result = app.handler(event, context)
except BaseException as exc:
    outcome, detail = type(exc).__name__, str(exc)[:300]
    result = None
t2, c2 = time.perf_counter(), time.process_time()
with open(out_path, "w") as f:
    json.dump({
        "total_ms": (t2 - t0) * 1000,
        "cpu_ms": (c2 - c0) * 1000,
        "import_ms": ((t1 or t2) - t0) * 1000,
        "outcome": outcome,
        "detail": detail,
        "result": result,
        "modules": len(sys.modules),
    }, f, default=str)
"""


class _AnyTagLoader(yaml.SafeLoader):
    """Reads a CloudFormation template, keeping intrinsic functions as plain values."""


def _any_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    return loader.construct_mapping(node)


_AnyTagLoader.add_multi_constructor("!", _any_tag)


def template_functions(template: Path) -> dict[str, dict[str, Any]]:
    """{<code dir name>: {"logical_id", "code_uri", "handler"}} for each AWS::Serverless::Function."""
    doc = yaml.load(template.read_text(), Loader=_AnyTagLoader)  # a SafeLoader subclass
    found = {}
    for logical_id, resource in doc["Resources"].items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource["Properties"]
        code_uri = props["CodeUri"].rstrip("/")
        found[Path(code_uri).name] = {"logical_id": logical_id, "code_uri": code_uri, "handler": props["Handler"]}
    return found


def load_event(name: str, values: dict[str, str]) -> dict[str, Any]:
    path = EVENTS / f"{name}.json"
    if not path.exists():
        print(f"  no sample event {path.relative_to(ROOT)}: {name} is invoked with {{}} (its import still counts)")
        return {}
    text = path.read_text()
    for key, placeholder in PLACEHOLDERS.items():
        text = text.replace(placeholder, values[key])
    return json.loads(text)


def vary(name: str, event: dict[str, Any], sample: int) -> dict[str, Any]:
    """Per-sample changes so that every sample does the same work (no idempotent short cut)."""
    event = copy.deepcopy(event)
    if name in ("start_lifecycle", "start_batch"):
        # A new object version each time: a new execution name, so start_execution really starts one.
        obj = event["detail"]["object"]
        obj["version-id"] = f"{obj.get('version-id', 'v')}-s{sample}"
    elif name == "register_model":
        event["run"] = f"{event['run']}-s{sample}"  # a new run: not answered from the idempotency table
    elif name == "finish_batch":
        event["key"] = finish_batch_key(event["key"], sample)  # each sample moves its own input file
    elif name == "judge_stage":
        # A call ten minutes into the stage, as the Rollout makes them (never past max_minutes): from the file's
        # fixed epoch the stage would be older every day, and the judge's per-minute series longer with it.
        event["stage_started"] = time.time() - JUDGED_MINUTES * 60
    return event


def tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def finish_batch_key(key: str, sample: int) -> str:
    stem, dot, ext = key.rpartition(".")
    return f"{stem}-finish-{sample}{dot}{ext}"


# ----------------------------------------------------------------------------- the local cloud


class Stage:
    """The local cloud with template.yaml deployed and the data the sample events refer to."""

    def __init__(self, state_dir: Path, batch_files: int) -> None:
        from localcloud.server import LocalCloud

        self.cloud = LocalCloud(port=0, time_scale=60, state_dir=state_dir)
        self.batch_files = batch_files  # FinishBatch moves one input file per run

    def start(self) -> None:
        self.cloud.start()
        self.outputs = self.cloud.deploy(ROOT / "template.yaml", {"StageName": "bench"}, "bench")
        self.bucket = self.outputs["DataBucketName"]
        self.values = {
            "bucket": self.bucket,
            "role": self.outputs["SageMakerExecutionRoleArn"],
            "key": self.outputs["DataKeyArn"],
        }
        self._quiet()
        self.sink_arn = self._sink_state_machine()
        self._upload()

    def stop(self) -> None:
        self.cloud.stop()

    def _quiet(self) -> None:
        """Disable the stack's rules: no schedule (ReconcileSchedule fires every 10 s at time_scale 60)
        and no S3 event starts a workflow in the background while samples are timed."""
        events = self.cloud.client("events")
        for rule in events.list_rules()["Rules"]:
            events.disable_rule(Name=rule["Name"])

    def _sink_state_machine(self) -> str:
        """StartLifecycle and StartBatch start their executions here (one Succeed state): the handler
        makes the same StartExecution call, but no pipeline runs behind the samples."""
        sfn = self.cloud.client("stepfunctions")
        definition = {"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}
        return sfn.create_state_machine(
            name="bench-coldstart-sink", definition=json.dumps(definition), roleArn=self.values["role"]
        )["stateMachineArn"]

    def _upload(self) -> None:
        sys.path.insert(0, str(EXAMPLE))
        from generate_data import generate

        s3 = self.cloud.client("s3")
        put = lambda key, body: s3.put_object(Bucket=self.bucket, Key=key, Body=body)  # noqa: E731
        put(f"models/{MODEL}/shepherd.yaml", (EXAMPLE / "shepherd.yaml").read_bytes())
        for name in ("train.py", "inference.py"):
            put(f"models/{MODEL}/code/{name}", (EXAMPLE / name).read_bytes())
        frame = generate(900, 7)
        cut = int(len(frame) * 0.75)
        for split, part in {"train": frame.iloc[:cut], "validation": frame.iloc[cut:]}.items():
            put(f"training/{MODEL}/{DATASET}/{split}/{split}.csv", part.to_csv(index=False).encode())
        put(f"training/{MODEL}/{DATASET}/_READY", b"")
        rows = generate(120, 11).drop(columns=["target"]).to_csv(index=False, header=False).encode()
        put(BATCH_KEY, rows)
        self.batch_size = len(rows)
        for index in range(self.batch_files):
            put(finish_batch_key(BATCH_KEY, index), rows)
        # RegisterModel repacks the sample run's trained model with its code: both archives must exist.
        register = load_event("register_model", self.values)
        key_of = lambda uri: uri.removeprefix(f"s3://{self.bucket}/")  # noqa: E731
        put(key_of(register["job"]["model_data_url"]), tar_gz({"model.joblib": b"a fitted model"}))
        code = {name: (EXAMPLE / name).read_bytes() for name in ("train.py", "inference.py")}
        put(key_of(register["source_uri"]), tar_gz(code))

    def function_config(self, logical_id: str) -> dict[str, Any]:
        lam = self.cloud.client("lambda")
        names = [
            f["FunctionName"] for f in lam.get_paginator("list_functions").paginate().build_full_result()["Functions"]
        ]
        name = next(n for n in names if n.startswith(f"bench-{logical_id}") or n == logical_id)
        return lam.get_function_configuration(FunctionName=name)

    def training_job(self, request: dict[str, Any], timeout: float = 120.0) -> str:
        """Create StartJob's training job before the samples and let it finish, so that no sample trains
        in the background: each sample then finds the job (a retried task) and settles its token."""
        sm = self.cloud.client("sagemaker")
        name = request["TrainingJobName"]
        try:
            sm.describe_training_job(TrainingJobName=name)
        except sm.exceptions.ClientError:
            sm.create_training_job(**request)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
            if status != "InProgress":
                return status
            time.sleep(0.5)
        return "InProgress"


# ----------------------------------------------------------------------------- children


def child_env(stage: Stage, config: dict[str, Any] | None, pythonpath: str) -> dict[str, str]:
    env = {k: os.environ[k] for k in _PASSED_THROUGH_ENV if k in os.environ}
    env.update(stage.cloud.exports())  # AWS_ENDPOINT_URL, fake credentials, AWS_DEFAULT_REGION
    env.update({"POWERTOOLS_TRACE_DISABLED": "true", "AWS_XRAY_CONTEXT_MISSING": "IGNORE_ERROR"})
    if config is not None:
        env.update(config.get("Environment", {}).get("Variables", {}))
        for variable in ("LIFECYCLE_STATE_MACHINE_ARN", "BATCH_STATE_MACHINE_ARN"):
            if variable in env:
                env[variable] = stage.sink_arn
        name, arn, memory = config["FunctionName"], config["FunctionArn"], config.get("MemorySize", 128)
        runtime = config.get("Runtime", "python3.13")
    else:
        name, arn, memory, runtime = (
            "naive-baseline",
            "arn:aws:lambda:us-east-1:123456789012:function:naive",
            256,
            "python3.13",
        )
        env.update({"POWERTOOLS_SERVICE_NAME": "shepherd", "POWERTOOLS_METRICS_NAMESPACE": "Shepherd"})
    env.update(
        {
            "AWS_LAMBDA_FUNCTION_NAME": name,
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory),
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{name}",
            "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
            "COLDSTART_FUNCTION_ARN": arn,
            "PYTHONPATH": pythonpath,
        }
    )
    return env


def run_child(  # noqa: PLR0917
    mode: str, env: dict[str, str], cwd: Path, event: dict[str, Any], workdir: Path, extra_args: tuple[str, ...] = ()
) -> dict[str, Any]:
    event_path, out_path = workdir / "event.json", workdir / "out.json"
    event_path.write_text(json.dumps(event))
    out_path.unlink(missing_ok=True)
    script = workdir / "child.py"
    if not script.exists():
        script.write_text(CHILD)
    proc = subprocess.run(
        [sys.executable, *extra_args, str(script), mode, str(event_path), str(out_path)],
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
        timeout=180,
    )
    if not out_path.exists():
        tail = proc.stderr.decode(errors="replace")[-800:]
        return {"total_ms": float("nan"), "outcome": f"crashed (exit {proc.returncode})", "detail": tail}
    result = json.loads(out_path.read_text())
    result["stderr"] = proc.stderr.decode(errors="replace")
    return result


# Runs with JudgeStage's environment: its run takes the endpoint's lock, as the rollout's Prepare does.
TAKE_LOCK = r"""
import json, os, sys, time
from shepherd.aws.rollouts import RolloutTable
rollouts = RolloutTable(os.environ["ROLLOUTS_TABLE"])
event = json.loads(sys.argv[1])
rollouts.acquire(event["endpoint"], event["run"], event["package_arn"], time.time())
print(rollouts.holder_of(event["endpoint"]))
"""


def take_rollout_lock(function: dict[str, Any], event: dict[str, Any], workdir: Path) -> str:
    """JudgeStage renews its run's lock on the endpoint at every call (LockLost without it): the run takes
    it before each sample, so that the sample judges rather than stopping at the lock."""
    proc = subprocess.run(
        [sys.executable, "-c", TAKE_LOCK, json.dumps(event)],
        env=function["env"],
        cwd=workdir,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    return proc.stdout.strip() or f"failed: {proc.stderr.strip()[-300:]}"


def compare_versions(
    functions: dict[str, dict[str, Any]], measured: list[str], root: Path | None
) -> dict[str, dict[str, Any]]:
    """Each measured function again, with its code and the layer from another copy of the repository."""
    if root is None:
        return {}
    layer = root / "layers" / "shepherd"
    versions = {}
    for name in measured:
        code_dir = root / functions[name]["code_uri"]
        env = functions[name]["env"] | {"PYTHONPATH": f"{code_dir}{os.pathsep}{layer}"}
        versions[name] = {"cwd": code_dir, "env": env, "runs": []}
    return versions


def p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]


def importtime_report(stage: Stage, function: dict[str, Any], event: dict[str, Any], workdir: Path, top: int) -> None:
    """One more child under -X importtime: the modules with the largest cumulative import time."""
    result = run_child("app", function["env"], function["cwd"], event, workdir, ("-X", "importtime"))
    rows = []
    for line in result.get("stderr", "").splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        try:
            self_part, cumulative_us, name = line.split("|")
            self_us = self_part.rsplit(":", 1)[-1]
            rows.append((int(cumulative_us), int(self_us), name.rstrip()))
        except ValueError:
            continue
    print(f"\n-X importtime, {function['name']} (one sample, cumulative ms; indentation = nesting):")
    for cumulative, self_us, name in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / 1000:8.1f}  self {self_us / 1000:6.1f}  {name}")


def cprofile_report(
    function: dict[str, Any], event: dict[str, Any], workdir: Path, top: int, keep: Path | None = None
) -> None:
    """One more child under cProfile: where import plus first invocation spend their time."""
    import pstats

    stats_path = (keep / f"{function['name']}.prof") if keep else workdir / "child.prof"
    run_child("app", function["env"], function["cwd"], event, workdir, ("-m", "cProfile", "-o", str(stats_path)))
    print(f"\ncProfile, {function['name']} (one sample, cumulative):")
    if stats_path.exists():
        pstats.Stats(str(stats_path)).sort_stats("cumulative").print_stats(top)
        if keep:
            print(f"profile kept in {stats_path} (python -m pstats, snakeviz, ...)")


# ----------------------------------------------------------------------------- main


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=7, help="fresh processes per function (default 7)")
    parser.add_argument("--quick", action="store_true", help="3 samples per function")
    parser.add_argument("--only", nargs="*", default=None, help="measure only these functions")
    parser.add_argument(
        "--importtime",
        nargs="*",
        default=None,
        metavar="FUNCTION",
        help="after the table, profile the import of these functions (none given: those over target)",
    )
    parser.add_argument(
        "--profile", nargs="*", default=None, metavar="FUNCTION", help="after the table, cProfile these functions"
    )
    parser.add_argument(
        "--profile-dir", type=Path, default=None, help="keep each --profile child's cProfile data here (FUNCTION.prof)"
    )
    parser.add_argument("--top", type=int, default=25, help="rows of each -X importtime profile")
    parser.add_argument(
        "--code-root",
        type=Path,
        default=ROOT,
        help="take functions/ and layers/ from this copy of the repository (to try a fix)",
    )
    parser.add_argument(
        "--compare-root",
        type=Path,
        default=None,
        help="also time each function from this copy of functions/ and layers/ (e.g. main's), in the same rounds",
    )
    parser.add_argument("--verbose", action="store_true", help="print each function's first result")
    parser.add_argument("--no-write", action="store_true", help=f"do not write {RESULTS.relative_to(ROOT)}")
    args = parser.parse_args()
    samples = 3 if args.quick else max(1, args.samples)
    if args.profile_dir:
        args.profile_dir.mkdir(parents=True, exist_ok=True)

    functions = template_functions(ROOT / "template.yaml")  # all set up; --only limits what is timed
    with tempfile.TemporaryDirectory(prefix="coldstart-") as tmp:
        workdir = Path(tmp)
        # Samples, the --importtime and --profile children, and the --compare-root samples.
        stage = Stage(workdir / "state", 2 * samples + 2 if args.compare_root else samples + 2)
        began = time.perf_counter()
        try:
            stage.start()
            print(
                f"local cloud {stage.cloud.endpoint}: template.yaml deployed as 'bench' in "
                f"{time.perf_counter() - began:.1f} s; {len(functions)} functions, {samples} samples each"
            )
            return measure(stage, functions, samples, workdir, args)
        except Exception:
            print("FAILED: the measurement itself failed")
            traceback.print_exc()
            return 0
        finally:
            stage.stop()


def measure(stage: Stage, functions: dict[str, dict[str, Any]], samples: int, workdir: Path, args: Any) -> int:  # noqa: PLR0915
    layer = str(args.code_root / "layers" / "shepherd")
    events: dict[str, dict[str, Any]] = {}
    for name, fn in functions.items():
        config = stage.function_config(fn["logical_id"])
        code_dir = args.code_root / fn["code_uri"]
        fn.update(name=name, cwd=code_dir, env=child_env(stage, config, f"{code_dir}{os.pathsep}{layer}"))
        events[name] = load_event(name, stage.values)
    naive_env = child_env(stage, None, "")

    # Warm-up, not counted: the file cache, and PrepareTraining's artifacts that StartJob's request names.
    run_child("naive", naive_env, workdir, {}, workdir)
    for name in ("prepare_training", "start_job"):
        if name not in functions:
            continue
        if name == "prepare_training":
            warm = run_child("app", functions[name]["env"], functions[name]["cwd"], events[name], workdir)
            print(f"warm-up prepare_training: {warm['outcome']} {warm.get('detail', '')}")
        else:
            status = stage.training_job(events["start_job"]["request"])
            print(f"StartJob's training job, created before the samples: {status}")
    if "judge_stage" in functions:
        taken = take_rollout_lock(functions["judge_stage"], events["judge_stage"], workdir)
        print(f"JudgeStage's rollout lock, taken before each of its samples: {taken}")

    # Round-robin, the baseline included, so that every function sees the same noise.
    measured = [name for name in functions if not args.only or name in args.only]
    order = [NAIVE, *measured]
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
    compared = compare_versions(functions, measured, args.compare_root)
    for sample in range(samples):
        for name in order:
            if name == NAIVE:
                runs[name].append(run_child("naive", naive_env, workdir, {}, workdir))
                continue
            versions = [(functions[name], sample, runs[name])]
            if name in compared:  # its own object versions, runs and input files: the same work, not a short cut
                versions.append((compared[name], samples + 2 + sample, compared[name]["runs"]))
            for fn, index, into in versions:
                if name in ("judge_stage", "reconcile_rollouts"):  # each judges under the lock, or frees it
                    take_rollout_lock(functions["judge_stage"], events["judge_stage"], workdir)
                into.append(run_child("app", fn["env"], fn["cwd"], vary(name, events[name], index), workdir))
        print(f"  sample {sample + 1}/{samples} done", flush=True)

    naive = statistics.median(r["total_ms"] for r in runs[NAIVE])
    figures: dict[str, float] = {}
    over = []
    print()
    columns = f"{'median ms':>10} {'p90 ms':>8} {'import ms':>10} {'cpu ms':>7} {'x naive':>8}"
    header = f"{'function':<18} {columns}  verdict  outcome"
    print(header)
    print("-" * len(header))
    for name in order:
        totals = [r["total_ms"] for r in runs[name]]
        median = statistics.median(totals)
        imports = statistics.median(r.get("import_ms", float("nan")) for r in runs[name])
        cpu = statistics.median(r.get("cpu_ms", float("nan")) for r in runs[name])
        ratio = median / naive
        outcomes = sorted({r["outcome"] for r in runs[name]})
        outcome = ", ".join(
            f"{o} x{sum(r['outcome'] == o for r in runs[name])}" if len(outcomes) > 1 else o for o in outcomes
        )
        verdict = "base" if name == NAIVE else ("PASS" if ratio <= TARGET_RATIO else "OVER")
        if name != NAIVE:
            figures[name] = round(median, 1)
            if ratio > TARGET_RATIO:
                over.append(name)
        values = f"{median:>10.1f} {p90(totals):>8.1f} {imports:>10.1f} {cpu:>7.1f} {ratio:>8.2f}"
        print(f"{name:<18} {values}  {verdict:<7}  {outcome}")
    figures[NAIVE] = round(naive, 1)
    print()
    for name in order:
        details = sorted({r["detail"].splitlines()[0] for r in runs[name] if r["outcome"] != "ok" and r.get("detail")})
        for detail in details:
            print(f"  {name}: {detail}")
    if args.verbose:
        for name in measured:
            print(f"  {name} -> {json.dumps(runs[name][0].get('result'), default=str)[:300]}")
    if compared:
        print(f"\nthe same rounds from {args.compare_root}:")
        for name, fn in compared.items():
            median = statistics.median(r["total_ms"] for r in fn["runs"])
            cpu = statistics.median(r.get("cpu_ms", float("nan")) for r in fn["runs"])
            own_cpu = statistics.median(r.get("cpu_ms", float("nan")) for r in runs[name])
            outcomes = ", ".join(sorted({r["outcome"] for r in fn["runs"]}))
            ratio, own = median / naive, figures[name] / naive
            print(
                f"{name:<18} {median:>10.1f} {ratio:>8.2f}x  cpu {cpu:>6.1f} ms"
                f"  (this tree {own:.2f}x, cpu {own_cpu:.1f} ms)  {outcomes}"
            )
    worst = max((figures[n] / naive for n in measured), default=0.0)
    print(
        f"naive baseline median {naive:.1f} ms; worst function {worst:.2f}x (target <= {TARGET_RATIO}x); "
        f"{len(measured) - len(over)}/{len(measured)} within target" + (f"; over: {', '.join(over)}" if over else "")
    )
    if not args.no_write and not args.only and args.code_root == ROOT and not args.compare_root:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
        print(f"wrote {RESULTS.relative_to(ROOT)}")

    profile = args.importtime
    if profile is not None:
        for name in profile or over:
            if name in functions:
                if name == "judge_stage":
                    take_rollout_lock(functions[name], events[name], workdir)
                importtime_report(stage, functions[name], vary(name, events[name], samples), workdir, args.top)
    for name in args.profile or ():
        if name in functions:
            if name == "judge_stage":
                take_rollout_lock(functions[name], events[name], workdir)
            cprofile_report(functions[name], vary(name, events[name], samples + 1), workdir, args.top, args.profile_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
