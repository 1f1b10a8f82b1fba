"""raw_papers -> splits -> pairs -> tfidf_baseline, materialized in process with the real IO manager.

The happy path runs once per session (the ``smoke_artifacts`` fixture in conftest.py); the tests here
check each asset's contract on it, then break the input on purpose.
"""

from pathlib import Path

import dagster as dg
import pandas as pd
import pytest
from datasets import DatasetDict

from arxiv_assets.assets.baseline import tfidf_baseline
from arxiv_assets.assets.data import RAW_PAPER_CHECKS, pairs, raw_papers, splits
from arxiv_assets.ml.evaluation import SLICES
from arxiv_assets.ml.schema import PAPER_COLUMNS
from arxiv_assets.ml.splits import SPLITS
from arxiv_assets.ml.taxonomy import subject_description
from arxiv_assets.ml.text import paper_text
from arxiv_assets.ml.tfidf import TFIDF_PROBE_C
from arxiv_assets.profiles import get_profile
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.resources.paper_source import PaperSource
from arxiv_assets.storage.artifacts import ArtifactStore
from arxiv_assets_tests.conftest import (
    SAMPLE_FIRST_MONTH,
    SAMPLE_LAST_MONTH,
    partition_range_tags,
    run_error_text,
    write_papers,
)

SMOKE = get_profile("smoke")
SAMPLE_MONTHS = dg.MonthlyPartitionsDefinition(start_date=SAMPLE_FIRST_MONTH).get_partition_keys_in_range(
    dg.PartitionKeyRange(SAMPLE_FIRST_MONTH, SAMPLE_LAST_MONTH))


def materializations(result: dg.ExecuteInProcessResult, asset: str) -> list[dg.AssetMaterialization]:
    return [e.materialization for e in result.get_asset_materialization_events()
            if e.materialization.asset_key == dg.AssetKey(asset)]


# -- the happy path, once ----------------------------------------------------------------------------

def test_raw_papers_backfills_every_month_in_one_run(smoke_artifacts, sample_papers):
    run = smoke_artifacts.raw_run
    assert run.success
    assert len(SAMPLE_MONTHS) == 17
    by_month = {m.partition: m for m in materializations(run, "raw_papers")}
    assert sorted(by_month) == SAMPLE_MONTHS  # one run, one materialization per month
    assert smoke_artifacts.instance.get_materialized_partitions(dg.AssetKey("raw_papers")) == set(SAMPLE_MONTHS)
    expected_rows = sample_papers["published"].str[:7].value_counts()
    total = 0
    for month in SAMPLE_MONTHS:
        stored = smoke_artifacts.load(f"raw_papers/{month}")
        assert list(stored.columns) == list(PAPER_COLUMNS)
        assert len(stored) == expected_rows[month[:7]]
        assert stored["published"].str.startswith(month[:7]).all()
        # Each month's materialization reports that month's rows (not the whole run's).
        assert by_month[month].metadata["dagster/row_count"].value == len(stored)
        assert by_month[month].metadata["subjects"].value == stored["primary_subject"].nunique()
        total += len(stored)
    assert total == len(sample_papers)
    metadata = by_month["2025-06-01"].metadata
    for key in ("dagster/row_count", "subjects", "subject_histogram", "preview", "source", "uris"):
        assert key in metadata
    assert "cs.CV" in metadata["subject_histogram"].value
    assert metadata["source"].value == "bundled"


def test_raw_papers_checks_all_passed(smoke_artifacts):
    checks = {c.check_name: c for c in smoke_artifacts.raw_run.get_asset_check_evaluations()}
    assert set(checks) == {*RAW_PAPER_CHECKS, "row_count_positive"}
    assert all(check.passed for check in checks.values()), {n: c.metadata for n, c in checks.items()}
    assert checks["ids_unique"].metadata["duplicate id"].value == 0


def test_splits_contract(smoke_artifacts, sample_papers):
    assert smoke_artifacts.downstream_run.success
    table = smoke_artifacts.load("splits")
    assert list(table.columns) == [*PAPER_COLUMNS, "split", "probe"]
    assert set(table["split"]) == set(SPLITS)
    assert table["id"].is_unique
    per_subject = table["primary_subject"].value_counts()
    assert per_subject.max() <= SMOKE.splits.max_papers_per_subject
    counts = sample_papers["primary_subject"].value_counts()
    split_subjects = table.loc[table["split"] != "rare", "primary_subject"].unique()
    assert set(split_subjects) == set(counts[counts >= SMOKE.splits.min_papers_per_subject].index)
    rare = {s: int(n) for s, n in counts.items()
            if SMOKE.splits.min_papers_per_rare_subject <= n < SMOKE.splits.min_papers_per_subject}
    assert set(table.loc[table["split"] == "rare", "primary_subject"]) == set(rare) != set()
    (metadata,) = [m.metadata for m in materializations(smoke_artifacts.downstream_run, "splits")]
    assert metadata["dagster/row_count"].value == len(table)
    assert metadata["months"].value == SAMPLE_MONTHS
    assert sum(metadata[f"{s}_papers"].value for s in SPLITS) == len(table)
    assert metadata["subjects"].value == len(per_subject)
    assert metadata["rare_subjects"].value == rare
    assert metadata["dropped_subjects"].value == {s: int(n) for s, n in counts.items()
                                                  if n < SMOKE.splits.min_papers_per_rare_subject}
    assert set(metadata["capped_subjects"].value) == set(per_subject.index)  # every kept subject is over 60
    unseen = metadata["unseen_subjects"].value
    assert set(unseen) == set(table.loc[table["split"] == "unseen", "primary_subject"])
    assert (per_subject[unseen] <= SMOKE.splits.unseen_papers_per_subject).all()
    assert metadata["new_months"].value == ["2026-06", "2026-07"]  # the bundled sample's newest two
    assert "| cs.CV" in metadata["papers_per_subject_and_split"].value


def test_pairs_contract(smoke_artifacts):
    sets = smoke_artifacts.load("pairs")
    assert isinstance(sets, DatasetDict)
    assert set(sets) == {"train", "eval"}
    assert len(sets["train"]) == SMOKE.pairs.train_pairs and len(sets["eval"]) == SMOKE.pairs.eval_pairs
    assert sets["train"].column_names == ["anchor", "positive", "primary_subject", "kind"]
    table = smoke_artifacts.load("splits")
    # Every text (a title, an abstract or both) maps back to its paper.
    paper_of = {}
    for row in table.itertuples():
        for text in (row.title, row.abstract, paper_text(row.title, row.abstract)):
            paper_of[text] = row
    for split in ("train", "eval"):  # pairs of a split only use that split's papers, listed in the pair's subject
        for pair in sets[split]:
            anchor = paper_of[pair["anchor"]]
            assert (anchor.split, anchor.primary_subject) == (split, pair["primary_subject"])
            if pair["kind"] == "subject":
                assert pair["positive"] == subject_description(pair["primary_subject"])
            else:
                positive = paper_of[pair["positive"]]
                assert positive.split == split
                assert pair["primary_subject"] in {positive.primary_subject, *positive.categories}
    assert set(sets["train"]["kind"]) == {"title_abstract", "subject", "paper"}
    (metadata,) = [m.metadata for m in materializations(smoke_artifacts.downstream_run, "pairs")]
    assert metadata["train_pairs"].value == SMOKE.pairs.train_pairs
    assert metadata["columns"].value == ["anchor", "positive", "primary_subject", "kind"]
    assert "title_abstract" in metadata["pairs_per_kind"].value


def test_tfidf_baseline_contract(smoke_artifacts):
    summary = smoke_artifacts.load("tfidf_baseline")
    headline = summary["headline"]
    table = smoke_artifacts.load("splits")
    for slice_name in SLICES:
        assert 0 <= headline[f"{slice_name}/P@10"] <= 1
    for split in ("test", "new", "unseen", "rare"):
        assert headline[f"{split}/papers"] == int((table["split"] == split).sum())
    assert set(summary["classification_all_train"]) == {"accuracy", "macro_f1", "C"}
    assert summary["classification_all_train"]["C"] == TFIDF_PROBE_C  # TF-IDF's probe keeps one C (ml/tfidf.py)
    assert summary["probe_papers"] == int(table["probe"].sum())
    train_per_subject = table[table["split"] == "train"]["primary_subject"].value_counts()
    assert summary["probe_papers"] == int(train_per_subject.clip(upper=SMOKE.splits.probe_papers_per_subject).sum())
    assert summary["train_papers"] == int((table["split"] == "train").sum())
    assert set(summary["per_subject"]) == set(table.loc[table["split"] == "test", "primary_subject"])
    # ~14 balanced subjects: chance P@10 is about 1/14.
    assert headline["test/P@10"] > 0.2
    (metadata,) = [m.metadata for m in materializations(smoke_artifacts.downstream_run, "tfidf_baseline")]
    assert metadata["test/P@10"].value == pytest.approx(headline["test/P@10"])
    assert "| tfidf" in metadata["unseen_slice"].value
    assert metadata["vocabulary_size"].value > 1000


# -- broken input: the run fails, names the problem, and writes nothing -----------------------------

JUNE = "2025-06-01"


@pytest.fixture
def june(sample_papers: pd.DataFrame) -> pd.DataFrame:
    return sample_papers[sample_papers["published"].str.startswith("2025-06")].head(60).reset_index(drop=True)


def run_raw_papers(base: str, parquet_path: str, partition_key: str = JUNE) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [raw_papers], partition_key=partition_key, raise_on_error=False,
        resources={"io_manager": ArtifactIOManager(base_uri=base),
                   "paper_source": PaperSource(kind="parquet", parquet_path=parquet_path)},
    )


def break_papers(papers: pd.DataFrame, how: str) -> pd.DataFrame:
    if how == "missing column":
        return papers.drop(columns=["abstract"])
    if how == "empty abstracts":
        return papers.assign(abstract=["" if i % 10 == 0 else a for i, a in enumerate(papers["abstract"])])
    if how == "duplicate ids":
        return pd.concat([papers, papers.head(2)], ignore_index=True)
    raise ValueError(how)


@pytest.mark.parametrize(("how", "message"), [
    ("missing column", "missing column(s) ['abstract']"),
    ("empty abstracts", "6 row(s) with empty abstract"),
    ("duplicate ids", "4 row(s) with duplicate id"),
])
def test_broken_source_fails_and_writes_nothing(tmp_path, june, how, message):
    path = write_papers(break_papers(june, how), tmp_path / "broken.parquet")
    base = str(tmp_path / "artifacts")
    result = run_raw_papers(base, path)
    assert not result.success
    error = run_error_text(result)
    assert "PaperSchemaError" in error
    assert message in error
    assert path in error  # the source is named
    assert not ArtifactStore(base).exists(f"raw_papers/{JUNE}")
    assert not Path(base, "raw_papers").exists()  # not even an orphaned version
    assert materializations(result, "raw_papers") == []


def test_a_failed_rerun_keeps_the_previous_good_version(tmp_path, june):
    base = str(tmp_path / "artifacts")
    source = tmp_path / "papers.parquet"
    assert run_raw_papers(base, write_papers(june, source)).success
    store = ArtifactStore(base)
    good_uri = store.latest_uri(f"raw_papers/{JUNE}")

    write_papers(break_papers(june, "empty abstracts"), source)  # the source breaks upstream
    failed = run_raw_papers(base, str(source))
    assert not failed.success
    assert "empty abstract" in run_error_text(failed)
    assert store.latest_uri(f"raw_papers/{JUNE}") == good_uri
    assert store.versions(f"raw_papers/{JUNE}") == [Path(good_uri).name]
    assert store.load_latest(f"raw_papers/{JUNE}")["id"].tolist() == june["id"].tolist()


def test_a_month_with_no_papers_materializes_empty_with_a_warning(tmp_path, june):
    base = str(tmp_path / "artifacts")
    result = run_raw_papers(base, write_papers(june, tmp_path / "june.parquet"), partition_key="2025-09-01")
    assert result.success
    assert len(ArtifactStore(base).load_latest("raw_papers/2025-09-01")) == 0
    (row_check,) = [c for c in result.get_asset_check_evaluations() if c.check_name == "row_count_positive"]
    assert not row_check.passed
    assert row_check.severity == dg.AssetCheckSeverity.WARN
    assert row_check.metadata["empty_months"].value == ["2025-09-01"]


def test_unknown_partition_key_is_named(tmp_path, june):
    with pytest.raises(dg.DagsterUnknownPartitionError, match="2024-01-01"):
        run_raw_papers(str(tmp_path), write_papers(june, tmp_path / "june.parquet"), partition_key="2024-01-01")
    assert not Path(tmp_path, "raw_papers").exists()


# -- splits stay put as months are added, through the assets ----------------------------------------

def test_splits_asset_never_moves_a_paper_when_months_are_added(tmp_path):
    base = str(tmp_path / "artifacts")
    instance = dg.DagsterInstance.ephemeral()
    resources = {"io_manager": ArtifactIOManager(base_uri=base), "paper_source": PaperSource(kind="bundled")}
    # No months held out here: every paper keeps its id-hash split (or its subject's unseen or rare) as months are
    # added.
    config = dg.RunConfig(ops={"splits": {"config": {"min_papers_per_subject": 60, "max_papers_per_subject": 150,
                                                     "eval_fraction": 0.1, "test_fraction": 0.2, "new_months": 0}}})
    store = ArtifactStore(base)

    def splits_after(first: str, last: str) -> pd.DataFrame:
        assert dg.materialize([raw_papers], instance=instance, resources=resources,
                              tags=partition_range_tags(first, last)).success
        assert dg.materialize([raw_papers, splits], selection=[splits], instance=instance, resources=resources,
                              run_config=config).success
        return store.load_latest("splits")

    before = splits_after("2025-05-01", "2025-06-01")
    after = splits_after("2025-07-01", "2025-08-01")
    assert before["published"].str[:7].isin(["2025-05", "2025-06"]).all()
    assert after["published"].str[:7].isin(["2025-05", "2025-06", "2025-07", "2025-08"]).all()
    assert (after["published"] >= "2025-07").any()
    both = before.merge(after, on="id", suffixes=("_before", "_after"))
    assert len(both) > 300
    # None moves but the papers of a rare subject that reached the minimum: they take their hash split
    grew = (both["split_before"] == "rare") & (both["split_after"] != "rare")
    assert (both.loc[~grew, "split_before"] == both.loc[~grew, "split_after"]).all()
    assert not both.loc[both["split_before"] != "rare", "split_after"].eq("rare").any()
    was_test = set(before.loc[before["split"] == "test", "id"])
    assert was_test.isdisjoint(after.loc[after["split"] != "test", "id"])
    assert len(store.versions("splits")) == 2  # the first split is still there to compare with


def test_splits_fails_clearly_when_no_subject_is_big_enough(tmp_path, june):
    base = str(tmp_path / "artifacts")
    resources = {"io_manager": ArtifactIOManager(base_uri=base),
                 "paper_source": PaperSource(kind="parquet", parquet_path=write_papers(june, tmp_path / "p.parquet"))}
    assert dg.materialize([raw_papers], partition_key=JUNE, resources=resources).success
    result = dg.materialize([raw_papers, splits, pairs, tfidf_baseline], selection=[splits], resources=resources,
                            run_config=dg.RunConfig(ops={"splits": {"config": {"min_papers_per_subject": 1000}}}),
                            raise_on_error=False)
    assert not result.success
    assert "no subject has 1000 papers" in run_error_text(result)
    assert not ArtifactStore(base).exists("splits")
