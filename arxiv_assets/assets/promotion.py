"""promoted_model: the one model the deployment group exports, indexes and the service serves.

Training never decides what is served. This step reads the evaluation's verdict from its inputs'
data (not from check history), once both reports are shown to have judged *this* model (same
weights fingerprint):

* ``challenger``: the fine-tuned model passed every quality gate and scored at least the served
  model's test P@10: it is promoted;
* ``champion``: it did not, but the served model (the current release's, when it is fine-tuned) still
  passes every quality gate on today's data: it stays;
* ``base``: otherwise the untrained base model is promoted, so the service is never worse than it.

The decision travels with the model as ``promotion.json`` (next to the weights; the fingerprint
covers only the weights), which ``release`` reads.
"""

import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.variants import EXPORT_MANIFEST, model_fingerprint
from arxiv_assets.profiles import ACTIVE
from arxiv_assets.storage.artifacts import local_payload_of
from arxiv_assets.storage.releases import CHECKS, Promotion, write_promotion

from .reporting import markdown_table, read_reports


class PromotionConfig(dg.Config):
    base_model: str = ACTIVE.train.base_model  # what is promoted when the fine-tuned model fails a gate


def promotion_decision(fingerprint: str, reports: dict[str, dict]) -> tuple[str, list[str]]:
    """(``challenger`` | ``champion`` | ``base``, the gates the challenger failed)."""
    mismatched = [name for name, report in reports.items() if report["model_fingerprint"] != fingerprint]
    if mismatched:
        raise dg.Failure(f"{', '.join(mismatched)} judged model {reports[mismatched[0]]['model_fingerprint']}, "
                         f"not the model being promoted ({fingerprint}): re-materialize the evaluation with it")
    failed = sorted({gate["name"] for report in reports.values() for gate in report["gates"] if not gate["passed"]})
    if not failed:
        return "challenger", failed
    return ("champion" if reports["ir_metrics"]["served_passed"] else "base"), failed


@dg.asset(group_name="deployment", kinds={"pytorch", "sentencetransformers"})
def promoted_model(context: dg.AssetExecutionContext, config: PromotionConfig, model: Path, ir_metrics: Path,
                   classifier_metrics: Path) -> dg.Output[Path]:
    """The fine-tuned model if it passed every quality gate (and beat the served one), else the served model
    if it still passes them, else the untrained base model: a normal Sentence Transformers directory."""
    reports = read_reports(ir_metrics, classifier_metrics)
    fingerprint = model_fingerprint(model)
    promoted, failed = promotion_decision(fingerprint, reports)
    out_dir = Path(tempfile.mkdtemp(prefix="promoted-model-"))  # stored, then deleted by the IO manager
    if promoted == "challenger":
        shutil.copytree(model, out_dir, dirs_exist_ok=True)
        reason = "the fine-tuned model passed every quality gate and matched or beat the served model"
    elif promoted == "champion":
        # The release's artifact holds the ONNX exports too: take only the Sentence Transformers model.
        shutil.copytree(local_payload_of(reports["ir_metrics"]["served_model_uri"]), out_dir, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("onnx", EXPORT_MANIFEST, CHECKS))
        reason = (f"the fine-tuned model failed {', '.join(failed)}; the served model still passes every quality "
                  f"gate on this data and stays")
    else:
        fine_tuned_length = int(load_model(model, device="cpu").max_seq_length)
        load_model(config.base_model, device="cpu", max_seq_length=fine_tuned_length).save(str(out_dir))
        reason = f"the fine-tuned model failed {', '.join(failed)}: the untrained base model is promoted instead"
    context.log.info(reason)
    write_promotion(out_dir, Promotion(decision=promoted, reason=reason, evaluated_model_fingerprint=fingerprint,
                                       failed_gates=failed,
                                       champion_release=reports["ir_metrics"]["served_release"] or None))
    gates = pd.DataFrame(reports["ir_metrics"]["gates"]).set_index("name")
    return dg.Output(out_dir, metadata={
        "promoted": promoted,
        "reason": reason,
        "failed_gates": dg.MetadataValue.json(failed),
        "evaluated_model_fingerprint": fingerprint,
        "model_fingerprint": model_fingerprint(out_dir),
        "base_model": config.base_model,
        "gates": markdown_table(gates, floatfmt=".4f"),
    })
