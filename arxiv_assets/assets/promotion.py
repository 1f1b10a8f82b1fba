"""promoted_model: the one model the deployment group exports, indexes and the service serves.

Training never decides what is served. This step reads the evaluation's verdict from its inputs'
data (not from check history): the fine-tuned model is promoted only if both reports judged *this*
model (same weights fingerprint) and every quality gate passed; otherwise the untrained base model
is promoted, so the service is never worse than the base.
"""

import json
import shutil
import tempfile
from pathlib import Path

import dagster as dg
import pandas as pd

from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.export import model_fingerprint
from arxiv_assets.profiles import ACTIVE

from .reporting import markdown_table


class PromotionConfig(dg.Config):
    base_model: str = ACTIVE.train.base_model  # what is promoted when the fine-tuned model fails a gate


def promotion_decision(fingerprint: str, reports: dict[str, dict]) -> tuple[bool, list[str]]:
    """(promote the fine-tuned model?, why not): every report must have judged these weights and passed."""
    mismatched = [name for name, report in reports.items() if report["model_fingerprint"] != fingerprint]
    if mismatched:
        raise dg.Failure(f"{', '.join(mismatched)} judged model {reports[mismatched[0]]['model_fingerprint']}, "
                         f"not the model being promoted ({fingerprint}): re-materialize the evaluation with it")
    failed = sorted({gate["name"] for report in reports.values() for gate in report["gates"] if not gate["passed"]})
    return not failed, failed


@dg.asset(group_name="deployment", kinds={"pytorch", "sentencetransformers"})
def promoted_model(context: dg.AssetExecutionContext, config: PromotionConfig, model: Path, ir_metrics: Path,
                   classifier_metrics: Path) -> dg.Output[Path]:
    """The fine-tuned model if it passed every quality gate, else the untrained base model: a normal
    Sentence Transformers directory, encoding as many tokens as the fine-tuned model."""
    reports = {name: json.loads((path / "metrics.json").read_text())
               for name, path in (("ir_metrics", ir_metrics), ("classifier_metrics", classifier_metrics))}
    fingerprint = model_fingerprint(model)
    promote, failed = promotion_decision(fingerprint, reports)
    out_dir = Path(tempfile.mkdtemp(prefix="promoted-model-")) / "model"  # stored, then deleted by the IO manager
    if promote:
        shutil.copytree(model, out_dir)
        reason = "the fine-tuned model passed every quality gate"
    else:
        fine_tuned_length = int(load_model(model, device="cpu").max_seq_length)
        load_model(config.base_model, device="cpu", max_seq_length=fine_tuned_length).save(str(out_dir))
        reason = f"the fine-tuned model failed {', '.join(failed)}: the untrained base model is promoted instead"
    context.log.info(reason)
    gates = pd.DataFrame(reports["ir_metrics"]["gates"]).set_index("name")
    return dg.Output(out_dir, metadata={
        "promoted": "fine-tuned" if promote else "base",
        "reason": reason,
        "failed_gates": dg.MetadataValue.json(failed),
        "evaluated_model_fingerprint": fingerprint,
        "model_fingerprint": model_fingerprint(out_dir),
        "base_model": config.base_model,
        "gates": markdown_table(gates, floatfmt=".4f"),
    })
