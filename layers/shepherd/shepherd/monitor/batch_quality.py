"""Model quality of Batch Transform outputs: ground truth uploaded for a scored file, joined with its scores by row.

BatchTransform sets no DataCaptureConfig, so its records carry no id to join labels on (Model Monitor joins batch
labels through the transform job's own capture: the guide's "Ingest Ground Truth labels and merge them with
predictions"). Shepherd's convention instead: labels under ``feedback/<model>/batch/<run>/<file>.labels``, one per
line in the input's record order (a blank line: that record has none), or JSON Lines ``{"row": n, "label": v}``
(n from 1), joined with the lines of ``batch/<model>/output/<run>/<file>.out``. A file that does not fit is refused
whole with its reason: nothing is dropped quietly. docs/MONITORING.md, "Model quality of Batch Transform outputs".
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from shepherd.monitor.model_quality import Labelled
from shepherd.rollout.quality import first_value

# Model Monitor's batch namespace for model quality, beside its batch data-metrics one, with the MonitoringSchedule
# dimension (SageMaker guide, "Model quality metrics and Amazon CloudWatch monitoring",
# https://docs.aws.amazon.com/sagemaker/latest/dg/model-monitor-model-quality-metrics.html).
NAMESPACE = "aws/sagemaker/ModelMonitoring/model-metrics"
SUFFIX = ".labels"
MAX_BYTES = 32 * 2**20  # labels or outputs larger than this are refused, not read by the function
SUMMARY_NAME = "_summary.json"  # shepherd.batch.SUMMARY_NAME: the run's summary beside its outputs


class Refused(ValueError):
    """A labels file that cannot be joined with its batch's outputs; the message says why and what to upload."""


def labels_prefix(model: str) -> str:
    return f"feedback/{model}/batch/"


@dataclass(frozen=True)
class LabelsFile:
    """``feedback/<model>/batch/<run>/<file>.labels``: the labels of one scored file of one BatchTransform run."""

    model: str
    run: str
    file: str

    @property
    def output_key(self) -> str:
        """Where BatchTransform wrote the file's scores (shepherd.batch.output_key)."""
        return f"batch/{self.model}/output/{self.run}/{self.file}.out"

    @property
    def summary_key(self) -> str:
        return f"batch/{self.model}/output/{self.run}/{SUMMARY_NAME}"


def labels_file(model: str, key: str) -> LabelsFile | None:
    """The labels file a key under labels_prefix(model) is, or None for any other object there."""
    rest = key.removeprefix(labels_prefix(model))
    run, _, name = rest.partition("/")
    if rest == key or not run or not name.endswith(SUFFIX) or "/" in name or name == SUFFIX:
        return None
    return LabelsFile(model, run, name.removesuffix(SUFFIX))


def _labels(text: str, records: int) -> list[str | None]:
    """The label of each record (None: none given), from plain lines or JSON Lines with a row number."""
    lines = text.splitlines()
    if not any(line.strip().startswith("{") for line in lines):
        if len(lines) != records:
            raise Refused(
                f"{len(lines)} labels for {records} scored records: upload one label per line, in the input's "
                'record order (a blank line for a record without one), or JSON Lines {"row": n, "label": v}'
            )
        return [first_value(line) for line in lines]
    labels: list[str | None] = [None] * records
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            row, label = item["row"], item["label"]
        except (ValueError, TypeError, KeyError):
            raise Refused(f'line {number}: not a JSON object with "row" and "label"') from None
        if not isinstance(row, int) or isinstance(row, bool) or not 1 <= row <= records:
            raise Refused(f"line {number}: row {row!r} is not a record of the output (1 to {records})")
        if labels[row - 1] is not None:
            raise Refused(f"line {number}: row {row} is labelled twice")
        labels[row - 1] = first_value(str(label))
    return labels


def join(outputs: str, labels: str) -> list[Labelled]:
    """Each scored record that has a label, as (prediction, label); Refused when the two do not line up."""
    scores = outputs.splitlines()
    if not scores:
        raise Refused("the batch's output has no records")
    joined = []
    for number, (score, label) in enumerate(zip(scores, _labels(labels, len(scores)), strict=True), 1):
        if label is None:
            continue
        prediction = first_value(score)
        if prediction is None:
            raise Refused(f"record {number} of the output has no prediction to compare its label with")
        joined.append(Labelled(prediction=prediction, label=label))
    if not joined:
        raise Refused("no record has a label")
    return joined
