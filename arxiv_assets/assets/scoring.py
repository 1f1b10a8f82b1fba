"""``score_models``: ir_metrics and classifier_metrics, base vs fine-tuned vs TF-IDF (and the served model)
on every slice. The scoring itself is plain code in ``arxiv_assets.ml.evaluation``; this module wires it.

One multi-asset, because both read the same embeddings and encoding is the expensive part on a
CPU; each asset is still materialized, shown and checked on its own. A third output, ``evaluation_embeddings``,
keeps the paper vectors of every model scored that promotion may choose (base, fine-tuned, served):
``paper_embeddings`` reuses them, so ``make run`` encodes each paper once per model. The quality gates
(``arxiv_assets.ml.evaluation.quality_gates``) are reported as asset checks and written into both
reports beside the fingerprint of the model they judged and the release it was compared with (the
current one: ``releases/CURRENT``): ``promoted_model`` reads them from there and, when the
fine-tuned model fails any of them, keeps the served model (if it still passes) or promotes the
untrained base model. So the checks do not block: a failed gate must let the run go on.
"""

import base64
import json
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from pydantic import Field

from arxiv_assets.ml.embedding import default_precision, embedding_rows, load_model
from arxiv_assets.ml.evaluation import (
    CROSS_VALIDATED_SPLITS,
    GATE_ASSETS,
    SLICES,
    Gate,
    ModelEvaluation,
    archive_trained_on,
    evaluate_model,
    headline_table,
    paired_differences,
    quality_gates,
)
from arxiv_assets.ml.hardware import best_device
from arxiv_assets.ml.plots import confusion_plot, projection_plot
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.variants import model_fingerprint, saved_fingerprint
from arxiv_assets.profiles import ACTIVE
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import local_payload_of

from .config import settings_config
from .reporting import REPORT_FILE, markdown_table

BEATS_SERVED = "fine_tuned_beats_served_model_p10"


class EvalConfig(settings_config(ACTIVE.evaluation)):
    """``arxiv_assets.ml.evaluation.EvalSettings``, defaulting to the active profile's, and the base model."""

    base_model: str = Field(default=ACTIVE.train.base_model,
                            description="the untrained model every fine-tuned one is compared with (the model "
                                        "step's base_model)")


def _gate_asset(name: str) -> str:
    """The report a gate's check sits on (the promotion gate, not a quality gate, is a retrieval figure)."""
    return GATE_ASSETS.get(name, "ir_metrics")


def _check_spec(name: str, description: str) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=_gate_asset(name), description=description)


@dg.multi_asset(
    name="score_models",
    group_name="evaluation",
    ins={name: dg.AssetIn() for name in ("model", "splits", "tfidf_baseline")},
    outs={
        "ir_metrics": dg.AssetOut(kinds={"scikitlearn"}, description="Subject and known-item retrieval on the test, "
                                  "unseen-subject, mixed, new-month and rare-subject slices: P@1/5/10, MRR@10, "
                                  "NDCG@10, MAP@100 micro and macro, per subject; t-SNE plots; the quality gates."),
        "classifier_metrics": dg.AssetOut(kinds={"scikitlearn"}, description="Logistic regression on frozen "
                                          "embeddings (fit on train probe papers, scored on test and new; "
                                          "cross-validated on unseen and rare subjects) beside TF-IDF + LR; "
                                          "confusion."),
        "evaluation_embeddings": dg.AssetOut(kinds={"parquet"}, description="The judged and probe papers' "
                                             "embeddings by the base, fine-tuned (and served) model, as "
                                             "paper_embeddings stores them: it reuses the promoted model's."),
    },
    check_specs=[
        *[_check_spec(name, "quality gate (arxiv_assets.ml.evaluation.quality_gates); a failure promotes the base "
                            "model instead") for name in GATE_ASSETS],
        _check_spec(BEATS_SERVED, "Promotion gate: the new model's test P@10 is at least the served (current "
                                  "release's) model's, both scored on this test split"),
    ],
)
def score_models(context: dg.AssetExecutionContext, config: EvalConfig, releases: Releases, model: Path,
                 splits: pd.DataFrame, tfidf_baseline: dict):
    device = best_device()
    precision = default_precision(device)
    fine_tuned = load_model(model, device=device)
    encoders = {"base": load_model(config.base_model, device=device, max_seq_length=fine_tuned.max_seq_length),
                "fine-tuned": fine_tuned}
    fingerprint = model_fingerprint(model)
    champion = releases.store().current()  # what the service serves: the challenger must beat it
    # The served model is scored beside this one unless it is this model or the base (already scored).
    if champion and champion.decision != "base" and champion.model_fingerprint != fingerprint:
        encoders["served"] = load_model(local_payload_of(champion.model_uri), device=device)
    # Every model promotion may choose, by the fingerprint it will have: the base is stored re-saved.
    fingerprints = {"base": saved_fingerprint(encoders["base"]), "fine-tuned": fingerprint} | (
        {"served": champion.model_fingerprint} if "served" in encoders else {})
    results: dict[str, ModelEvaluation] = {}
    for name, encoder in encoders.items():
        context.log.info(f"encoding every judged paper with the {name} model")
        results[name] = evaluate_model(encoder, splits, config.batch_size, precision)

    headlines = {name: r.headline() for name, r in results.items()} | {"tfidf": tfidf_baseline["headline"]}
    gate_settings = config.settings()
    gates = quality_gates(headlines, gate_settings)
    served_p10 = headlines.get("served", {}).get("test/P@10")
    beats_served = Gate(BEATS_SERVED, served_p10 is None or headlines["fine-tuned"]["test/P@10"] >= served_p10
                        + config.min_promotion_margin, headlines["fine-tuned"]["test/P@10"],
                        float("nan") if served_p10 is None else served_p10 + config.min_promotion_margin,
                        "test/P@10 at least the served model's" if served_p10 is not None else
                        "no other fine-tuned model is served yet")
    gates.append(beats_served)
    # The served model is judged by the same gates on today's data: if the challenger fails, it stays
    # only if it still passes them (else the base model is promoted).
    served_gates = quality_gates(headlines, gate_settings, candidate="served") if "served" in headlines \
        else []
    # which of the fine-tuned model's differences from the base the sample can tell from noise: every slice whole,
    # and the unseen and rare papers split by whether the training read any subject of the paper's arXiv archive
    # (the papers furthest from the training the bundled data has); one bootstrap per slice, figure and group
    versus_base = paired_differences(results["fine-tuned"], results["base"], group_of=archive_trained_on(splits))
    whole = versus_base["group"] == "all"
    by_archive = versus_base[~whole & versus_base["slice"].isin(CROSS_VALIDATED_SPLITS)]
    verdict = {"model_fingerprint": fingerprint, "served_model_uri": champion.model_uri if champion else "",
               "served_release": champion.release_id if champion else "",
               "gates": [asdict(g) for g in gates], "passed": all(g.passed for g in gates),
               "served_gates": [asdict(g) for g in served_gates],
               "served_passed": bool(served_gates) and all(g.passed for g in served_gates),
               "fine_tuned_vs_base": versus_base[whole].drop(columns=["group", "papers"]).to_dict("records"),
               "fine_tuned_vs_base_by_archive": by_archive.to_dict("records")}

    test = papers_in(splits, "test")
    ir_dir, ir_metadata = _ir_report(results, headlines, tfidf_baseline, test, verdict)
    yield dg.Output(ir_dir, output_name="ir_metrics", metadata=ir_metadata)
    clf_dir, clf_metadata = _classifier_report(results, headlines, tfidf_baseline, verdict)
    yield dg.Output(clf_dir, output_name="classifier_metrics", metadata=clf_metadata)
    embeddings = pd.concat([embedding_rows(part.ids, part.texts, part.vectors, fingerprints[name])
                            for name in fingerprints for part in results[name].encoded_papers], ignore_index=True)
    yield dg.Output(embeddings, output_name="evaluation_embeddings", metadata={
        "dagster/row_count": len(embeddings), "models": dg.MetadataValue.json(fingerprints), "precision": precision})
    for gate in gates:
        yield dg.AssetCheckResult(
            check_name=gate.name, asset_key=_gate_asset(gate.name), passed=gate.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            metadata={"value": gate.value, "threshold": gate.threshold, "rule": gate.description,
                      "model_fingerprint": fingerprint},
        )


def _report_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="arxiv-report-"))


def _inline_png(path: Path) -> dg.MetadataValue:
    """Dagster's UI renders markdown images, so the plot shows on the asset page, not only on disk."""
    return dg.MetadataValue.md(f"![{path.stem}](data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()})")


def _slice_tables(headlines: dict[str, dict[str, float]], figures: tuple[str, ...]) -> dict[str, dg.MetadataValue]:
    """One table per slice, a row per system, the columns ``figures`` that slice has."""
    tables = {}
    for name in SLICES:
        table = headline_table(headlines, name)
        columns = [c for c in figures if c in table]
        if columns:
            tables[f"{name}_slice"] = markdown_table(table[["papers", *columns]])
    return tables


def _comparison_metadata(headlines: dict[str, dict[str, float]], verdict: dict, headline_keys: tuple[str, ...],
                         figures: tuple[str, ...]) -> dict[str, Any]:
    """What both reports show of ``figures``: each system's ``headline_keys`` as numbers (plottable across runs),
    a table per slice, the fine-tuned model against the base (whole slices and by archive), the gates."""
    return {
        **{f"{key} {system}": values[key] for system, values in headlines.items()
           for key in headline_keys if key in values},
        **_slice_tables(headlines, figures),
        "fine_tuned_vs_base": _versus_base_table(verdict, figures),
        "fine_tuned_vs_base_by_archive": _versus_base_table(verdict, figures, "fine_tuned_vs_base_by_archive"),
        "gates": _gate_table(verdict),
        "model_fingerprint": verdict["model_fingerprint"],
    }


def _gate_table(verdict: dict) -> dg.MetadataValue:
    return markdown_table(pd.DataFrame(verdict["gates"]).set_index("name"), floatfmt=".4f")


def _versus_base_table(verdict: dict, figures: tuple[str, ...], key: str = "fine_tuned_vs_base") -> dg.MetadataValue:
    """The fine-tuned model minus the base, in points, with the 95 % paired bootstrap interval, for ``figures``
    (per slice; per slice and group for ``fine_tuned_vs_base_by_archive``)."""
    table = pd.DataFrame(verdict[key])
    index = [c for c in ("slice", "group", "papers", "figure") if c in table]
    return markdown_table(table[table["figure"].isin(figures)].set_index(index), floatfmt=".2f")


RETRIEVAL_FIGURES = ("P@10", "P@10 macro", "NDCG@10", "MAP@100", "known-item R@1", "known-item R@10",
                     "known-item MRR@10")
CLASSIFIER_FIGURES = ("LR accuracy", "LR macro-F1")


def _ir_report(results: dict[str, ModelEvaluation], headlines: dict[str, dict[str, float]], tfidf: dict,
               test: pd.DataFrame, verdict: dict):
    out = _report_dir()
    per_subject = pd.concat(
        {name: r.slices["test"].subject_retrieval.per_group["P@10"] for name, r in results.items()}
        | {"tfidf": pd.DataFrame(tfidf["per_subject"]).T["P@10"]}, axis=1)
    (out / REPORT_FILE).write_text(json.dumps({"headline": headlines, **verdict, "test_papers": len(test),
                                                  "per_subject_P@10": json.loads(per_subject.to_json(orient="index"))},
                                                 indent=2))
    plot = projection_plot({n: r.test_vectors for n, r in results.items()}, test["primary_subject"].tolist(),
                           out / "projection.png")
    metadata = {
        **_comparison_metadata(headlines, verdict, ("test/P@10", "unseen/P@10", "test/known-item MRR@10"),
                               RETRIEVAL_FIGURES),
        "per_subject_P@10": markdown_table(per_subject),
        "projection": _inline_png(plot),
    }
    return out, metadata


def _classifier_report(results: dict[str, ModelEvaluation], headlines: dict[str, dict[str, float]], tfidf: dict,
                       verdict: dict):
    out = _report_dir()
    per_class = pd.concat({name: r.slices["test"].classification.per_class[["precision", "recall", "f1-score"]]
                           for name, r in results.items()}, axis=1)
    (out / REPORT_FILE).write_text(json.dumps(
        {"headline": headlines, **verdict, "tfidf_lr_all_train": tfidf["classification_all_train"],
         "per_class": json.loads(per_class.to_json(orient="index"))}, indent=2))
    plot = confusion_plot({n: r.slices["test"].classification.confusion for n, r in results.items()},
                          out / "confusion.png")
    metadata = {
        **_comparison_metadata(headlines, verdict, ("test/LR accuracy", "test/LR macro-F1", "unseen/LR accuracy"),
                               CLASSIFIER_FIGURES),
        "tfidf_lr_on_all_train": markdown_table(pd.DataFrame({"tfidf (LR on all train)":
                                                              tfidf["classification_all_train"]}).T),
        "per_class": markdown_table(per_class),
        "confusion": _inline_png(plot),
    }
    return out, metadata
