"""A step that needs CUDA and has none fails, saying why; "auto" keeps training wherever it runs.

The hidden-device test runs the real ``model`` asset in a fresh interpreter started with
``CUDA_VISIBLE_DEVICES=""`` (set before torch loads, so it hides a GPU on a GPU machine too), once with
``device: cuda`` in the run config and once with ``device: auto`` in a process marked as given a GPU
(``ARXIV_REQUIRE_CUDA=1``, what the GPU step's pod sets). Its only stand-ins are two tiny upstream assets
in place of ``pairs`` and ``splits``: the step must stop before it reads them for training.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from arxiv_assets.ml.hardware import REQUIRE_CUDA_ENV_VAR, resolve_device
from arxiv_assets_tests.conftest import PROJECT_ROOT

HIDDEN_DEVICE_SCRIPT = r"""
import json, os, sys, tempfile
from pathlib import Path
import dagster as dg
import pandas as pd
from datasets import Dataset, DatasetDict

from arxiv_assets.assets.training import model
from arxiv_assets.ml.hardware import REQUIRE_CUDA_ENV_VAR, resolve_device

work_dir = sys.argv[1]


@dg.asset(name="pairs")
def tiny_pairs() -> DatasetDict:
    rows = {"anchor": ["a title", "another title"], "positive": ["its abstract", "another abstract"],
            "subject": ["cs.LG", "math.AG"], "kind": ["title_abstract", "title_abstract"]}
    return DatasetDict({"train": Dataset.from_dict(rows), "eval": Dataset.from_dict(rows)})


@dg.asset(name="splits")
def tiny_splits() -> pd.DataFrame:
    return pd.DataFrame({"id": ["2501.00001", "2501.00002"], "split": ["eval", "train"]})


def materialize_model(device: str) -> dict:
    result = dg.materialize(
        [tiny_pairs, tiny_splits, model], raise_on_error=False,
        run_config=dg.RunConfig(ops={"model": {"config": {"device": device, "work_dir": work_dir,
                                                          "report_to_wandb": False}}}),
    )
    failures = result.get_step_failure_events()
    user_failure = failures[0].step_failure_data.user_failure_data if failures else None
    return {
        "success": result.success,
        "failed_steps": [event.step_key for event in failures],
        "description": user_failure.description if user_failure else None,  # a dg.Failure's, None for others
        "metadata": {key: value.value for key, value in user_failure.metadata.items()} if user_failure else {},
        "error": failures[0].step_failure_data.error.to_string() if failures else None,
        "model_materialized": bool(result.asset_materializations_for_node("model")),
    }


report = {"auto_without_requirement": resolve_device("auto"), "required_by_config": materialize_model("cuda")}
os.environ[REQUIRE_CUDA_ENV_VAR] = "1"  # what the GPU step's pod sets (arxiv_assets/k8s.py)
report["required_by_gpu_pod"] = materialize_model("auto")
report["cpu_on_a_gpu_pod"] = resolve_device("cpu")
report["left_in_tmp"] = sorted(p.name for p in Path(tempfile.gettempdir()).iterdir())
print("REPORT " + json.dumps(report))
"""


@pytest.fixture(scope="module")
def hidden_device_report(tmp_path_factory: pytest.TempPathFactory) -> dict:
    env = {name: value for name, value in os.environ.items() if name != REQUIRE_CUDA_ENV_VAR}
    env.update({"CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "none", "WANDB_MODE": "offline",
                "TMPDIR": str(tmp_path_factory.mktemp("tmp"))})  # to see what the failed steps leave there
    done = subprocess.run(
        [sys.executable, "-c", HIDDEN_DEVICE_SCRIPT, str(tmp_path_factory.mktemp("train-work"))],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
    return json.loads(line.removeprefix("REPORT "))


@pytest.mark.parametrize("case", ["required_by_config", "required_by_gpu_pod"])
def test_the_model_step_with_cuda_required_and_the_device_hidden_fails_saying_why(
    hidden_device_report: dict, case: str,
) -> None:
    outcome = hidden_device_report[case]
    assert not outcome["success"] and outcome["failed_steps"] == ["model"]
    assert not outcome["model_materialized"]
    description = outcome["description"]
    assert description, f"the step did not fail with a dg.Failure: {outcome['error']}"
    assert description.startswith("CUDA was required")
    assert "torch.cuda.is_available() is False" in description
    assert "the step stops instead of training on the CPU" in description
    assert "CUDA_VISIBLE_DEVICES: ''" in description  # the hidden device, as the process saw it
    assert "NVIDIA_VISIBLE_DEVICES: 'none'" in description
    assert "torch built with CUDA: " in description
    assert "run the step in the CUDA image" in description or "check that the pod was given one" in description
    assert "device: cpu" in description  # how to train on the CPU on purpose
    metadata = outcome["metadata"]
    assert metadata["CUDA_VISIBLE_DEVICES"] == "''" and metadata["torch.cuda.is_available()"] == "False"
    if case == "required_by_config":
        assert metadata["requested device"] == "cuda"
        assert "device='cuda' in the run config" in description
    else:
        assert metadata["requested device"] == "auto"
        assert f"{REQUIRE_CUDA_ENV_VAR}=1" in metadata["CUDA required by"]


def test_auto_trains_on_the_cpu_when_no_gpu_is_visible_and_cpu_wins_on_a_gpu_pod(hidden_device_report: dict) -> None:
    assert hidden_device_report["auto_without_requirement"] == "cpu"  # a laptop: no error, the CPU
    assert hidden_device_report["cpu_on_a_gpu_pod"] == "cpu"  # an explicit choice is honoured


def test_auto_takes_cuda_exactly_where_torch_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    monkeypatch.delenv(REQUIRE_CUDA_ENV_VAR, raising=False)
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="choose one of"):
        resolve_device("gpu")  # type: ignore[arg-type]


def test_a_model_step_that_failed_leaves_no_model_folder_in_the_temp_directory(hidden_device_report: dict) -> None:
    assert not [name for name in hidden_device_report["left_in_tmp"] if name.startswith("arxiv-model-")]
