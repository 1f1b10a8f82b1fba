"""``python -m serving`` with the pipeline's packages made unimportable, as in the slim serving image.

The serving image installs only the ``serving`` extra: no Dagster, no W&B. Rather than build that
image, the end-to-end tests start the service through this launcher, whose import hook fails any
import of those packages. Availability probes (``importlib.util.find_spec``) still see them, so a
library that only checks whether W&B exists is not affected; actually importing one fails the
service, and so the test.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence
from types import ModuleType

PIPELINE_ONLY = ("dagster", "dagster_gcp", "dagster_k8s", "dagster_webserver", "dagster_postgres", "wandb")


class _Refuse(importlib.abc.Loader):
    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        raise ImportError(f"{spec.name} is not in the serving image: the service must not import it")

    def exec_module(self, module: ModuleType) -> None:  # never reached: create_module refuses
        raise ImportError(module.__name__)


class PipelineBlocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name.split(".")[0] in PIPELINE_ONLY:
            return importlib.machinery.ModuleSpec(name, _Refuse())
        return None


if __name__ == "__main__":
    sys.meta_path.insert(0, PipelineBlocker())
    runpy.run_module("serving", run_name="__main__", alter_sys=True)
