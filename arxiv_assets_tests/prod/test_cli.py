"""``dagster asset materialize`` from the command line, as CI and ``make run`` call it.

A real CLI invocation with ``ARXIV_PROFILE=smoke`` against a temporary DAGSTER_HOME (the project's
dagster.yaml): ``--select`` the data and baseline assets, ``--partition`` one month of raw_papers, in
one run (the unpartitioned assets downstream read the months materialized so far). ``--config-json``
picks the in-process executor: the default one starts a process per step, and each re-imports the
code location (about 10 s apiece on a 2-core machine). The run lands in that instance, the artifacts
next to it, and the smoke profile's settings (not the default profile's) shaped them. The embedding test
keeps Dagster's default multiprocess executor: that is what it checks.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import dagster as dg
import pandas as pd

from arxiv_assets.assets.config import run_config
from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, EMBEDDING_COLUMNS, resolve_model_source
from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets.storage.releases import Promotion, write_promotion
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


def test_cli_embeds_a_range_of_months_in_one_multiprocess_run_then_indexes_them(dagster_home, sample_papers):
    """``make run``'s last two commands: every month of paper_embeddings in one run (the local single-run
    backfill), with Dagster's default multiprocess executor, then faiss_index reading them."""
    months = ["2025-04-01", "2025-05-01", "2025-06-01"]
    papers = sample_papers[sample_papers["published"].str[:7].isin([m[:7] for m in months])]
    subjects = papers["primary_subject"].value_counts().index[:4]  # 12 papers each: P@10 has neighbours to find
    papers = papers[papers["primary_subject"].isin(subjects)].groupby("primary_subject").head(12)
    splits = papers.assign(split="test", probe=False).reset_index(drop=True)
    store = ArtifactStore(str(dagster_home / "artifacts"))
    store.publish("splits", splits)
    model_dir = dagster_home.parent / "model"
    shutil.copytree(resolve_model_source(BUNDLED_BASE_MODEL), model_dir)
    write_promotion(model_dir, Promotion("base", "test", model_fingerprint(model_dir), [], None))
    store.publish("promoted_model", model_dir)
    store.publish("evaluation_embeddings", pd.DataFrame(columns=list(EMBEDDING_COLUMNS)))  # nothing evaluated

    _materialize(dagster_home, "--select", "onnx_model", "--config-json",
                 json.dumps({"ops": {"onnx_model": {"config": {"parity_texts": 32}}}}))  # 16 left to calibrate
    embedded = _materialize(dagster_home, "--select", "paper_embeddings", "--partition-range",
                            f"{months[0]}...{months[-1]}")
    assert "Executing steps using multiprocess executor" in embedded.stdout + embedded.stderr
    _materialize(dagster_home, "--select", "faiss_index", "--config-json",
                 json.dumps({"ops": {"faiss_index": {"config": {"recall_queries": 10}}}}))

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        embedding_run = instance.get_runs(filters=dg.RunsFilter(tags={
            "dagster/asset_partition_range_start": months[0], "dagster/asset_partition_range_end": months[-1]}))
        assert len(embedding_run) == 1 and embedding_run[0].is_success
        materialized = instance.all_logs(embedding_run[0].run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        assert sorted(e.dagster_event.partition for e in materialized) == months
    for month in months:
        published = splits["published"].str.startswith(month[:7])
        assert len(store.load_latest(f"paper_embeddings/{month}")) == published.sum()
    index = store.load_latest("faiss_index")
    assert json.loads((index / "index.json").read_text())["count"] == len(splits)
