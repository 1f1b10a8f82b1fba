"""``dagster asset materialize`` from the command line, as CI and ``make run`` call it.

A real CLI invocation with ``ARXIV_PROFILE=smoke`` against a temporary DAGSTER_HOME (the project's
dagster.yaml): ``--select`` the data and baseline assets, ``--partition`` one month of raw_papers, in
one run (the unpartitioned assets downstream read the months materialized so far). ``--config-json``
picks the in-process executor: the default one starts a process per step, and each re-imports the
code location (about 10 s apiece on a 2-core machine). The run lands in that instance, the artifacts
next to it, and the smoke profile's settings (not the default profile's) shaped them.
"""

from __future__ import annotations

import json
import subprocess

import dagster as dg
import pandas as pd

from arxiv_assets.profiles import run_config
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets_tests.conftest import PROJECT_ROOT, VENV_BIN

from .conftest import subprocess_env

MONTH = "2026-06-01"  # a month with two seen subjects (cs.IT, astro-ph.IM) above the smoke profile's minimum


def _materialize(home, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(VENV_BIN / "dagster"), "asset", "materialize", "-m", "arxiv_assets.definitions", *args],
        cwd=PROJECT_ROOT, env=subprocess_env(DAGSTER_HOME=str(home), ARXIV_PROFILE="smoke"),
        capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


def test_cli_materializes_a_partition_and_its_downstream(dagster_home):
    home = dagster_home

    _materialize(home, "--select", "raw_papers,splits,pairs,tfidf_baseline", "--partition", MONTH,
                 "--config-json", json.dumps({"execution": {"config": {"in_process": {}}}}))

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        assert run.is_success and run.tags["dagster/partition"] == MONTH
        raw = instance.get_latest_materialization_event(dg.AssetKey("raw_papers"))
        assert raw.asset_materialization.partition == MONTH
        for key in ("splits", "pairs", "tfidf_baseline"):
            assert instance.get_latest_materialization_event(dg.AssetKey(key)).run_id == run.run_id, key

    store = ArtifactStore(str(home / "artifacts"))
    splits = store.load_latest("splits")
    assert isinstance(splits, pd.DataFrame)
    assert splits["published"].str.startswith(MONTH[:7]).all()  # only the month the first command loaded
    assert splits["primary_subject"].nunique() >= 2
    smoke = run_config("smoke").ops
    assert splits.groupby("primary_subject").size().max() <= smoke["splits"]["config"]["max_papers_per_subject"]
    assert len(store.load_latest("pairs")["train"]) == smoke["pairs"]["config"]["train_pairs"]
    assert store.load_latest("tfidf_baseline")["headline"]["test/papers"] == int((splits["split"] == "test").sum())
    assert "new" not in set(splits["split"])  # one month loaded: it is not held out, it is all there is to train on
