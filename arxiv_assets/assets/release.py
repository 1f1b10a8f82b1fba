"""release: the one step that changes what the service serves, by moving ``releases/CURRENT``.

It reads everything it decides on from its inputs' data (arxiv_assets/storage/releases.py): the
promotion decision next to the promoted weights, the reports' verdicts and the fingerprint of the
model they judged, and the ``checks.json`` of the ONNX export and the index. Any mismatch fails the
step with the reason and leaves ``CURRENT`` where it was; the service never reads the Dagster instance.
"""

from pathlib import Path

import dagster as dg
import pandas as pd

from arxiv_assets.ml.variants import model_fingerprint
from arxiv_assets.resources.releases import Releases
from arxiv_assets.storage.artifacts import ArtifactRef, pin_version
from arxiv_assets.storage.releases import Release, ReleaseError, assemble_release, read_promotion

from .reporting import markdown_table, read_reports

# The figures shown beside the champion's on the release page.
RELEASE_FIGURES = ("test/P@10", "unseen/P@10", "new/P@10", "test/known-item MRR@10", "test/LR accuracy",
                   "unseen/LR accuracy")


def comparison_table(headlines: dict[str, dict[str, float]], decision: str) -> pd.DataFrame:
    """The systems the evaluation scored, one row each, with which of them is now served."""
    table = pd.DataFrame({system: {k: figures.get(k) for k in RELEASE_FIGURES} for system, figures in headlines.items()
                          }).T
    served = {"challenger": "fine-tuned", "champion": "served", "base": "base"}[decision]
    return table.assign(released=[system == served for system in table.index])


@dg.asset(group_name="deployment", kinds={"release"}, pool="release")
def release(context: dg.AssetExecutionContext, releases: Releases, promoted_model: Path, ir_metrics: Path,
            classifier_metrics: Path, onnx_model: ArtifactRef, faiss_index: ArtifactRef) -> dg.MaterializeResult:
    """The promoted model's ONNX export and index as an immutable release manifest, and ``CURRENT`` moved
    to it (unless it already serves them). The champion it replaced stays listed for rollback."""
    store = releases.store()
    promotion = read_promotion(promoted_model)
    reports = read_reports(ir_metrics, classifier_metrics)
    current = store.current()
    try:
        made = assemble_release(promotion, model_fingerprint(promoted_model), reports, onnx_model, faiss_index,
                                current, context.run_id)
    except ReleaseError as error:
        raise dg.Failure(str(error), metadata={"current_release": current.release_id if current else ""}) from error
    comparison = markdown_table(comparison_table(reports["ir_metrics"]["headline"], promotion.decision),
                                floatfmt=".4f")
    if made is None:
        context.log.info(f"release {current.release_id} already serves this export and index")
        return dg.MaterializeResult(metadata={"release_id": current.release_id, "moved": False,
                                              "decision": promotion.decision, "reason": promotion.reason,
                                              "comparison": comparison})
    for ref in (onnx_model, faiss_index):  # never pruned while a release may be rolled back to them
        pin_version(ref.uri, releases.storage_options or None)
    store.publish(made)
    context.log.info(f"{store.base_uri}/CURRENT -> {made.release_id}: {made.reason}")
    return dg.MaterializeResult(metadata=release_metadata(made, current, comparison, store.base_uri))


def release_metadata(made: Release, replaced: Release | None, comparison: dg.MetadataValue,
                     releases_uri: str) -> dict[str, object]:
    return {
        "release_id": made.release_id,
        "moved": True,
        "decision": made.decision,
        "reason": made.reason,
        "replaces": replaced.release_id if replaced else "",
        "replaced_model_fingerprint": replaced.model_fingerprint if replaced else "",
        "model_fingerprint": made.model_fingerprint,
        "model_uri": dg.MetadataValue.path(made.model_uri),
        "index_uri": dg.MetadataValue.path(made.index_uri or ""),
        "manifest": dg.MetadataValue.path(f"{releases_uri}/{made.release_id}/release.json"),
        "comparison": comparison,
        "rollback": dg.MetadataValue.md(f"`python -m arxiv_assets.storage.releases rollback --releases-uri "
                                        f"{releases_uri}`"),
    }
