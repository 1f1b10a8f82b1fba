"""raw_papers (monthly) -> splits -> pairs."""


import dagster as dg
import pandas as pd

from arxiv_assets.ml.pairs import KIND_COLUMN, SUBJECT_COLUMN, make_pair_sets
from arxiv_assets.ml.schema import find_problems, validate_papers
from arxiv_assets.ml.splits import SPLITS, TRAINING_SPLITS, make_splits, split_counts
from arxiv_assets.profiles import ACTIVE
from arxiv_assets.resources.paper_source import PaperSource

from .config import settings_config
from .reporting import markdown_table, preview, subject_histogram

monthly_partitions = dg.MonthlyPartitionsDefinition(start_date="2025-03-01")

RAW_PAPER_CHECKS = {
    "ids_unique": ("duplicate id",),
    "title_and_abstract_non_empty": ("empty title", "empty abstract"),
    "categories_are_arxiv_codes": ("categories not arXiv codes", "primary_subject not the first category"),
}


@dg.asset(
    partitions_def=monthly_partitions,
    # A single run can cover a range of months (`--partition-range`), which is how a fresh
    # instance loads the whole history in one run instead of one run per month.
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="data",
    kinds={"pandas", "parquet"},
    check_specs=[dg.AssetCheckSpec(name, asset="raw_papers") for name in [*RAW_PAPER_CHECKS, "row_count_positive"]],
)
def raw_papers(context: dg.AssetExecutionContext, paper_source: PaperSource):
    """Papers listed in one month (a month's partition holds the papers published that month)."""
    months: dict[str, pd.DataFrame] = {}
    for key, window in zip(context.partition_keys, _month_windows(context), strict=True):
        papers = paper_source.load_month(window.start.date(), window.end.date())
        months[key] = validate_papers(papers, source=f"{paper_source.kind} source, month {key}")
        context.log.info(f"{key}: {len(papers)} papers")
        if len(context.partition_keys) > 1:  # each month's materialization counts its own rows, not the run's
            context.add_asset_metadata({"dagster/row_count": len(months[key]),
                                        "subjects": months[key]["primary_subject"].nunique()}, partition_key=key)
    all_papers = pd.concat(months.values(), ignore_index=True)
    yield dg.Output(
        months if len(months) > 1 else months[context.partition_key],
        metadata={
            "dagster/row_count": len(all_papers),
            "subjects": all_papers["primary_subject"].nunique(),
            "subject_histogram": subject_histogram(all_papers),
            "preview": preview(all_papers),
            "source": paper_source.kind,
        },
    )
    problems = find_problems(all_papers)
    for check_name, problem_names in RAW_PAPER_CHECKS.items():
        bad = {name: int(problems[name].sum()) for name in problem_names}
        yield dg.AssetCheckResult(check_name=check_name, passed=not any(bad.values()), metadata=bad)
    empty_months = [k for k, frame in months.items() if frame.empty]
    yield dg.AssetCheckResult(
        check_name="row_count_positive", passed=not empty_months,
        severity=dg.AssetCheckSeverity.WARN,  # a month the source has not published yet is not an error
        metadata={"empty_months": dg.MetadataValue.json(empty_months)},
    )


def _month_windows(context: dg.AssetExecutionContext) -> list[dg.TimeWindow]:
    partitions = monthly_partitions.get_partition_keys_in_range(context.partition_key_range)
    return [monthly_partitions.time_window_for_partition_key(k) for k in partitions]


class SplitsConfig(settings_config(ACTIVE.splits)):
    """``arxiv_assets.ml.splits.SplitSettings``, defaulting to the active profile's."""


@dg.asset(group_name="data", kinds={"pandas", "parquet"})
def splits(context: dg.AssetExecutionContext, config: SplitsConfig, raw_papers: dict[str, pd.DataFrame]):
    """Every materialized month, split by a hash of the paper id into train/eval/test; the newest months
    (``new``), a hash-chosen third of the subjects (``unseen``) and the subjects too small to split (``rare``)
    are never trained on and judge the model."""
    months = raw_papers if isinstance(raw_papers, dict) else {"single": raw_papers}
    papers = pd.concat(months.values(), ignore_index=True).drop_duplicates("id")
    result = make_splits(papers, config.settings())
    if not result.papers["split"].isin(TRAINING_SPLITS).any() or not (result.papers["split"] == "test").any():
        raise dg.Failure(f"no subject has {config.min_papers_per_subject} papers to train and test on across months "
                         f"{sorted(months)}; lower min_papers_per_subject or materialize more months of raw_papers")
    counts = split_counts(result.papers)
    context.log.info(f"{len(result.rare_subjects)} subjects below {config.min_papers_per_subject} papers judge as the "
                     f"rare slice, {len(result.dropped_subjects)} below {config.min_papers_per_rare_subject} dropped; "
                     f"unseen subjects {result.unseen_subjects}; new months {result.new_months}")
    return dg.Output(
        result.papers,
        metadata={
            "dagster/row_count": len(result.papers),
            "months": dg.MetadataValue.json(sorted(months)),
            **{f"{split}_papers": int(counts[split].sum()) for split in SPLITS},
            "probe_papers": int(result.papers["probe"].sum()),
            "subjects": len(counts),
            "unseen_subjects": dg.MetadataValue.json(result.unseen_subjects),
            "new_months": dg.MetadataValue.json(result.new_months),
            "papers_per_subject_and_split": markdown_table(counts, floatfmt=".0f"),
            "rare_subjects": dg.MetadataValue.json(result.rare_subjects),
            "dropped_subjects": dg.MetadataValue.json(result.dropped_subjects),
            "capped_subjects": dg.MetadataValue.json(result.capped_subjects),
        },
    )


class PairsConfig(settings_config(ACTIVE.pairs)):
    """``arxiv_assets.ml.pairs.PairSettings``, defaulting to the active profile's."""


@dg.asset(group_name="data", kinds={"huggingface"})
def pairs(context: dg.AssetExecutionContext, config: PairsConfig, splits: pd.DataFrame):
    """Contrastive (anchor, positive[, negative]) pairs: train from the train split, eval from the eval split
    (never from the test, new or unseen papers that judge the model)."""
    dataset = make_pair_sets(splits, config.settings())
    subjects = pd.DataFrame({s: pd.Series(d[SUBJECT_COLUMN]).value_counts() for s, d in dataset.items()}).fillna(0)
    kinds = pd.DataFrame({s: pd.Series(d[KIND_COLUMN]).value_counts() for s, d in dataset.items()}).fillna(0)
    return dg.Output(
        dataset,
        metadata={
            "train_pairs": len(dataset["train"]),
            "eval_pairs": len(dataset["eval"]),
            "pairs_per_kind": markdown_table(kinds, floatfmt=".0f"),
            "columns": dg.MetadataValue.json(dataset["train"].column_names),
            "pairs_per_subject": markdown_table(subjects, floatfmt=".0f"),
            "example": dg.MetadataValue.json({k: str(v)[:200] for k, v in dataset["train"][0].items()}),
        },
    )
