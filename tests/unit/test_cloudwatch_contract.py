"""Contract tests: every moto CloudWatch internal that localcloud/moto/cloudwatch.py patches or reads.

localcloud/cloudwatch/ reads the alarms and queries moto builds: their attributes are held here too.

Patched methods keep moto's original as ``__wrapped__``; checks unwrap first so they hold
whether or not a local cloud was started earlier in the session. When a moto upgrade moves
or reshapes one of these, a test here fails by name: fix the patch, then this contract.
"""

from __future__ import annotations

import inspect
import re
import types
from datetime import UTC, datetime

import botocore.session


def _params(obj: object) -> list[str]:
    return list(inspect.signature(inspect.unwrap(obj)).parameters)  # type: ignore[arg-type]


def test_backend_methods_we_replace_keep_their_signatures():
    from moto.cloudwatch.models import CloudWatchBackend

    assert _params(CloudWatchBackend.put_metric_data) == ["self", "namespace", "metric_data"]
    assert _params(CloudWatchBackend.get_metric_data) == ["self", "queries", "start_time", "end_time", "scan_by"]
    assert _params(CloudWatchBackend.get_metric_statistics) == [
        "self",
        "namespace",
        "metric_name",
        "start_time",
        "end_time",
        "period",
        "stats",
        "dimensions",
        "unit",
    ]
    assert _params(CloudWatchBackend.set_alarm_state) == ["self", "alarm_name", "reason", "reason_data", "state_value"]
    assert _params(CloudWatchBackend._validate_parameters_put_metric_data) == ["self", "metric", "query_num"]


def test_put_metric_alarm_arguments_we_read_and_rewrite():
    from moto.cloudwatch.models import CloudWatchBackend

    params = set(_params(CloudWatchBackend.put_metric_alarm))
    assert {"name", "statistic", "extended_statistic", "metric_data_queries", "rule"} <= params
    source = inspect.getsource(inspect.unwrap(CloudWatchBackend.put_metric_alarm))
    assert "self.alarms[name] = alarm" in source
    assert "return alarm" in source


def test_backend_state_we_use():
    from moto.cloudwatch.models import CloudWatchBackend

    init = inspect.getsource(CloudWatchBackend.__init__)
    assert "self.alarms" in init
    assert "self.metric_data" in init
    assert isinstance(CloudWatchBackend.__dict__["aws_metric_data"], property)
    # Our store lives in the backend's __dict__, which reset() empties.
    from moto.core.base_backend import BaseBackend

    assert "self.__dict__ = {}" in inspect.getsource(BaseBackend.reset)


def test_backend_dict_is_nested_plain_dicts():
    from moto.cloudwatch.models import cloudwatch_backends
    from moto.core.base_backend import AccountSpecificBackend, BackendDict

    assert isinstance(cloudwatch_backends, BackendDict)
    assert issubclass(BackendDict, dict)
    assert issubclass(AccountSpecificBackend, dict)


def test_alarm_attributes_we_read_and_write():
    from moto.cloudwatch.models import Alarm

    init = inspect.getsource(Alarm.__init__)
    for attribute in (
        "region_name",
        "name",
        "alarm_arn",
        "namespace",
        "metric_name",
        "metric_data_queries",
        "comparison_operator",
        "evaluation_periods",
        "datapoints_to_alarm",
        "period",
        "threshold",
        "statistic",
        "extended_statistic",
        "description",
        "dimensions",
        "actions_enabled",
        "alarm_actions",
        "ok_actions",
        "insufficient_data_actions",
        "unit",
        "configuration_updated_timestamp",
        "treat_missing_data",
        "evaluate_low_sample_count_percentile",
        "history",
        "state_reason",
        "state_reason_data",
        "state_value",
        "state_updated_timestamp",
        "rule",
    ):
        assert re.search(rf"self\.{attribute}(: [^=]+)? =", init), attribute
    assert _params(Alarm.update_state) == ["self", "reason", "reason_data", "state_value"]


def test_metric_query_models():
    from moto.cloudwatch.models import Dimension, Metric, MetricDataQuery, MetricDatum, MetricStat

    assert _params(MetricDataQuery.__init__) == [
        "self",
        "query_id",
        "label",
        "period",
        "return_data",
        "expression",
        "metric_stat",
    ]
    for attribute in ("id", "label", "period", "return_data", "expression", "metric_stat"):
        assert f"self.{attribute} =" in inspect.getsource(MetricDataQuery.__init__)
    assert _params(MetricStat.__init__) == ["self", "metric", "period", "stat", "unit"]
    assert _params(Metric.__init__) == ["self", "metric_name", "namespace", "dimensions"]
    assert _params(Dimension.__init__) == ["self", "name", "value"]
    assert _params(MetricDatum.__init__) == ["self", "namespace", "name", "value", "dimensions", "timestamp", "unit"]


def test_the_metric_datums_we_read_and_add():
    """localcloud.moto.cloudwatch reads provided metrics (S3 bucket sizes), adds a datum per series for ListMetrics."""
    from moto.cloudwatch.models import MetricDatum

    from localcloud.moto.cloudwatch import ProvidedDatum, list_metric, provided_metric_data

    dims = [{"Name": "BucketName", "Value": "b"}]
    moment = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    backend = types.SimpleNamespace(metric_data=[])
    list_metric(backend, namespace="AWS/S3", name="BucketSizeBytes", dimensions=dims, timestamp=moment, unit="Bytes")
    (datum,) = backend.metric_data
    assert isinstance(datum, MetricDatum)
    assert datum.timestamp == moment.replace(tzinfo=None)  # moto keeps naive UTC
    backend.aws_metric_data = [datum]
    assert provided_metric_data(backend) == [
        ProvidedDatum("AWS/S3", "BucketSizeBytes", dims, moment.replace(tzinfo=None), "Bytes", 0.0)
    ]


def test_response_handlers():
    from moto.cloudwatch.responses import CloudWatchResponse
    from moto.core import responses
    from moto.core.utils import method_names_from_class

    assert isinstance(CloudWatchResponse.__dict__["cloudwatch_backend"], property)
    assert hasattr(responses, "ActionResult")
    for name in ("_get_param", "_get_params"):
        assert hasattr(CloudWatchResponse, name)
    original = inspect.getsource(inspect.unwrap(CloudWatchResponse.get_metric_statistics))
    assert 'extended_statistics = self._get_param("ExtendedStatistics")' in original
    get_metric_data = inspect.getsource(CloudWatchResponse.get_metric_data)
    assert "start_time=start, end_time=end, queries=queries, scan_by=scan_by" in get_metric_data
    # Actions dispatch to any plain function on the class, so adding describe_alarm_history works.
    assert "method_names_from_class(self.__class__)" in inspect.getsource(responses.BaseResponse.call_action)
    assert "inspect.isfunction" in inspect.getsource(method_names_from_class)


def test_exceptions():
    from moto.cloudwatch import exceptions

    for name in ("InvalidParameterValue", "InvalidParameterCombination", "ValidationError"):
        assert issubclass(getattr(exceptions, name), exceptions.CloudWatchException)


def test_sns_publish_seam():
    from moto.sns.models import SNSBackend, sns_backends

    assert sns_backends is not None
    assert {"message", "arn", "subject"} <= set(_params(SNSBackend.publish))


def test_botocore_models_the_shapes_we_return():
    model = botocore.session.get_session().get_service_model("cloudwatch")
    history = model.operation_model("DescribeAlarmHistory")
    assert set(history.output_shape.members) >= {"AlarmHistoryItems", "NextToken"}
    item = history.output_shape.members["AlarmHistoryItems"].member
    assert set(item.members) >= {
        "AlarmName",
        "AlarmType",
        "Timestamp",
        "HistoryItemType",
        "HistorySummary",
        "HistoryData",
    }
    datapoint = model.operation_model("GetMetricStatistics").output_shape.members["Datapoints"].member
    assert set(datapoint.members) >= {"Timestamp", "Sum", "SampleCount", "ExtendedStatistics", "Unit"}
    result = model.operation_model("GetMetricData").output_shape.members["MetricDataResults"].member
    assert set(result.members) >= {"Id", "Label", "Timestamps", "Values", "StatusCode", "Messages"}
    alarm = model.operation_model("DescribeAlarms").output_shape.members["MetricAlarms"].member
    assert "StateTransitionedTimestamp" in alarm.members
