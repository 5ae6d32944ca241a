"""shepherd.monitor.dataset: CSV, JSON Lines and SageMaker data-capture records read as Model Monitor reads them.

Capture records have the shape of "Capture data from real-time endpoint" (SageMaker developer guide), as the local
SageMaker writes them (localcloud/sagemaker/capture.py).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from shepherd.monitor.dataset import Dataset, from_capture, read_csv, read_jsonl

NAMES = ["age", "income", "city"]


def _record(data: str, *, content_type: str, encoding: str) -> dict[str, Any]:
    endpoint_input = {"observedContentType": content_type, "mode": "INPUT", "data": data, "encoding": encoding}
    endpoint_output = {"observedContentType": "text/csv", "mode": "OUTPUT", "data": "0.9", "encoding": "CSV"}
    return {
        "captureData": {"endpointInput": endpoint_input, "endpointOutput": endpoint_output},
        "eventMetadata": {"eventId": "e1", "inferenceTime": "2026-12-07T10:00:00Z"},
        "eventVersion": "0",
    }


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_headerless_csv_names_columns_as_model_monitor_does():
    dataset = read_csv("1,2.5,a\n3,,b\n", header=False)

    assert dataset.columns == {"_c0": ["1", "3"], "_c1": ["2.5", None], "_c2": ["a", "b"]}
    assert dataset.item_count == 2


def test_csv_takes_given_names_then_positions_beyond_them():
    dataset = read_csv("1,2,a,x\n", header=False, names=NAMES)

    assert dataset.names == ["age", "income", "city", "_c3"]


def test_csv_with_a_header_takes_its_names_and_pads_short_rows_with_missing_cells():
    dataset = read_csv("age,income,city\n41,5000\n", header=True)

    assert dataset.columns == {"age": ["41"], "income": ["5000"], "city": [None]}


def test_jsonl_objects_become_columns_in_order_of_first_appearance():
    text = '{"age": 41, "city": "Oslo"}\n{"age": null, "income": 2.5}\n'

    dataset = read_jsonl(text)

    assert dataset.columns == {"age": ["41", None], "city": ["Oslo", None], "income": [None, "2.5"]}


def test_jsonl_arrays_are_positional():
    assert read_jsonl("[1, true]\n[2, false]\n").columns == {"_c0": ["1", "2"], "_c1": ["true", "false"]}


def test_csv_capture_records_map_positions_to_the_baselines_feature_names():
    records = [_record("41,5000,Oslo\n35,4200.5,Bergen", content_type="text/csv", encoding="CSV")]

    dataset = from_capture(records, names=NAMES)

    assert dataset == Dataset({"age": ["41", "35"], "income": ["5000", "4200.5"], "city": ["Oslo", "Bergen"]})


def test_json_capture_records_read_instances_and_objects():
    rows = json.dumps({"instances": [[41, 5000, "Oslo"]]})
    keyed = json.dumps({"age": 35, "income": 4200.5, "city": "Bergen"})
    records = [
        _record(rows, content_type="application/json", encoding="JSON"),
        _record(keyed, content_type="application/json", encoding="JSON"),
    ]

    dataset = from_capture(records, names=NAMES)

    assert dataset.columns == {"age": ["41", "35"], "income": ["5000", "4200.5"], "city": ["Oslo", "Bergen"]}


def test_base64_capture_records_are_decoded_by_their_content_type():
    records = [
        _record(_base64("41,5000,Oslo\n"), content_type="text/csv; charset=utf-8", encoding="BASE64"),
        _record(_base64('[[35, 4200.5, "Bergen"]]'), content_type="application/json", encoding="BASE64"),
    ]

    dataset = from_capture(records, names=NAMES)

    assert dataset.columns == {"age": ["41", "35"], "income": ["5000", "4200.5"], "city": ["Oslo", "Bergen"]}


def test_requests_with_fewer_positions_leave_the_trailing_features_out():
    records = [_record("41,5000", content_type="text/csv", encoding="CSV")]

    assert from_capture(records, names=NAMES).names == ["age", "income"]


def test_unreadable_records_are_counted_and_the_output_is_never_read():
    records = [
        _record("not base64!", content_type="text/csv", encoding="BASE64"),
        _record("\x00", content_type="application/octet-stream", encoding="BASE64"),
        {"captureData": {"endpointOutput": {"data": "1", "encoding": "CSV"}}},
        _record("41,5000,Oslo", content_type="text/csv", encoding="CSV"),
    ]

    dataset = from_capture(records, names=NAMES)

    assert dataset.columns == {"age": ["41"], "income": ["5000"], "city": ["Oslo"]}
    assert dataset.unreadable == 3
