"""Which processing images run locally, and whether the account may still use Model Monitor."""

from __future__ import annotations

import os
import re

from localcloud.sagemaker.control_plane import REGION, SageMakerError

# The registry of sagemaker.image_uris.retrieve("model-monitor", "us-east-1") in the SageMaker Python SDK
# (image_uri_config/model-monitor.json); the local cloud is one region, us-east-1.
ANALYZER_IMAGE = f"156813124566.dkr.ecr.{REGION}.amazonaws.com/sagemaker-model-monitor-analyzer"
# Model Monitor's ground-truth merger, which a model-quality execution runs first (its requests as AWS logs them).
MERGER_IMAGE = f"156813124566.dkr.ecr.{REGION}.amazonaws.com/sagemaker-model-monitor-groundtruth-merger"
_RUNNABLE = re.compile(f"({re.escape(ANALYZER_IMAGE)}|{re.escape(MERGER_IMAGE)})" + r"(:[\w.-]+)?")
SETTING = "SHEPHERD_LOCAL_MODEL_MONITOR"  # "closed": behave as an account created after Model Monitor closed


def refuse_unsupported_image(image_uri: str) -> None:
    """Only Model Monitor's analyzer and ground-truth merger run locally (as Shepherd's analyzer); any other image
    is refused up front."""
    if not _RUNNABLE.fullmatch(image_uri):
        raise SageMakerError(
            f"The local SageMaker runs only Model Monitor's analyzer image ({ANALYZER_IMAGE}) and its ground-truth "
            f"merger ({MERGER_IMAGE}) in processing jobs, not {image_uri}."
        )


def refuse_if_closed(operation: str) -> None:
    """Model Monitor is closed to new customers ("Model Monitor availability change", SageMaker guide).

    AWS documents no error for it: the wording and the code (AccessDeniedException) are Shepherd's.
    """
    if os.environ.get(SETTING, "").strip().lower() == "closed":
        raise SageMakerError(
            f"{operation}: Amazon SageMaker Model Monitor is not available to this account; it is no longer open "
            f"to new customers ({SETTING}=closed).",
            code="AccessDeniedException",
        )
