"""onnx_model, paper_embeddings and faiss_index: the promoted model exported, every paper embedded once,
and indexed, each gated by blocking checks.

All are made from ``promoted_model`` (the fine-tuned model if it passed every quality gate, else the
champion or the base model), never from ``model``. ``onnx_model`` and ``faiss_index`` write
``checks.json`` into their artifacts: the fingerprint of the model they were made from and whether
their blocking checks passed. ``release`` reads that, so a failed parity or recall check keeps a bad
export or index out of production even when the release is materialized in another run.

``paper_embeddings`` is partitioned by month like ``raw_papers``: each month's kept papers are
embedded once per model, with the fastest variant of the export that passed its parity checks, and
stored with their ids, text digests and the model's fingerprint. A month re-materialized for the
same model reuses its stored vectors (only new or changed papers are encoded), and so do the papers
the evaluation already encoded with this model (``evaluation_embeddings``: the judged and probe papers,
in the evaluation's PyTorch precision, which the export's parity checks hold the variants to); a new
model re-embeds every other paper of every month, as a backfill Dagster can spread over runs.
``faiss_index`` reads those vectors and encodes nothing; it refuses vectors of another model.
"""

import tempfile
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from arxiv_assets.assets.data import monthly_partitions
from arxiv_assets.deployments import embedding_backfill_policy
from arxiv_assets.ml.embedding import embed_papers, embedding_matrix, text_digest
from arxiv_assets.ml.export import DEFAULT_QUANTIZED_OPERATORS, calibration_texts, export_onnx
from arxiv_assets.ml.hardware import best_device
from arxiv_assets.ml.index import HnswOptions, IvfPqOptions, choose_kind, held_out_rows, paper_index, recall_at_k
from arxiv_assets.ml.metrics import subject_retrieval
from arxiv_assets.ml.splits import SPLITS, month_key, papers_by_month
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import (
    ONNX_VARIANTS,
    OPENVINO_FLOAT_VARIANTS,
    OPENVINO_VARIANT,
    REFERENCE_VARIANT,
    ModelExport,
    ParityStats,
    encode_variant,
    load_variant,
    model_fingerprint,
    openvino_config,
    parity_sample,
    timed_encode,
)
from arxiv_assets.resources.io_manager import ArtifactIOManager
from arxiv_assets.storage.releases import read_checks, write_checks

from .reporting import markdown_table

ONNX_CHECKS = {
    "onnx_fp32_parity": "every parity text's fp32 ONNX embedding has cosine >= min_cosine_fp32 to PyTorch",
    "onnx_int8_parity": "every parity text's int8 ONNX embedding has cosine >= min_cosine_int8 to PyTorch",
    "onnx_int8_p_at_10": "int8 ONNX subject-retrieval P@10 is within max_p10_diff_points of PyTorch's",
    "openvino_fp32_parity": "every parity text's OpenVINO fp32 embedding has cosine >= min_cosine_fp32 to PyTorch",
    "openvino_bf16_parity": "every parity text's OpenVINO embedding with the bf16 hint (f32 on a CPU without native "
                            "bf16) has cosine >= min_cosine_bf16 to PyTorch",
    "openvino_int8_parity": "every parity text's OpenVINO static int8 embedding has cosine >= min_cosine_int8 "
                            "to PyTorch",
    "openvino_int8_p_at_10": "OpenVINO static int8 subject-retrieval P@10 is within max_p10_diff_points of "
                             "PyTorch's",
}
VARIANTS_MEASURED = (REFERENCE_VARIANT, *ONNX_VARIANTS, *OPENVINO_FLOAT_VARIANTS, OPENVINO_VARIANT)
PARITY_CHECKS: dict[str, str] = {"onnx-fp32": "onnx_fp32_parity", "onnx-int8": "onnx_int8_parity",
                                 "openvino-fp32": "openvino_fp32_parity", "openvino-bf16": "openvino_bf16_parity",
                                 OPENVINO_VARIANT: "openvino_int8_parity"}  # variant -> check
P_AT_10_CHECKS: dict[str, str] = {"onnx-int8": "onnx_int8_p_at_10", OPENVINO_VARIANT: "openvino_int8_p_at_10"}
# The checks a variant must have passed to embed papers (the PyTorch fp32 reference needs none).
VARIANT_CHECKS: dict[str, tuple[str, ...]] = {
    REFERENCE_VARIANT: (),
    **{variant: (check, *((P_AT_10_CHECKS[variant],) if variant in P_AT_10_CHECKS else ()))
       for variant, check in PARITY_CHECKS.items()},
}


class OnnxModelConfig(dg.Config):
    parity_texts: int = 256  # real test-split papers, round-robin over subjects
    batch_size: int = 32
    threads: int | None = None  # intra-op threads for every variant; None: the runtimes' defaults
    quantization_target: Literal["auto", "arm64", "avx2", "avx512", "avx512_vnni"] = "auto"  # auto: this CPU's
    quantized_operators: list[str] = list(DEFAULT_QUANTIZED_OPERATORS)
    min_cosine_fp32: float = 0.999
    # bf16 keeps fp32's 7 leading mantissa bits and accumulates in f32: min cosine 0.99997 to fp32 (RESULTS.md
    # "OpenVINO's bf16"), so it is held to fp32's bar, and embeds papers wherever fp32 may.
    min_cosine_bf16: float = 0.999
    min_cosine_int8: float = 0.98  # both int8 variants
    max_p10_diff_points: float = 1.0
    # Train-split papers whose activations calibrate the OpenVINO static int8 variant (none of them is a
    # parity text: those are test papers).
    calibration_texts: int = Field(default=300, ge=1)


@dg.asset(
    group_name="deployment",
    kinds={"onnx"},
    check_specs=[dg.AssetCheckSpec(name, asset="onnx_model", blocking=True, description=description)
                 for name, description in ONNX_CHECKS.items()],
)
def onnx_model(context: dg.AssetExecutionContext, config: OnnxModelConfig, promoted_model: Path,
               splits: pd.DataFrame):
    """The promoted model exported to ONNX (fp32), dynamically quantized to int8 for this CPU, converted to OpenVINO
    (fp32, run in f32 or bf16) and statically quantized to int8 for it (calibrated on train papers), next to its
    PyTorch weights; every variant's embeddings, P@10 and speed measured on real test papers."""
    sample = parity_sample(splits, config.parity_texts)
    texts, subjects = paper_texts(sample), sample["primary_subject"].tolist()
    calibration = calibration_texts(splits, config.calibration_texts, exclude=sample["id"])
    out_dir = Path(tempfile.mkdtemp(prefix="onnx-model-"))  # the IO manager stores it, then deletes it
    target = None if config.quantization_target == "auto" else config.quantization_target
    export = export_onnx(promoted_model, out_dir, target=target,
                         quantized_operators=config.quantized_operators, calibration_texts=calibration)
    context.log.info(f"exported {out_dir} in {export.export_seconds:.1f}s (int8 config {export.quantization_target}; "
                     f"OpenVINO int8 calibrated on {len(calibration)} papers)")

    vectors: dict[str, np.ndarray] = {}
    rows: dict[str, dict[str, float]] = {}
    for variant in VARIANTS_MEASURED:
        encoder = load_variant(out_dir, variant, threads=config.threads)
        vectors[variant], texts_per_s = timed_encode(encoder, variant, texts, config.batch_size)
        max_seq_length = int(encoder.max_seq_length)
        del encoder
        rows[variant] = {"texts_per_s": texts_per_s,
                         "P@10": subject_retrieval(vectors[variant], subjects).micro["P@10"]}
        context.log.info(f"{variant}: {texts_per_s:.1f} texts/s, P@10 {rows[variant]['P@10']:.4f}")
    reference = vectors[REFERENCE_VARIANT]
    parity = {v: ParityStats.of(reference, vectors[v]) for v in VARIANTS_MEASURED}
    sizes = export.file_sizes()
    for variant, row in rows.items():
        row.update(min_cosine=parity[variant].min_cosine, mean_cosine=parity[variant].mean_cosine,
                   speedup=row["texts_per_s"] / rows[REFERENCE_VARIANT]["texts_per_s"], mb=sizes[variant] / 2**20)
    thresholds = {"onnx-fp32": config.min_cosine_fp32, "onnx-int8": config.min_cosine_int8,
                  "openvino-fp32": config.min_cosine_fp32, "openvino-bf16": config.min_cosine_bf16,
                  OPENVINO_VARIANT: config.min_cosine_int8}
    p10_diff_points = {v: 100 * (rows[v]["P@10"] - rows[REFERENCE_VARIANT]["P@10"]) for v in P_AT_10_CHECKS}
    check_results = [
        *(dg.AssetCheckResult(
            check_name=check_name, passed=parity[variant].min_cosine >= thresholds[variant],
            metadata={"min_cosine": parity[variant].min_cosine, "p1_cosine": parity[variant].p1_cosine,
                      "mean_cosine": parity[variant].mean_cosine, "threshold": thresholds[variant],
                      "texts": len(texts)},
        ) for variant, check_name in PARITY_CHECKS.items()),
        *(dg.AssetCheckResult(
            check_name=check_name, passed=abs(p10_diff_points[variant]) <= config.max_p10_diff_points,
            metadata={"torch_fp32_P@10": rows[REFERENCE_VARIANT]["P@10"], f"{variant}_P@10": rows[variant]["P@10"],
                      "diff_points": p10_diff_points[variant], "max_diff_points": config.max_p10_diff_points},
        ) for variant, check_name in P_AT_10_CHECKS.items()),
    ]
    write_checks(out_dir, export.source_fingerprint, {c.check_name: c.passed for c in check_results},
                 {"variants": rows})

    yield dg.Output(out_dir, metadata={
        "variants": markdown_table(pd.DataFrame(rows).T, floatfmt=".4f"),
        **{f"{v}_texts_per_s": round(row["texts_per_s"], 2) for v, row in rows.items()},
        **{f"{v}_bytes": sizes[v] for v in VARIANTS_MEASURED},
        "quantization_target": export.quantization_target,
        # what the OpenVINO variants ran in on this CPU (bf16 only where it is native)
        "openvino_precision_hints": dg.MetadataValue.json(
            {v: openvino_config(v, config.threads)["INFERENCE_PRECISION_HINT"]
             for v in (*OPENVINO_FLOAT_VARIANTS, OPENVINO_VARIANT)}),
        "openvino_calibration_texts": export.openvino_calibration_texts,
        "quantized_operators": dg.MetadataValue.json(list(export.quantized_operators)),
        "activation_matmuls_kept_fp32": export.excluded_nodes,
        "parity_texts": len(texts),
        "export_seconds": export.export_seconds,
        "source_model_fingerprint": export.source_fingerprint,
        "max_seq_length": max_seq_length,
    })
    yield from check_results


class PaperEmbeddingsConfig(dg.Config):
    # auto: on a CPU the fastest variant (by onnx_model's measurement) whose parity checks passed; on CUDA
    # PyTorch fp32 on the GPU (the ONNX variants are CPU builds)
    variant: Literal["auto", "torch-fp32", "onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-bf16",
                     "openvino-int8"] = "auto"
    # auto takes only variants this close to PyTorch fp32 (onnx_model's measured min cosine): the int8 variants
    # (0.992-0.996) cost title search -0.3 to -0.5 point of MRR@10 against fp32 (benchmarks/RESULTS.md "What the
    # service sends", "int8 of the soup"). The service may still answer queries in static int8 (its own bar); the
    # stored vectors are made once per model and searched by every query, so they keep fp32's fidelity. 0.98: the
    # fastest variant that passed, int8 included.
    min_cosine: float = 0.999
    batch_size: int = 64
    threads: int | None = None  # intra-op threads; None: the runtime's default


def embedding_variant(checks: dict, requested: str, device: str, min_cosine: float = 0.0) -> str:
    """The variant that embeds papers: ``requested`` if its checks passed, else (``auto``) the fastest that passed
    and matched PyTorch fp32 to ``min_cosine`` on every parity text."""
    # An export made before a variant existed has no checks for it, so it does not pass them.
    passed = [v for v, needed in VARIANT_CHECKS.items() if all(checks["checks"].get(c, False) for c in needed)]
    if requested != "auto":
        if requested not in passed:
            raise dg.Failure(f"variant {requested} did not pass its onnx_model checks {VARIANT_CHECKS[requested]}; "
                             f"variants that passed: {passed}")
        return requested
    if device.startswith("cuda"):
        return REFERENCE_VARIANT
    measured = checks["details"]["variants"]
    speeds = {v: measured[v]["texts_per_s"] for v in passed
              if v == REFERENCE_VARIANT or measured[v].get("min_cosine", 0.0) >= min_cosine}
    return max(speeds, key=speeds.__getitem__)


@dg.asset(
    partitions_def=monthly_partitions,
    backfill_policy=embedding_backfill_policy(),
    group_name="deployment",
    kinds={"parquet"},
    required_resource_keys={"io_manager"},  # to read the month's stored vectors back and reuse the valid ones
)
def paper_embeddings(context: dg.AssetExecutionContext, config: PaperEmbeddingsConfig, splits: pd.DataFrame,
                     onnx_model: Path, evaluation_embeddings: pd.DataFrame):
    """Every kept paper of the month embedded by the promoted model (``id, text_sha256, model_fingerprint,
    embedding``), with the fastest export variant that passed parity and matches fp32 to ``min_cosine``; vectors
    already stored for the same paper, text and model, or made by the evaluation of that model, are reused."""
    checks = read_checks(onnx_model, "the onnx_model export")
    fingerprint = ModelExport.read(onnx_model).source_fingerprint
    device = best_device()
    variant = embedding_variant(checks, config.variant, device, config.min_cosine)
    io_manager: ArtifactIOManager = context.resources.io_manager
    encoder = None

    def encode_texts(texts: list[str]) -> np.ndarray:
        nonlocal encoder
        encoder = encoder or load_variant(onnx_model, variant, threads=config.threads,
                                          device=device if variant.startswith("torch") else "cpu")
        return encode_variant(encoder, variant, texts, config.batch_size)

    by_month = papers_by_month(splits)  # grouped once: a backfill run covers many months
    months: dict[str, pd.DataFrame] = {}
    started = time.perf_counter()
    evaluated = evaluation_embeddings[evaluation_embeddings["model_fingerprint"] == fingerprint]
    for month in context.partition_keys:
        papers = by_month.get(month, splits.iloc[:0])
        stored = io_manager.latest_value(context.assets_def.key, month)
        from_evaluation = evaluated[evaluated["id"].isin(papers["id"])]
        previous = pd.concat([stored, from_evaluation]) if isinstance(stored, pd.DataFrame) else from_evaluation
        months[month], encoded = embed_papers(papers["id"].tolist(), paper_texts(papers), encode_texts, fingerprint,
                                              previous)
        context.log.info(f"{month}: {len(papers)} papers, {encoded} encoded, {len(papers) - encoded} reused")
        context.add_asset_metadata({"dagster/row_count": len(papers), "encoded": encoded,
                                    "reused": len(papers) - encoded,
                                    "available_from_evaluation": len(from_evaluation)}, partition_key=month)
    return dg.Output(
        months if len(months) > 1 else months[context.partition_key],
        metadata={  # the run's, on every month it covered
            "run_encode_seconds": round(time.perf_counter() - started, 2),
            "run_months": len(months),
            "variant": variant,
            "device": device,
            "model_fingerprint": fingerprint,
        },
    )


def index_vectors(papers: pd.DataFrame, embeddings: dict[str, pd.DataFrame], fingerprint: str) -> np.ndarray:
    """The stored embedding of each paper, in order; ``dg.Failure`` naming the months to re-materialize when
    a paper has none, or one made by another model or from another text than the splits hold."""
    stored = pd.concat(embeddings.values(), ignore_index=True).drop_duplicates("id", keep="last")
    joined = papers[["id", "published"]].assign(text=[text_digest(t) for t in paper_texts(papers)]).merge(
        stored, on="id", how="left")
    problems = {
        "have no embedding": joined["embedding"].isna(),
        f"were embedded by another model than the promoted one ({fingerprint})":
            joined["embedding"].notna() & (joined["model_fingerprint"] != fingerprint),
        "were embedded from another text than the splits now hold":
            joined["embedding"].notna() & (joined["text_sha256"] != joined["text"]),
    }
    for what, rows in problems.items():
        if rows.any():
            months = sorted(month_key(joined.loc[rows, "published"]).unique())
            raise dg.Failure(f"{int(rows.sum())} papers to index {what}: materialize paper_embeddings for months "
                             f"{months}")
    return embedding_matrix(joined)


class FaissIndexConfig(dg.Config):
    # flat: exact IndexFlatIP; hnsw, ivfpq: approximate, recall checked; auto: flat below ivfpq_from papers, else ivfpq
    kind: Literal["auto", "flat", "hnsw", "ivfpq"] = "auto"
    # exact flat search scans every vector: 590 ms a query at 1M on 2 busy cores (benchmarks/RESULTS.md), ~60 at 100k
    ivfpq_from: int = 100_000
    hnsw_m: int = 32
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 128
    ivf_nlist: int | None = None  # None: about 4·sqrt(papers), at most one cell per 39 training vectors
    ivf_pq_m: int = IvfPqOptions.pq_m  # bytes per PQ code
    ivf_nprobe: int = IvfPqOptions.nprobe
    ivf_refine: Literal["none", "sq8", "flat"] = IvfPqOptions.refine  # re-rank candidates with SQ8 / float vectors
    ivf_refine_k_factor: int = IvfPqOptions.refine_k_factor
    ivf_train_size: int = IvfPqOptions.train_size  # papers the quantizers train on; never a recall query
    min_recall_at_10: float = 0.95  # the blocking bar for an approximate index
    recall_queries: int = 1000
    splits_to_index: list[str] = list(SPLITS)  # every kept paper: /search finds new and unseen-subject papers too


@dg.asset(
    group_name="deployment",
    kinds={"faiss"},
    check_specs=[dg.AssetCheckSpec("ann_recall_at_10", asset="faiss_index", blocking=True,
                                   description="recall@10 of the index against exact search on held-out papers "
                                               "(never in the IVF-PQ training sample) >= min_recall_at_10 (1.0 by "
                                               "construction for the exact flat index)")],
)
def faiss_index(context: dg.AssetExecutionContext, config: FaissIndexConfig, promoted_model: Path,
                splits: pd.DataFrame, paper_embeddings: dict[str, pd.DataFrame]):
    """Every paper of the chosen splits, as ``paper_embeddings`` holds it, indexed for /search, with an
    id/title/subject sidecar and the fingerprint of the model that embedded it."""
    papers = splits[splits["split"].isin(config.splits_to_index)].reset_index(drop=True)
    if papers.empty:
        raise dg.Failure(f"no papers in splits {config.splits_to_index} to index")
    fingerprint = model_fingerprint(promoted_model)
    vectors = index_vectors(papers, paper_embeddings, fingerprint)

    kind = choose_kind(len(papers), config.ivfpq_from) if config.kind == "auto" else config.kind
    query_rows, train_rows = held_out_rows(len(papers), config.recall_queries, config.ivf_train_size)
    started = time.perf_counter()
    hnsw = HnswOptions(config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search)
    ivfpq = IvfPqOptions(config.ivf_nlist, config.ivf_pq_m, config.ivf_nprobe, config.ivf_refine,
                         config.ivf_refine_k_factor, config.ivf_train_size)
    built = paper_index(vectors, papers, kind=kind, hnsw=hnsw, ivfpq=ivfpq, train_rows=train_rows,
                        model_fingerprint=fingerprint)
    build_seconds = time.perf_counter() - started
    recall = recall_at_k(built.index, vectors, query_rows, k=10) if len(papers) > 10 else 1.0
    recall_check = dg.AssetCheckResult(
        check_name="ann_recall_at_10",
        passed=recall >= config.min_recall_at_10,
        metadata={"recall_at_10": recall, "threshold": config.min_recall_at_10, "kind": kind,
                  "queries": len(query_rows), "training_vectors": len(train_rows) if kind == "ivfpq" else 0},
    )
    out_dir = built.save(Path(tempfile.mkdtemp(prefix="faiss-index-")))  # stored, then deleted by the IO manager
    write_checks(out_dir, built.meta["model_fingerprint"], {recall_check.check_name: recall_check.passed},
                 {"recall_at_10": recall, "vectors": len(built)})
    index_bytes = sum(p.stat().st_size for p in out_dir.iterdir())

    yield dg.Output(out_dir, metadata={
        "dagster/row_count": len(papers),
        "vectors": len(built),
        "dim": built.dim,
        "kind": kind,
        "requested_kind": config.kind,
        **({"ivfpq": dg.MetadataValue.json(built.meta["ivfpq"])} if kind == "ivfpq" else {}),
        "recall_at_10": recall,
        "embedding_months": len(paper_embeddings),
        "build_seconds": round(build_seconds, 3),
        "bytes": index_bytes,
        "model_fingerprint": built.meta["model_fingerprint"],
        "splits_indexed": dg.MetadataValue.json(config.splits_to_index),
    })
    yield recall_check
