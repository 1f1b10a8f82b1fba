"""ir_metrics and classifier_metrics: base vs fine-tuned vs TF-IDF on the same test split.

One multi-asset, because both read the same test embeddings and encoding is the expensive part
on a CPU; each asset is still materialized, shown and checked on its own.
"""

import base64
import json
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

# Not re-exported at the top level in dagster 1.13; the instance API that returns it is public.
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from arxiv_assets.ml.embedding import default_precision, load_model
from arxiv_assets.ml.evaluation import ModelEvaluation, evaluate_model
from arxiv_assets.ml.hardware import best_device
from arxiv_assets.ml.plots import confusion_plot, projection_plot
from arxiv_assets.profiles import ACTIVE
from arxiv_assets.resources.artifact_store import local_payload_of

from .reporting import markdown_table, metrics_table

EVAL_DEFAULTS = ACTIVE.evaluation
BEATS_BASELINES = "fine_tuned_beats_baselines_p10"
F1_AT_LEAST_TFIDF = "fine_tuned_lr_macro_f1_at_least_tfidf"
BEATS_SERVED = "fine_tuned_beats_served_model_p10"
BLOCKING_CHECKS = (dg.AssetCheckKey(dg.AssetKey("ir_metrics"), BEATS_BASELINES),
                   dg.AssetCheckKey(dg.AssetKey("classifier_metrics"), F1_AT_LEAST_TFIDF),
                   dg.AssetCheckKey(dg.AssetKey("ir_metrics"), BEATS_SERVED))


class EvalConfig(dg.Config):
    base_model: str = ACTIVE.train.base_model
    batch_size: int = EVAL_DEFAULTS.batch_size
    min_p10_margin: float = EVAL_DEFAULTS.min_p10_margin
    min_f1_margin: float = EVAL_DEFAULTS.min_f1_margin
    min_promotion_margin: float = 0.0  # P@10 by which a new model must beat the served one


@dg.multi_asset(
    name="evaluation",
    group_name="evaluation",
    ins={name: dg.AssetIn() for name in ("model", "splits", "tfidf_baseline")},
    outs={
        "ir_metrics": dg.AssetOut(kinds={"scikitlearn"}, description="Subject and known-item retrieval: P@1/5/10, "
                                  "MRR@10, NDCG@10, MAP@100 micro and macro, per subject; t-SNE plots."),
        "classifier_metrics": dg.AssetOut(kinds={"scikitlearn"}, description="Logistic regression on frozen "
                                          "embeddings (fit on train, scored on test) beside TF-IDF + LR; confusion."),
    },
    check_specs=[
        dg.AssetCheckSpec(BEATS_BASELINES, asset="ir_metrics", blocking=True,
                          description="Fine-tuned P@10 beats the base model and TF-IDF by min_p10_margin"),
        dg.AssetCheckSpec(F1_AT_LEAST_TFIDF, asset="classifier_metrics", blocking=True,
                          description="Fine-tuned LR macro-F1 >= TF-IDF LR macro-F1 + min_f1_margin"),
        dg.AssetCheckSpec(BEATS_SERVED, asset="ir_metrics", blocking=True,
                          description="Promotion gate: the new model's P@10 is at least the served model's, both "
                                      "scored on this test split (the served model = the newest one that passed "
                                      "every blocking evaluation check)"),
    ],
)
def evaluation(context: dg.AssetExecutionContext, config: EvalConfig, model: Path, splits: pd.DataFrame,
               tfidf_baseline: dict):
    test = splits[splits["split"] == "test"].reset_index(drop=True)
    probe_train = splits[splits["probe"]].reset_index(drop=True)  # the papers TF-IDF's probe was fit on
    device = best_device()
    precision = default_precision(device)
    fine_tuned = load_model(model, device=device)
    base = load_model(config.base_model, device=device, max_seq_length=fine_tuned.max_seq_length)
    model_uri = _materialized_uri(context, "model")
    served_uri = served_model_uri(context.instance)
    encoders = {"base": base, "fine-tuned": fine_tuned}
    if served_uri and served_uri != model_uri:
        encoders["served"] = load_model(local_payload_of(served_uri), device=device)
    results: dict[str, ModelEvaluation] = {}
    for name, encoder in encoders.items():
        context.log.info(f"encoding {len(test)} test and {len(probe_train)} probe papers with the {name} model")
        results[name] = evaluate_model(encoder, probe_train, test, config.batch_size, precision)

    ir_dir, ir_metadata, p10 = _ir_report(results, tfidf_baseline, test)
    yield dg.Output(ir_dir, output_name="ir_metrics", metadata=ir_metadata)
    clf_dir, clf_metadata, f1 = _classifier_report(results, tfidf_baseline)
    yield dg.Output(clf_dir, output_name="classifier_metrics", metadata=clf_metadata)

    best_baseline = max(p10["base"], p10["tfidf"])
    yield dg.AssetCheckResult(
        check_name=BEATS_BASELINES, asset_key="ir_metrics",
        passed=p10["fine-tuned"] >= best_baseline + config.min_p10_margin,
        metadata={**{f"P@10 {k}": v for k, v in p10.items()}, "required_margin": config.min_p10_margin},
    )
    served_p10 = p10.get("served", p10["fine-tuned"] if served_uri else None)
    yield dg.AssetCheckResult(
        check_name=BEATS_SERVED, asset_key="ir_metrics",
        passed=served_p10 is None or p10["fine-tuned"] >= served_p10 + config.min_promotion_margin,
        metadata={"model_uri": model_uri or "", "served_model_uri": served_uri or "(none yet: first model)",
                  "P@10 fine-tuned": p10["fine-tuned"], "P@10 served": served_p10 if served_p10 is not None else -1.0,
                  "required_margin": config.min_promotion_margin},
    )
    yield dg.AssetCheckResult(
        check_name=F1_AT_LEAST_TFIDF, asset_key="classifier_metrics",
        passed=f1["fine-tuned"] >= f1["tfidf"] + config.min_f1_margin,
        metadata={**{f"macro-F1 {k}": v for k, v in f1.items()}, "required_margin": config.min_f1_margin},
    )


def _materialized_uri(context: dg.AssetExecutionContext, asset: str) -> str | None:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(asset))
    uri = event.asset_materialization.metadata.get("uri") if event and event.asset_materialization else None
    return str(uri.value) if uri is not None else None


def served_model_uri(instance: dg.DagsterInstance) -> str | None:
    """The model of the newest run in which every blocking evaluation check passed (what the service serves)."""
    passed_runs: list[dict[str, dg.AssetCheckEvaluation]] = []
    for key in BLOCKING_CHECKS:
        history = instance.event_log_storage.get_asset_check_execution_history(
            key, limit=50, status={AssetCheckExecutionRecordStatus.SUCCEEDED})
        passed_runs.append({r.run_id: r.event.asset_check_evaluation for r in history if r.event})
    candidates = set.intersection(*(set(runs) for runs in passed_runs))
    promotion = passed_runs[-1]
    for run_id in sorted(candidates, key=lambda r: instance.get_run_record_by_id(r).create_timestamp, reverse=True):
        uri = promotion[run_id].metadata.get("model_uri")
        if uri is not None and uri.value:
            return str(uri.value)
    return None


def _report_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="arxiv-report-"))


def _inline_png(path: Path) -> dg.MetadataValue:
    """Dagster's UI renders markdown images, so the plot shows on the asset page, not only on disk."""
    return dg.MetadataValue.md(f"![{path.stem}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})")


def _ir_report(results: dict[str, ModelEvaluation], tfidf: dict, test: pd.DataFrame):
    out = _report_dir()
    micro = {name: r.subject_retrieval.micro for name, r in results.items()} | {
        "tfidf": tfidf["subject_retrieval"]["micro"]}
    macro = {name: r.subject_retrieval.macro for name, r in results.items()} | {
        "tfidf": tfidf["subject_retrieval"]["macro"]}
    known = {name: r.known_item.micro for name, r in results.items()} | {"tfidf": tfidf["known_item"]["micro"]}
    per_subject = pd.concat(
        {name: r.subject_retrieval.per_group[["P@1", "P@10", "MRR@10", "NDCG@10"]] for name, r in results.items()}
        | {"tfidf": pd.DataFrame(tfidf["per_subject"]).T[["P@1", "P@10", "MRR@10", "NDCG@10"]]},
        axis=1,
    )
    summary = {"subject_retrieval": {"micro": micro, "macro": macro}, "known_item": known,
               "test_papers": len(test), "per_subject": json.loads(per_subject.to_json(orient="index"))}
    (out / "metrics.json").write_text(json.dumps(summary, indent=2))
    plot = projection_plot({n: r.test_vectors for n, r in results.items()}, test["primary_subject"].tolist(),
                           out / "projection.png")
    p10 = {name: values["P@10"] for name, values in micro.items()}
    metadata = {
        **{f"P@10 {name}": value for name, value in p10.items()},
        "subject_retrieval_micro": markdown_table(metrics_table(micro)),
        "subject_retrieval_macro": markdown_table(metrics_table(macro)),
        "known_item_retrieval": markdown_table(metrics_table(known)[["R@1", "R@10", "MRR@10"]]),
        "per_subject_P@10": markdown_table(per_subject.xs("P@10", axis=1, level=1)),
        "projection_png": f"{{uri}}/payload/{plot.name}",  # the IO manager adds uri: the published version
        "projection": _inline_png(plot),
    }
    return out, metadata, p10


def _classifier_report(results: dict[str, ModelEvaluation], tfidf: dict):
    out = _report_dir()
    scores = {name: r.classification.summary() for name, r in results.items()} | {
        "tfidf": tfidf["classification"], "tfidf (LR on all train)": tfidf["classification_all_train"]}
    per_class = pd.concat({name: r.classification.per_class[["precision", "recall", "f1-score"]]
                           for name, r in results.items()}, axis=1)
    (out / "metrics.json").write_text(json.dumps(
        {"classification": scores, "per_class": json.loads(per_class.to_json(orient="index"))}, indent=2))
    plot = confusion_plot({n: r.classification.confusion for n, r in results.items()}, out / "confusion.png")
    f1 = {name: s["macro_f1"] for name, s in scores.items()}
    metadata = {
        **{f"accuracy {name}": s["accuracy"] for name, s in scores.items()},
        **{f"macro-F1 {name}": value for name, value in f1.items()},
        "linear_probe": markdown_table(metrics_table(scores)),
        "per_class": markdown_table(per_class),
        "confusion_png": f"{{uri}}/payload/{plot.name}",
        "confusion": _inline_png(plot),
    }
    return out, metadata, f1
