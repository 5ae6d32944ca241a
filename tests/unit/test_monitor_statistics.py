"""shepherd.monitor.statistics and .sketch: statistics.json as documented in the SageMaker developer guide's
"Schema for Statistics (statistics.json file)", with KLL sketches in its level layout.

Datasets here stay under the sketch's k (2048) values per feature, where a KLL sketch keeps every value: DataSketches
compacts with an unseeded random generator, so larger sketches would differ from run to run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from jsonschema import Draft202012Validator
from shepherd.monitor.dataset import Dataset, read_csv
from shepherd.monitor.sketch import K, Sketch
from shepherd.monitor.statistics import merge, profile

SCHEMA = json.loads((Path(__file__).parents[2] / "schemas" / "model_monitor" / "statistics.schema.json").read_text())


def _feature(statistics: dict, name: str) -> dict:
    return next(feature for feature in statistics["features"] if feature["name"] == name)


def _valid(document: dict) -> dict:
    Draft202012Validator(SCHEMA).validate(document)
    return document


def _numbers(rng: np.random.Generator, n: int) -> list[str | None]:
    return [f"{value:.4f}" for value in rng.normal(50.0, 10.0, n)]


def test_the_schema_refuses_what_the_documented_format_does_not_allow():
    # Given a valid profile, then the same with a numerical feature missing its KLL buckets
    document = profile(read_csv("1\n2\n", header=False))
    broken = json.loads(json.dumps(document))
    del broken["features"][0]["numerical_statistics"]["distribution"]["kll"]["buckets"]

    # Then the schema holds the first and refuses the second
    assert not list(Draft202012Validator(SCHEMA).iter_errors(document))
    assert list(Draft202012Validator(SCHEMA).iter_errors(broken))


def test_types_are_inferred_per_column_as_model_monitors_engine_does():
    text = "1,1.5,a,\n-2,2,b,\n+3,1e-3,3,\n"

    statistics = _valid(profile(read_csv(text, header=False, names=["i", "f", "s", "u"])))

    assert [feature["inferred_type"] for feature in statistics["features"]] == [
        "Integral",
        "Fractional",
        "String",
        "Unknown",
    ]
    assert _feature(statistics, "f")["data_type_counts"] == {"Fractional": 2, "Integral": 1}


def test_numerical_statistics_hold_exact_moments_and_ten_buckets():
    # Given the values 0..19 and two missing cells
    cells: list[str | None] = [str(value) for value in range(20)] + [None, None]

    statistics = _valid(profile(Dataset({"x": cells}), dataset_name="train"))

    numerical = _feature(statistics, "x")["numerical_statistics"]
    assert statistics["dataset"] == {"item_count": 22, "name": "train"}
    assert numerical["common"] == {"num_present": 20, "num_missing": 2}
    assert (numerical["sum"], numerical["mean"], numerical["min"], numerical["max"]) == (190.0, 9.5, 0.0, 19.0)
    assert numerical["std_dev"] == pytest.approx(math.sqrt((20**2 - 1) / 12))  # population std of 0..19
    buckets = numerical["distribution"]["kll"]["buckets"]
    assert [bucket["count"] for bucket in buckets] == [2.0] * 10
    assert buckets[0]["lower_bound"] == 0.0
    assert buckets[-1]["upper_bound"] == 19.0


def test_up_to_k_values_the_sketch_is_one_level_holding_every_value():
    rng = np.random.default_rng(11)
    cells = _numbers(rng, 500)

    sketch = _feature(profile(Dataset({"x": cells})), "x")["numerical_statistics"]["distribution"]["kll"]["sketch"]

    assert sketch["parameters"]["k"] == K
    assert sketch["data"] == [sorted(float(cell) for cell in cells if cell is not None)]


def test_beyond_k_values_levels_hold_items_weighing_a_power_of_two_each():
    values = np.arange(10 * K, dtype=float)

    sketch = Sketch.of(values)

    assert len(sketch.levels) > 1
    assert sketch.count == len(values)  # Σ len(level h)·2^h: every value is accounted for
    assert sketch.document()["data"] == [list(level) for level in sketch.levels]


def test_string_statistics_count_distinct_values_most_frequent_first():
    dataset = Dataset({"city": ["Oslo", "Bergen", "Oslo", None, "Tromsø", "Oslo", "Bergen"]})

    strings = _feature(_valid(profile(dataset)), "city")["string_statistics"]

    assert strings["common"] == {"num_present": 6, "num_missing": 1}
    assert strings["distinct_count"] == 3
    assert strings["distribution"]["categorical"]["buckets"] == [
        {"value": "Oslo", "count": 3},
        {"value": "Bergen", "count": 2},
        {"value": "Tromsø", "count": 1},
    ]


def test_merged_statistics_equal_the_statistics_of_both_parts_together():
    # Given two parts of one dataset, within k values together so every sketch is exact
    rng = np.random.default_rng(5)
    first = Dataset({"x": _numbers(rng, 300), "city": [str(c) for c in rng.choice(["a", "b"], 300)]})
    second = Dataset({"x": [*_numbers(rng, 200), None], "city": [*(str(c) for c in rng.choice(["b", "c"], 200)), "a"]})
    whole = Dataset({name: first.columns[name] + second.columns[name] for name in first.columns})

    # When their statistics are merged
    merged = _valid(merge(profile(first), profile(second)))

    # Then they are the statistics of the whole, up to float rounding
    expected = profile(whole)
    assert merged["dataset"]["item_count"] == 501
    assert _feature(merged, "city") == _feature(expected, "city")
    got, want = _feature(merged, "x")["numerical_statistics"], _feature(expected, "x")["numerical_statistics"]
    assert got["common"] == want["common"]
    assert got["distribution"]["kll"]["sketch"] == want["distribution"]["kll"]["sketch"]
    assert got["distribution"]["kll"]["buckets"] == want["distribution"]["kll"]["buckets"]
    for key in ("mean", "sum", "std_dev", "min", "max"):
        assert got[key] == pytest.approx(want[key], rel=1e-9)


def test_a_column_one_part_lacks_counts_as_missing_there():
    merged = merge(profile(Dataset({"x": ["1", "2"]})), profile(Dataset({"y": ["a", "b", "c"]})))

    x, y = _feature(merged, "x"), _feature(merged, "y")
    assert x["numerical_statistics"]["common"] == {"num_present": 2, "num_missing": 3}
    assert y["string_statistics"]["common"] == {"num_present": 3, "num_missing": 2}


def test_a_column_that_turned_to_strings_merges_as_string():
    merged = _valid(merge(profile(Dataset({"x": ["1", "2"]})), profile(Dataset({"x": ["one"]}))))

    feature = _feature(merged, "x")
    assert feature["inferred_type"] == "String"
    assert feature["data_type_counts"] == {"Integral": 2, "String": 1}
    assert feature["string_statistics"]["distinct_count"] == 3


def test_merging_sketches_beyond_capacity_compacts_reproducibly_and_keeps_ranks():
    # Given two exact sketches of k values each: 0..k-1 and k..2k-1
    low = Sketch((tuple(float(v) for v in range(K)),))
    high = Sketch((tuple(float(v) for v in range(K, 2 * K)),))

    # When merged (2k values exceed level 0's capacity of k)
    merged = low.merge(high)

    # Then every value is accounted for, the result is reproducible, and ranks stay within KLL's error
    assert merged.count == 2 * K
    assert len(merged.levels) == 2
    assert merged == low.merge(high)
    assert merged.rank([K - 0.5])[0] == pytest.approx(K, rel=0.01)
