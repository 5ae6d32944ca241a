"""botocore's data loader, reading the layer's trimmed copies of botocore's data first.

Cold-start savings (bench/coldstart.py): the copies count as botocore's builtin data, so endpoint rules
resolve as with the originals, and a service's existence is checked in its own folders, not by listing
some 450. docs/COLD_START.md, "botocore's data".
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from botocore.exceptions import DataNotFoundError
from botocore.loaders import Loader, instance_cache

MODELS = Path(__file__).with_name("models")


class LayerDataLoader(Loader):
    def __init__(self, extra_search_paths: list[str] | None = None) -> None:
        super().__init__(extra_search_paths=[str(MODELS), *(extra_search_paths or [])])

    def is_builtin_path(self, path: str) -> bool:
        return super().is_builtin_path(path) or Path(path).is_relative_to(MODELS)

    @instance_cache
    def load_service_model(self, service_name: str, type_name: str, api_version: str | None = None) -> Any:
        try:
            latest = self.determine_latest_version(service_name, type_name)
        except DataNotFoundError:
            # Not a service with this type of data: botocore's scan words the error (UnknownServiceError).
            return super().load_service_model(service_name, type_name, api_version)
        version = api_version or latest
        model = self.load_data(os.path.join(service_name, version, type_name))
        self._extras_processor.process(model, self._find_extras(service_name, type_name, version))
        return model


def create_loader(search_path_string: str | None) -> LayerDataLoader:
    """The loader for a session, honouring AWS_DATA_PATH (``data_path``) as botocore.loaders.create_loader does."""
    paths = [os.path.expanduser(os.path.expandvars(p)) for p in (search_path_string or "").split(os.pathsep) if p]
    return LayerDataLoader(paths)
