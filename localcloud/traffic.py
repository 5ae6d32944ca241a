"""Live InvokeEndpoint traffic and its ground truth: the one generator the demo, the tests and the benchmarks share."""

from __future__ import annotations

import json
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


def _first_score(text: str) -> float:
    """The first score of an answer: text/csv (one per line) or application/json {"predictions": [...]}."""
    text = text.strip()
    if text.startswith("{"):
        return float(json.loads(text)["predictions"][0])
    return float(text.split()[0].split(",")[0])


class Feedback:
    """Ground truth for a share of the answered requests, uploaded as SageMaker Model Monitor merges it:
    JSON Lines under feedback/<model>/yyyy/mm/dd/hh/ (the upload's hour on the cloud's clock), keyed
    by the request's InferenceId. The judge joins it with the captured predictions."""

    def __init__(self, s3: Any, bucket: str, model: str, *, share: float, now: Any, every: float = 2.0) -> None:
        self.s3, self.bucket, self.model, self.share, self.now, self.every = s3, bucket, model, share, now, every
        self.pending: list[str] = []
        self.uploaded = 0
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def add(self, inference_id: str, label: int) -> None:
        line = json.dumps(
            {
                "groundTruthData": {"data": str(label), "encoding": "CSV"},
                "eventMetadata": {"eventId": inference_id},
                "eventVersion": "0",
            }
        )
        with self._lock:
            self.pending.append(line)
        if time.monotonic() - self._last >= self.every:
            self.flush()

    def flush(self) -> None:
        with self._lock:
            lines, self.pending = self.pending, []
            self._last = time.monotonic()
        if not lines:
            return
        at = self.now()
        key = f"feedback/{self.model}/{at:%Y/%m/%d/%H}/{at:%M-%S}-{uuid.uuid4().hex[:8]}.jsonl"
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=("\n".join(lines) + "\n").encode())
        with self._lock:
            self.uploaded += len(lines)


@dataclass(frozen=True)
class Outcome:
    """What one request came to: ok (answered), model_error (the model's own error answer) or failed (the system's)."""

    kind: str
    variant: str = ""  # the variant that answered, or whose container answered with an error
    error: str = ""


class Traffic:
    """Steady InvokeEndpoint calls from labelled rows, from a pool of sender threads; every outcome counted, per second
    and per variant.

    A ``malformed`` share is sent broken on purpose, at random or (``evenly``) every n-th request: an error rate with
    no chance in it. `failures` are requests that failed other than by a model's own error answer; `unexpected` is
    all a healthy endpoint never does (failures, a valid row refused, a malformed one answered, a hook that raised).
    ``senders`` threads share the ``rate`` (each sends every senders/rate seconds), so a slow answer holds up one
    sender, not the rate; the counters are updated under one lock, the requests themselves sent outside it.
    """

    def __init__(
        self,
        client: Any,
        endpoint: str,
        rows: list[tuple[str, int]],
        *,
        rate: float,
        malformed: float,
        evenly: bool = False,
        ids: str = "traffic",
        target_model: str = "",
        before_each: Callable[[], None] | None = None,
        feedback: Feedback | None = None,
        senders: int = 1,
    ) -> None:
        if feedback is not None and not ids:
            raise ValueError("ground truth is keyed by InferenceId: feedback needs ids")
        if senders < 1:
            raise ValueError(f"senders must be at least 1, not {senders}")
        self.client, self.endpoint, self.rows, self.rate, self.malformed = client, endpoint, rows, rate, malformed
        self.every = round(1 / malformed) if evenly and malformed else 0
        self.ids = ids
        self.target = {"TargetModel": target_model} if target_model else {}  # a multi-model endpoint's artifact
        self.before_each, self.feedback = before_each, feedback
        self.random = random.Random(5)  # noqa: S311 - traffic sampling, not security
        self.sent = self.answered = self.malformed_sent = self.malformed_answered = 0
        self.valid_refused = self.malformed_failed = 0
        self.failures: list[str] = []
        self.unexpected: list[str] = []
        self.by_variant: Counter[str] = Counter()
        self.model_errors: Counter[str] = Counter()
        self.labelled: Counter[str] = Counter()  # answers whose ground truth was uploaded, per variant
        self.wrong: Counter[str] = Counter()  # ... that were wrong (probability >= 0.5 vs the label)
        self.seconds: dict[int, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.senders = senders
        self._lock = threading.Lock()  # every counter above changes under it
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), name=f"{ids or 'endpoint'}-traffic-{n}", daemon=True)
            for n in range(senders)
        ]

    def start(self) -> Traffic:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        deadline = time.monotonic() + 10
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        if self.feedback is not None:
            self.feedback.flush()

    def __enter__(self) -> Traffic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _bucket(self) -> dict[str, Any]:
        """The current second's counters (called under the lock)."""
        second = int(self.elapsed())
        return self.seconds.setdefault(second, {"requests": Counter(), "errors": Counter(), "latency": {}})

    def _run(self, sender: int) -> None:
        interval = self.senders / self.rate
        if sender and self._stop.wait(sender / self.rate):  # the senders' turns spread over the interval
            return
        while not self._stop.wait(interval):
            if self.before_each is not None:
                try:
                    self.before_each()
                except Exception as exc:  # a broken hook must fail its test, not stop the traffic silently
                    with self._lock:
                        self.unexpected.append(f"before_each: {type(exc).__name__}: {exc}")
            self.send()

    def _malformed_next(self) -> bool:
        if self.every:
            return self.sent % self.every == self.every - 1
        return self.random.random() < self.malformed

    def send(self) -> Outcome:
        """One request, its outcome counted and returned."""
        with self._lock:  # the draws and the request's number, in one order whatever the threads do
            bad = self._malformed_next()
            row, label = self.rows[self.random.randrange(len(self.rows))]
            self.sent += 1
            self.malformed_sent += bad
            inference_id = f"{self.ids}-{self.sent}" if self.ids else ""
        body = "1,2" if bad else row
        began = time.perf_counter()
        try:
            answer = self.client.invoke_endpoint(
                EndpointName=self.endpoint,
                ContentType="text/csv",
                Body=body,
                **self.target,
                **({"InferenceId": inference_id} if inference_id else {}),
            )
        except self.client.exceptions.ModelError as exc:
            return self._refused(exc, bad)
        except Exception as exc:  # the endpoint was unavailable: the rollout's fault, counted
            failure = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.failures.append(failure)
                self.unexpected.append(failure)
            return Outcome("failed", error=failure)
        ms = 1000 * (time.perf_counter() - began)
        variant = answer["InvokedProductionVariant"]
        score = _first_score(answer["Body"].read().decode()) if self.feedback is not None and not bad else None
        with self._lock:
            self.answered += 1
            self.by_variant[variant] += 1
            bucket = self._bucket()
            bucket["requests"][variant] += 1
            bucket["latency"].setdefault(variant, []).append(ms)
            if bad:
                self.malformed_answered += 1
                self.unexpected.append("a malformed row was answered")
            labelled = False
            if score is not None and self.feedback is not None and self.random.random() < self.feedback.share:
                labelled = True
                self.labelled[variant] += 1
                self.wrong[variant] += (score >= 0.5) != (label == 1)
        if labelled and self.feedback is not None:
            # The outcome becomes known later: its ground truth goes to feedback/<model>/.
            self.feedback.add(inference_id, label)
        return Outcome("ok", variant=variant)

    def _refused(self, exc: Any, bad: bool) -> Outcome:
        stream = str(exc.response.get("LogStreamArn", ""))
        variant = stream.rsplit(":log-stream:", 1)[-1].split("/", 1)[0] if ":log-stream:" in stream else "?"
        original = exc.response.get("OriginalMessage") or str(exc)
        with self._lock:
            self.model_errors[variant] += 1
            bucket = self._bucket()
            bucket["requests"][variant] += 1
            bucket["errors"][variant] += 1
            if bad:
                self.malformed_failed += 1
            else:
                self.valid_refused += 1
                self.unexpected.append(f"ModelError on a valid row: {original}")
        return Outcome("model_error", variant=variant, error=f"ModelError: {original}")

    def summary(self) -> dict[str, Any]:
        with self._lock:
            return self._summary()

    def _summary(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "failed": len(self.failures),
            "failures": self.failures[:10],
            "model_errors": dict(self.model_errors),
            "feedback": {"labelled": dict(self.labelled), "wrong": dict(self.wrong)},
            "malformed_sent": self.malformed_sent,
            "valid_requests_refused": self.valid_refused,
            "by_variant": dict(self.by_variant),
            "seconds": {
                str(t): {
                    "requests": dict(b["requests"]),
                    "errors": dict(b["errors"]),
                    "latency_ms_p50": {v: round(sorted(ms)[len(ms) // 2], 2) for v, ms in b["latency"].items()},
                }
                for t, b in sorted(self.seconds.items())
            },
        }
