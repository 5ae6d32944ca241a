"""Model Monitor on the local SageMaker: processing jobs, data quality job definitions and monitoring schedules.

Only Model Monitor's analyzer image runs locally, as Shepherd's analyzer (``python -m shepherd.monitor.container``);
schedules fire on the local cloud's virtual clock. docs/LOCAL_SAGEMAKER.md, "Model Monitor (processing jobs and
schedules)".
"""
