"""A training job's /opt/ml tree at a real path, and what the toolkit tells the script about it."""

from __future__ import annotations

import json
import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcloud.sagemaker.training_plan import TrainingPlan, channel_path
from localcloud.sagemaker.training_toolkit import HOST, module_name, to_cmd_args, to_env_vars


@dataclass(frozen=True)
class Layout:
    """A job's /opt/ml, at a real path."""

    base: Path

    @property
    def input(self) -> Path:
        return self.base / "input"

    @property
    def config(self) -> Path:
        return self.input / "config"

    @property
    def data(self) -> Path:
        return self.input / "data"

    @property
    def model(self) -> Path:
        return self.base / "model"

    @property
    def output(self) -> Path:
        return self.base / "output"

    @property
    def output_data(self) -> Path:
        return self.output / "data"

    @property
    def intermediate(self) -> Path:
        return self.output / "intermediate"

    @property
    def failure(self) -> Path:
        return self.output / "failure"

    @property
    def code(self) -> Path:
        return self.base / "code"

    def fresh(self) -> None:
        """A new instance's empty tree (a spot restart starts from scratch, then re-downloads)."""
        shutil.rmtree(self.base, ignore_errors=True)
        for path in (self.config, self.data, self.model, self.output_data, self.intermediate, self.code):
            path.mkdir(parents=True, exist_ok=True)


def resource_config(plan: TrainingPlan) -> dict[str, Any]:
    return {
        "current_host": HOST,
        "current_instance_type": plan.instance_type,
        "current_group_name": "homogeneousCluster",
        "hosts": [HOST],
        "instance_groups": [
            {"instance_group_name": "homogeneousCluster", "instance_type": plan.instance_type, "hosts": [HOST]}
        ],
        "network_interface_name": "eth0",
    }


def toolkit_environment(plan: TrainingPlan, layout: Layout) -> dict[str, str]:
    """The variables sagemaker-training sets for the entry point (Environment.to_env_vars), plus the container's."""
    resources = resource_config(plan)
    input_data_config = {c.name: c.config for c in plan.channels}
    channel_dirs = {c.name: str(layout.data / c.name) for c in plan.channels}
    local_code = channel_path(plan.submit_directory, plan.channels)
    module_dir = str(layout.base / local_code) if local_code is not None else plan.submit_directory
    log_level = plan.sagemaker_settings.get("sagemaker_container_log_level", logging.INFO)
    user_args = to_cmd_args(plan.hyperparameters)
    properties: dict[str, Any] = {
        "additional_framework_parameters": plan.framework_params,
        "channel_input_dirs": channel_dirs,
        "current_host": HOST,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [HOST],
        "current_instance_type": plan.instance_type,
        "distribution_hosts": [],
        "distribution_instance_groups": [],
        "framework_module": plan.framework_module,
        "hosts": [HOST],
        "hyperparameters": plan.hyperparameters,
        "input_config_dir": str(layout.config),
        "input_data_config": input_data_config,
        "input_dir": str(layout.input),
        "instance_groups": ["homogeneousCluster"],
        "instance_groups_dict": {g["instance_group_name"]: g for g in resources["instance_groups"]},
        "is_hetero": False,
        "is_master": True,
        "is_modelparallel_enabled": None,
        "job_name": plan.job_name,
        "log_level": log_level,
        "master_hostname": HOST,
        "model_dir": str(layout.model),
        "module_dir": module_dir,
        "module_name": module_name(plan.program),
        "network_interface_name": "eth0",
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "output_data_dir": str(layout.output_data),
        "output_dir": str(layout.output),
        "output_intermediate_dir": str(layout.intermediate),
        "resource_config": resources,
        "user_entry_point": plan.program,
    }
    env: dict[str, Any] = {
        "hosts": [HOST],
        "network_interface_name": "eth0",
        "hps": plan.hyperparameters,
        "user_entry_point": plan.program,
        "framework_params": plan.framework_params,
        "resource_config": resources,
        "input_data_config": input_data_config,
        "output_data_dir": str(layout.output_data),
        "channels": sorted(channel_dirs),
        "current_host": HOST,
        "current_instance_type": plan.instance_type,
        "current_instance_group": "homogeneousCluster",
        "current_instance_group_hosts": [HOST],
        "instance_groups": ["homogeneousCluster"],
        "instance_groups_dict": properties["instance_groups_dict"],
        "distribution_instance_groups": [],
        "is_hetero": False,
        "module_name": module_name(plan.program),
        "log_level": log_level,
        "framework_module": plan.framework_module,
        "input_dir": str(layout.input),
        "input_config_dir": str(layout.config),
        "output_dir": str(layout.output),
        "num_cpus": os.cpu_count() or 1,
        "num_gpus": 0,
        "model_dir": str(layout.model),
        "module_dir": module_dir,
        "training_env": properties,
        "user_args": user_args,
        "output_intermediate_dir": str(layout.intermediate),
    }
    env.update({f"channel_{name}": path for name, path in channel_dirs.items()})
    env.update({f"hp_{key}": value for key, value in plan.hyperparameters.items()})
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return {
        # The container's own settings, then what the toolkit exports before it runs the entry point.
        "SAGEMAKER_TRAINING_MODULE": plan.framework_module,
        "SAGEMAKER_BASE_DIR": str(layout.base),
        "TRAINING_JOB_NAME": plan.job_name,
        "TRAINING_JOB_ARN": plan.job_arn,
        "CURRENT_HOST": HOST,
        "SAGEMAKER_JOB_NAME": str(plan.sagemaker_settings.get("sagemaker_job_name", "")),
        "SAGEMAKER_REGION": str(plan.sagemaker_settings.get("sagemaker_region", region)),
        "PYTHONUNBUFFERED": "TRUE",
        "PYTHONDONTWRITEBYTECODE": "TRUE",
        **to_env_vars(env),
    }


def write_config(plan: TrainingPlan, layout: Layout) -> None:
    """The toolkit's input/config files, and the checkpoint directory the script resumes from."""
    config = layout.config
    (config / "hyperparameters.json").write_text(json.dumps(plan.raw_hyperparameters))
    (config / "resourceconfig.json").write_text(json.dumps(resource_config(plan)))
    (config / "inputdataconfig.json").write_text(json.dumps({c.name: c.config for c in plan.channels}))
    if plan.checkpoint_uri:
        (layout.base / plan.checkpoint_path).mkdir(parents=True, exist_ok=True)
