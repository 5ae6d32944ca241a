"""Replay's records: capture lines parsed, a stratified sample chosen, shards written for Batch Transform."""

from __future__ import annotations

import base64
import json
from collections import Counter
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shepherd.replay.records import HOUR, Captured, captured, choose, left_out, shards

START = datetime(2026, 12, 7, 10, tzinfo=UTC).timestamp()


def capture_line(
    event_id: str,
    at: str,
    body: str,
    answer: str,
    *,
    content_type: str = "text/csv",
    encoding: str = "CSV",
    inference_id: str | None = None,
) -> str:
    """One data-capture line as SageMaker writes it (InputAndOutput)."""

    def payload(text: str, mode: str) -> dict[str, str]:
        data = base64.b64encode(text.encode()).decode() if encoding == "BASE64" else text
        return {"observedContentType": content_type, "mode": mode, "data": data, "encoding": encoding}

    metadata = {"eventId": event_id, "inferenceTime": at} | ({"inferenceId": inference_id} if inference_id else {})
    capture = {"endpointInput": payload(body, "INPUT"), "endpointOutput": payload(answer, "OUTPUT")}
    return json.dumps({"captureData": capture, "eventMetadata": metadata, "eventVersion": "0"})


def record(event_id: str, epoch: float, body: str = "1,2,3", content_type: str = "text/csv") -> Captured:
    return Captured(event_id, epoch, content_type, body, "0")


def test_capture_lines_give_requests_with_the_champions_answers() -> None:
    # Given CSV text, base64 and JSON capture lines
    lines = [
        capture_line("a", "2026-12-07T10:01:05Z", "5.1,3.5\n", "1\n"),
        capture_line("b", "2026-12-07T10:02:00Z", "6.0,2.2", "0", encoding="BASE64"),
        capture_line("c", "2026-12-07T10:03:00Z", '{"instances": [[1, 2]]}', '{"predictions": [1]}',
                     content_type="application/json", encoding="JSON", inference_id="mine"),
    ]  # fmt: skip
    # When they are parsed
    found = list(captured(lines))
    # Then each gives its request and answer decoded, identified by inferenceId where the caller gave one
    assert [(c.event_id, c.body, c.answer) for c in found] == [
        ("a", "5.1,3.5\n", "1\n"),
        ("b", "6.0,2.2", "0"),
        ("mine", '{"instances": [[1, 2]]}', '{"predictions": [1]}'),
    ]
    assert found[0].epoch == datetime(2026, 12, 7, 10, 1, 5, tzinfo=UTC).timestamp()
    assert found[2].content_type == "application/json"


def test_lines_without_both_input_and_output_or_unreadable_are_skipped() -> None:
    good = capture_line("ok", "2026-12-07T10:01:05Z", "1,2", "0")
    only_output = json.loads(good)
    del only_output["captureData"]["endpointInput"]
    bad_base64 = json.loads(capture_line("x", "2026-12-07T10:01:05Z", "1,2", "0", encoding="BASE64"))
    bad_base64["captureData"]["endpointInput"]["data"] = "%%%"
    lines = [
        "not json",
        "[1, 2]",
        json.dumps(only_output),
        json.dumps(bad_base64),
        capture_line("t", "not a time", "1,2", "0"),
        good,
    ]
    assert [c.event_id for c in captured(lines)] == ["ok"]


def spread(counts: list[int]) -> list[Captured]:
    """``counts[h]`` records in hour h, interleaved out of capture order."""
    out = [record(f"h{h}-{i}", START + h * HOUR + i * HOUR / (n + 1)) for h, n in enumerate(counts) for i in range(n)]
    return out[::2] + out[1::2]


def test_choose_is_the_same_for_the_same_seed_and_differs_for_another() -> None:
    records = spread([300, 300, 300])
    first = choose(records, 100, seed="run-1")
    assert first == choose(list(records), 100, seed="run-1")
    assert first != choose(records, 100, seed="run-2")


def test_choose_gives_each_hour_its_share_in_capture_order() -> None:
    # Given a busy hour, a quiet one and a middling one
    records = spread([600, 100, 300])
    # When 100 are chosen
    chosen = choose(records, 100, seed="run")
    # Then each hour gives its share, and the sample is in capture order
    assert Counter(c.event_id.split("-")[0] for c in chosen) == {"h0": 60, "h1": 10, "h2": 30}
    assert [c.epoch for c in chosen] == sorted(c.epoch for c in chosen)
    assert len({c.event_id for c in chosen}) == 100


def test_choose_keeps_everything_when_there_is_less_than_asked() -> None:
    records = spread([3, 2])
    chosen = choose(records, 10, seed="run")
    assert sorted(c.event_id for c in chosen) == sorted(c.event_id for c in records)
    assert [c.epoch for c in chosen] == sorted(c.epoch for c in chosen)


@settings(max_examples=60, deadline=None)
@given(counts=st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=8), size=st.integers(0, 200))
def test_choose_respects_the_size_and_the_hours_proportions(counts: list[int], size: int) -> None:
    records = spread(counts)
    chosen = choose(records, size, seed="s")
    assert len(chosen) == min(size, len(records))
    per_hour = Counter(round((c.epoch - START) // HOUR) for c in chosen)
    total = sum(counts)
    for hour, count in enumerate(counts):
        exact = min(size, total) * count / total
        assert abs(per_hour[hour] - exact) < 1  # largest remainders: within one of the exact share


def test_a_negative_size_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 0"):
        choose(spread([2]), -1, seed="s")


def test_shards_hold_one_request_a_line_with_their_event_ids_aligned() -> None:
    # Given 250 CSV records (one with a final line break) and 3 JSON ones, one pretty-printed
    records = [record(f"c{i}", START + i, f"{i},1") for i in range(250)]
    records[7] = record("c7", START + 7, "7,1\n")
    records += [
        record("j0", START, '{"x": [1, 2]}', "application/json"),
        record("j1", START, '{\n  "x": [3, 4]\n}', "application/json"),
        record("j2", START, '{"x": [5, 6]}', "application/json; charset=utf-8"),
    ]
    # When they are sharded 100 a file
    parts = shards(records, per_shard=100)
    # Then each file holds one content type, at most 100 lines, line i being event_ids[i]'s request
    assert [(p.name, p.content_type, len(p.event_ids)) for p in parts] == [
        ("part-0000.csv", "text/csv", 100),
        ("part-0001.csv", "text/csv", 100),
        ("part-0002.csv", "text/csv", 50),
        ("part-0003.jsonl", "application/json", 3),
    ]
    by_id = {r.event_id: r for r in records}
    for part in parts:
        lines = part.body.decode().split("\n")
        assert lines[-1] == ""  # every line ends with a line break
        assert len(lines) - 1 == len(part.event_ids)
        for event_id, text in zip(part.event_ids, lines, strict=False):
            if part.content_type == "text/csv":
                assert text == by_id[event_id].body.rstrip("\n")
            else:
                assert json.loads(text) == json.loads(by_id[event_id].body)
    assert parts[0].body.decode().split("\n")[7] == "7,1"


def test_requests_of_several_lines_are_left_out_and_named() -> None:
    # Given two CSV requests that each carry two records, and a one-line request
    records = [
        record("two", START, "1,2\n3,4\n"),
        record("one", START, "5,6"),
        record("crlf", START, "1,2\r\n3,4"),
        record("empty", START, ""),
    ]
    # Then only the one-line request is sharded, and the others are named as left out
    assert [p.event_ids for p in shards(records)] == [("one",)]
    assert [r.event_id for r in left_out(records)] == ["two", "crlf", "empty"]


def test_a_shard_holds_at_least_one_record() -> None:
    with pytest.raises(ValueError, match="at least one"):
        shards([record("a", START)], per_shard=0)
