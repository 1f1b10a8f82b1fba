"""tfidf_baseline: the lexical system every embedding model is compared with."""


import dagster as dg
import pandas as pd

from arxiv_assets.ml.evaluation import SLICES, headline_table
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.tfidf import evaluate_tfidf

from .reporting import markdown_table


@dg.asset(group_name="evaluation", kinds={"scikitlearn"})
def tfidf_baseline(context: dg.AssetExecutionContext, splits: pd.DataFrame) -> dg.Output[dict]:
    """TF-IDF fit on the train split, scored on every slice exactly as the models are: subject retrieval
    (relevant = same primary subject, the query excluded), known-item title->abstract retrieval, and
    logistic regression (fit on the probe papers every model's probe uses, and, for reference, on all of
    train; cross-validated within the unseen subjects and within the rare ones)."""
    result = evaluate_tfidf(splits)
    headline = result.evaluation.headline()
    test = result.evaluation.slices["test"]
    summary = {
        "headline": headline,
        "classification_all_train": result.classification_all_train.summary(),
        "per_subject": test.subject_retrieval.per_group.round(4).to_dict(orient="index"),
        "train_papers": len(papers_in(splits, "train")),
        "probe_papers": int(splits["probe"].sum()),
    }
    context.log.info(f"TF-IDF test P@10 {headline['test/P@10']:.3f}, LR accuracy {headline['test/LR accuracy']:.3f}")
    tables = {f"{name}_slice": markdown_table(headline_table({"tfidf": headline}, name))
              for name in SLICES if f"{name}/P@10" in headline}
    return dg.Output(
        summary,
        metadata={
            **{key: value for key, value in headline.items() if key.endswith(("P@10", "LR accuracy", "LR macro-F1"))},
            "lr_all_train_accuracy": result.classification_all_train.accuracy,
            "lr_all_train_macro_f1": result.classification_all_train.macro_f1,
            **tables,
            "per_subject": markdown_table(test.subject_retrieval.per_group),
            "classification_per_class": markdown_table(test.classification.per_class),
            "vocabulary_size": result.vocabulary_size,
        },
    )
