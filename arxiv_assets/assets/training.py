"""model: contrastive fine-tuning of a Sentence Transformers model on the pairs."""

import hashlib
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

import dagster as dg
import pandas as pd
from datasets import DatasetDict
from pydantic import Field

from arxiv_assets.k8s import GPU_STEP_TAGS
from arxiv_assets.ml.hardware import CudaUnavailableError
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.training import train
from arxiv_assets.profiles import ACTIVE

from .config import settings_config
from .reporting import markdown_table, metrics_table


class TrainConfig(settings_config(ACTIVE.train)):
    """``arxiv_assets.ml.training.TrainSettings``, defaulting to the active profile's, and where checkpoints go."""

    work_dir: str = Field(default=str(Path(tempfile.gettempdir()) / "arxiv-embeddings-train"),
                          description="checkpoints of unfinished runs, resumed by the next run with the same "
                                      "settings and data")


# GPU_STEP_TAGS: in prod this step runs as its own Kubernetes Job on a GPU node (arxiv_assets/k8s.py).
@dg.asset(group_name="training", kinds={"pytorch", "sentencetransformers"}, op_tags=GPU_STEP_TAGS)
def model(context: dg.AssetExecutionContext, config: TrainConfig, pairs: DatasetDict, splits: pd.DataFrame) -> Path:
    """The fine-tuned Sentence Transformers model: a normal model directory that ``SentenceTransformer(path)`` loads."""
    settings = config.settings()
    eval_papers = papers_in(splits, "eval")
    # What the run trains on, by content: a re-run on the same data resumes this run's checkpoints.
    data_fingerprint = hashlib.sha256(b"".join(
        pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()
        for frame in (pairs["train"].to_pandas(), pairs["eval"].to_pandas(), eval_papers[["id"]]))).hexdigest()
    output_dir = Path(tempfile.mkdtemp(prefix="arxiv-model-"))  # stored, then deleted by the IO manager
    try:
        result = train(
            pairs["train"], pairs["eval"], eval_papers, settings, output_dir,
            work_dir=Path(config.work_dir), data_fingerprint=data_fingerprint, run_name=f"model-{context.run_id[:8]}",
            train_papers=papers_in(splits, "train"),
        )
    except BaseException as error:
        shutil.rmtree(output_dir, ignore_errors=True)  # a failed step leaves no empty folder behind
        if isinstance(error, CudaUnavailableError):  # retrying on the same pod cannot bring CUDA back
            raise dg.Failure(description=str(error), metadata=error.facts, allow_retries=False) from error
        raise
    context.add_output_metadata({
        "base_model": settings.base_model,
        "loss": settings.loss,
        "device": result.device,
        "precision": result.precision,
        "precision_reason": result.precision_choice.reason,
        **({} if not result.precision_choice.seconds else {
            "precision_timed_step_seconds": dg.MetadataValue.json(result.precision_choice.seconds)}),
        "attention_kernel": result.attention_kernel_choice.kernel,
        "attention_kernel_reason": result.attention_kernel_choice.reason,
        **({} if not result.attention_kernel_choice.seconds else {
            "attention_kernel_timed_step_seconds": dg.MetadataValue.json(result.attention_kernel_choice.seconds)}),
        "max_seq_length": result.max_seq_length,
        "train_seq_length": result.train_seq_length,
        "token_length_percentiles": dg.MetadataValue.json(result.token_length_percentiles),
        "steps": result.steps,
        **({} if result.budget is None else {
            "planned_steps": result.budget.planned_steps,
            "steps_cut_to_time_budget": result.budget.cut,
            "timed_seconds_per_step": round(result.budget.seconds_per_step or float("nan"), 3)}),
        "train_pairs": len(pairs["train"]),
        **({} if result.teacher_seconds is None else {
            "teacher_model": str(settings.teacher_model), "teacher_seconds": round(result.teacher_seconds, 1)}),
        "samples_per_second": round(result.samples_per_second, 2),
        "train_seconds": round(result.train_seconds, 1),
        "peak_memory_mb": round(result.peak_memory_mb),
        "resumed_from_checkpoint": result.resumed_from or "",
        "final_eval": markdown_table(metrics_table({"eval split": result.eval_metrics}).T, floatfmt=".4f"),
        "eval_P@10": result.eval_metrics.get("eval_cosine_precision@10", float("nan")),
        **({} if result.interpolation is None else {
            "interpolation_weight": result.interpolation.weight,
            "interpolation_eval": markdown_table(result.interpolation.scores, floatfmt=".4f"),
            "interpolation_seconds": round(result.interpolation.seconds, 1)}),
        **({} if result.soup is None else {
            "soup": "the base, this run and the second run averaged at a third each",
            "soup_loss": result.soup.loss, "soup_steps": result.soup.steps,
            "soup_train_seconds": round(result.soup.train_seconds, 1),
            "soup_reused_from_failed_run": result.soup.reused}),
        "wandb": dg.MetadataValue.json(result.wandb),
        "settings": dg.MetadataValue.json(asdict(settings)),
    })
    return output_dir
