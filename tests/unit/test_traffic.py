"""The shared traffic generator: what it sends and how it counts each outcome, against a fake endpoint."""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from localcloud.traffic import Feedback, Outcome, Traffic

ROWS = [("1,2,3", 1), ("4,5,6", 0), ("7,8,9", 1)]
STREAM = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/churn:log-stream:{variant}/i-local"


class ModelError(Exception):
    def __init__(self, response: dict[str, Any]) -> None:
        super().__init__(response["Error"]["Message"])
        self.response = response


class Endpoint:
    """InvokeEndpoint on two variants in turn: a malformed row ("1,2") is the model's 400, as the example's."""

    class exceptions:
        ModelError = ModelError

    def __init__(self, *, answer_malformed: bool = False, down: bool = False, score: str = "0.9") -> None:
        self.answer_malformed, self.down, self.score = answer_malformed, down, score
        self.calls: list[dict[str, Any]] = []

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        if self.down:
            raise ConnectionError("connection refused")
        variant = ("v1", "v2")[len(self.calls) % 2]
        if request["Body"] == "1,2" and not self.answer_malformed:
            message = "expected 3 features, got 2"
            error = {"Code": "ModelError", "Message": message}
            stream = STREAM.format(variant=variant)
            raise ModelError({"Error": error, "OriginalMessage": message, "LogStreamArn": stream})
        return {"InvokedProductionVariant": variant, "Body": io.BytesIO(f"{self.score}\n".encode())}


class Bucket:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: bytes) -> None:
        self.objects[f"{Bucket}/{Key}"] = Body


def test_evenly_every_nth_request_is_malformed_and_each_refusal_is_counted_for_its_variant() -> None:
    endpoint = Endpoint()
    traffic = Traffic(endpoint, "churn", ROWS, rate=1.0, malformed=0.25, evenly=True)
    for _ in range(12):
        traffic.send()
    assert [n for n, call in enumerate(endpoint.calls, 1) if call["Body"] == "1,2"] == [4, 8, 12]
    assert (traffic.sent, traffic.malformed_sent, traffic.malformed_failed, traffic.answered) == (12, 3, 3, 9)
    assert traffic.model_errors == {"v1": 3}  # the 4th, 8th and 12th calls land on v1 here
    assert traffic.unexpected == traffic.failures == []
    assert {call["InferenceId"] for call in endpoint.calls} == {f"traffic-{n}" for n in range(1, 13)}


def test_at_random_the_draws_are_seeded_so_two_runs_send_the_same_requests() -> None:
    runs = []
    for _ in range(2):
        endpoint = Endpoint()
        traffic = Traffic(endpoint, "churn", ROWS, rate=1.0, malformed=0.3)
        for _ in range(200):
            traffic.send()
        runs.append([call["Body"] for call in endpoint.calls])
        assert traffic.malformed_sent == runs[-1].count("1,2")
    assert runs[0] == runs[1]
    assert 30 < runs[0].count("1,2") < 90  # about 30 % of 200
    assert {body for body in runs[0] if body != "1,2"} == {row for row, _ in ROWS}


def test_what_a_healthy_endpoint_never_does_is_unexpected() -> None:
    answering = Traffic(Endpoint(answer_malformed=True), "churn", ROWS, rate=1.0, malformed=1.0, evenly=True, ids="")
    answering.send()
    assert answering.unexpected == ["a malformed row was answered"]
    assert (answering.answered, answering.malformed_answered) == (1, 1)
    down = Traffic(Endpoint(down=True), "churn", ROWS, rate=1.0, malformed=0.0)
    down.send()
    assert down.failures == down.unexpected == ["ConnectionError: connection refused"]


def test_a_valid_row_refused_is_unexpected_and_counted_as_refused() -> None:
    traffic = Traffic(Endpoint(), "churn", [("1,2", 1)], rate=1.0, malformed=0.0)  # a row the model refuses
    traffic.send()
    assert traffic.valid_refused == 1
    assert traffic.unexpected == ["ModelError on a valid row: expected 3 features, got 2"]
    assert traffic.failures == []  # the model's own answer, not the endpoint's failure


def test_feedback_uploads_the_outcome_of_a_share_of_the_answers_keyed_by_inference_id() -> None:
    bucket = Bucket()
    at = datetime(2026, 12, 7, 18, 5, 9, tzinfo=UTC)
    feedback = Feedback(bucket, "data", "churn", share=1.0, now=lambda: at, every=3600.0)
    traffic = Traffic(Endpoint(score="0.2"), "churn", ROWS, rate=1.0, malformed=0.0, ids="demo", feedback=feedback)
    for _ in range(4):
        traffic.send()
    feedback.flush()  # as stopping the traffic does
    [(key, body)] = bucket.objects.items()
    assert key.startswith("data/feedback/churn/2026/12/07/18/05-09-")
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert [line["eventMetadata"]["eventId"] for line in lines] == ["demo-1", "demo-2", "demo-3", "demo-4"]
    labels = [int(line["groundTruthData"]["data"]) for line in lines]
    assert sum(traffic.wrong.values()) == labels.count(1)  # 0.2 is wrong for a label 1
    assert traffic.labelled == {"v1": 2, "v2": 2}


def test_feedback_needs_inference_ids() -> None:
    feedback = Feedback(Bucket(), "data", "churn", share=1.0, now=datetime.now)
    with pytest.raises(ValueError, match="needs ids"):
        Traffic(Endpoint(), "churn", ROWS, rate=1.0, malformed=0.0, ids="", feedback=feedback)


class BusyEndpoint(Endpoint):
    """An endpoint answering from several threads at once: each call yields the interpreter mid-way."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: set[str] = set()
        self._lock = threading.Lock()

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        with self._lock:
            self.calls.append(request)
            self.threads.add(threading.current_thread().name)
            variant = ("v1", "v2")[len(self.calls) % 2]
        time.sleep(0)
        if request["Body"] == "1,2":
            error = {"Code": "ModelError", "Message": "expected 3 features, got 2"}
            raise ModelError({"Error": error, "LogStreamArn": STREAM.format(variant=variant)})
        return {"InvokedProductionVariant": variant, "Body": io.BytesIO(b"0.9\n")}


def test_counters_add_up_when_many_threads_send_at_once() -> None:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: a lost update shows
    try:
        endpoint = BusyEndpoint()
        traffic = Traffic(endpoint, "churn", ROWS, rate=1.0, malformed=0.1, evenly=True, ids="pool")
        threads = [threading.Thread(target=lambda: [traffic.send() for _ in range(500)]) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(previous)
    assert traffic.sent == len(endpoint.calls) == 4000
    assert {call["InferenceId"] for call in endpoint.calls} == {f"pool-{n}" for n in range(1, 4001)}
    assert (traffic.malformed_sent, traffic.malformed_failed) == (400, 400)  # every 10th, exactly
    assert traffic.answered == sum(traffic.by_variant.values()) == 3600
    assert sum(traffic.model_errors.values()) == 400
    per_second = [sum(b["requests"].values()) for b in traffic.seconds.values()]
    assert sum(per_second) == 4000
    assert sum(len(ms) for b in traffic.seconds.values() for ms in b["latency"].values()) == 3600
    assert traffic.unexpected == traffic.failures == []


def test_a_pool_of_senders_shares_the_rate_and_each_send_returns_its_outcome() -> None:
    endpoint = BusyEndpoint()
    traffic = Traffic(endpoint, "churn", ROWS, rate=200.0, malformed=0.0, senders=4).start()
    deadline = time.monotonic() + 30
    while len(endpoint.calls) < 80 and time.monotonic() < deadline:
        time.sleep(0.01)
    traffic.stop()
    assert endpoint.threads == {f"traffic-traffic-{n}" for n in range(4)}
    assert traffic.sent == len(endpoint.calls) == traffic.answered
    assert Traffic(Endpoint(down=True), "churn", ROWS, rate=1.0, malformed=0.0).send() == Outcome(
        "failed", error="ConnectionError: connection refused"
    )
    assert Traffic(Endpoint(), "churn", [("1,2", 1)], rate=1.0, malformed=0.0).send() == Outcome(
        "model_error", variant="v2", error="ModelError: expected 3 features, got 2"
    )


def test_a_pool_needs_a_sender() -> None:
    with pytest.raises(ValueError, match="senders must be at least 1"):
        Traffic(Endpoint(), "churn", ROWS, rate=1.0, malformed=0.0, senders=0)
