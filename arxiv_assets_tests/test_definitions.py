"""The code location loads the way `dagster dev` and the CLI load it, and the repository lints clean."""

import os
import subprocess

import dagster as dg
import pytest

from .conftest import PROJECT_ROOT, VENV_BIN

DATA_AND_BASELINE = {"raw_papers", "splits", "pairs", "tfidf_baseline"}


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    from arxiv_assets.definitions import defs

    return defs




def test_dagster_cli_validates_the_code_location(tmp_path, dagster_home):
    completed = subprocess.run(
        [str(VENV_BIN / "dagster"), "definitions", "validate", "-m", "arxiv_assets.definitions"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300,
        env={**os.environ, "DAGSTER_DEPLOYMENT": "local", "ARXIV_ARTIFACTS_URI": str(tmp_path / "artifacts")},
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "Validation successful for code location arxiv_assets.definitions" in output
    assert not (tmp_path / "artifacts").exists()  # loading the code location writes no artifacts


def test_every_expected_asset_and_check_is_defined(defs):
    dg.Definitions.validate_loadable(defs)
    keys = {key.to_user_string() for key in defs.resolve_all_asset_keys()}
    assert keys >= DATA_AND_BASELINE, keys
    graph = defs.resolve_asset_graph()
    checks = {key.name for key in graph.asset_check_keys if key.asset_key == dg.AssetKey("raw_papers")}
    assert checks == {"ids_unique", "title_and_abstract_non_empty", "categories_are_arxiv_codes",
                      "row_count_positive"}
    parents = {key: {p.to_user_string() for p in graph.get(dg.AssetKey(key)).parent_keys} for key in DATA_AND_BASELINE}
    assert parents == {"raw_papers": set(), "splits": {"raw_papers"}, "pairs": {"splits"},
                       "tfidf_baseline": {"splits"}}
    raw = graph.get(dg.AssetKey("raw_papers"))
    assert raw.partitions_def is not None
    assert raw.partitions_def.get_first_partition_key() == "2025-03-01"


def test_local_deployment_resources(defs):
    from arxiv_assets.resources.io_manager import ArtifactIOManager
    from arxiv_assets.resources.paper_source import PaperSource

    resources = defs.resources
    assert isinstance(resources["io_manager"], ArtifactIOManager)
    assert isinstance(resources["paper_source"], PaperSource)
    assert resources["paper_source"].kind == "bundled"  # `make run` needs no network


def test_ruff_is_clean():
    completed = subprocess.run([str(VENV_BIN / "ruff"), "check", "."], cwd=PROJECT_ROOT, capture_output=True, text=True,
                               timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
