"""tfidf_baseline: the lexical system every embedding model is compared with."""


import dagster as dg
import pandas as pd

from arxiv_assets.ml.tfidf import evaluate_tfidf

from .reporting import markdown_table, metrics_table


@dg.asset(group_name="evaluation", kinds={"scikitlearn"})
def tfidf_baseline(context: dg.AssetExecutionContext, splits: pd.DataFrame) -> dg.Output[dict]:
    """TF-IDF fit on the train split, scored on the test split: subject retrieval (relevant = same primary
    subject, the query excluded), known-item title->abstract retrieval, and logistic regression (fit on the
    probe papers every model's probe uses, and, for reference, on all of train)."""
    train, test = (splits[splits["split"] == s].reset_index(drop=True) for s in ("train", "test"))
    result = evaluate_tfidf(train, test)
    retrieval = result.subject_retrieval
    summary = {
        "subject_retrieval": retrieval.summary(),
        "known_item": result.known_item.summary(),
        "classification": result.classification.summary(),
        "classification_all_train": result.classification_all_train.summary(),
        "per_subject": retrieval.per_group.round(4).to_dict(orient="index"),
        "test_papers": len(test),
        "train_papers": len(train),
        "probe_papers": int(train["probe"].sum()),
    }
    context.log.info(f"TF-IDF P@10 {retrieval.micro['P@10']:.3f}, LR accuracy {result.classification.accuracy:.3f}")
    return dg.Output(
        summary,
        metadata={
            "P@10_micro": retrieval.micro["P@10"],
            "P@10_macro": retrieval.macro["P@10"],
            "lr_accuracy": result.classification.accuracy,
            "lr_macro_f1": result.classification.macro_f1,
            "lr_all_train_accuracy": result.classification_all_train.accuracy,
            "lr_all_train_macro_f1": result.classification_all_train.macro_f1,
            "subject_retrieval": markdown_table(metrics_table(retrieval.summary())),
            "known_item_retrieval": markdown_table(metrics_table(result.known_item.summary())),
            "per_subject": markdown_table(retrieval.per_group),
            "classification_per_class": markdown_table(result.classification.per_class),
            "vocabulary_size": result.vocabulary_size,
        },
    )
