"""onnx_model and faiss_index: the promoted model exported and indexed, each gated by blocking checks.

Both are made from ``promoted_model`` (the fine-tuned model if it passed every quality gate, else the
champion or the base model), never from ``model``. Each writes ``checks.json`` into its artifact:
the fingerprint of the model it was made from and whether its blocking checks passed. ``release``
reads that, so a failed parity or recall check keeps a bad export or index out of production even
when the release is materialized in another run.
"""

import tempfile
import time
from pathlib import Path
from typing import Literal

import dagster as dg
import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import encode, load_model
from arxiv_assets.ml.export import DEFAULT_QUANTIZED_OPERATORS, export_onnx
from arxiv_assets.ml.hardware import best_device
from arxiv_assets.ml.index import HnswOptions, IvfPqOptions, choose_kind, held_out_rows, paper_index, recall_at_k
from arxiv_assets.ml.metrics import subject_retrieval
from arxiv_assets.ml.splits import SPLITS
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.variants import (
    REFERENCE_VARIANT,
    ParityStats,
    load_variant,
    model_fingerprint,
    parity_sample,
    timed_encode,
)
from arxiv_assets.storage.releases import write_checks

from .reporting import markdown_table

ONNX_CHECKS = {
    "onnx_fp32_parity": "every parity text's fp32 ONNX embedding has cosine >= min_cosine_fp32 to PyTorch",
    "onnx_int8_parity": "every parity text's int8 ONNX embedding has cosine >= min_cosine_int8 to PyTorch",
    "onnx_int8_p_at_10": "int8 ONNX subject-retrieval P@10 is within max_p10_diff_points of PyTorch's",
}
ONNX_VARIANTS_MEASURED = (REFERENCE_VARIANT, "onnx-fp32", "onnx-int8")


class OnnxModelConfig(dg.Config):
    parity_texts: int = 256  # real test-split papers, round-robin over subjects
    batch_size: int = 32
    threads: int | None = None  # intra-op threads for every variant; None: the runtimes' defaults
    quantization_target: Literal["auto", "arm64", "avx2", "avx512", "avx512_vnni"] = "auto"  # auto: this CPU's
    quantized_operators: list[str] = list(DEFAULT_QUANTIZED_OPERATORS)
    min_cosine_fp32: float = 0.999
    min_cosine_int8: float = 0.98
    max_p10_diff_points: float = 1.0


@dg.asset(
    group_name="deployment",
    kinds={"onnx"},
    check_specs=[dg.AssetCheckSpec(name, asset="onnx_model", blocking=True, description=description)
                 for name, description in ONNX_CHECKS.items()],
)
def onnx_model(context: dg.AssetExecutionContext, config: OnnxModelConfig, promoted_model: Path,
               splits: pd.DataFrame):
    """The promoted model exported to ONNX (fp32) and dynamically quantized to int8 for this CPU, next to its
    PyTorch weights; every variant's embeddings, P@10 and speed measured on real test papers."""
    sample = parity_sample(splits, config.parity_texts)
    texts, subjects = paper_texts(sample), sample["primary_subject"].tolist()
    out_dir = Path(tempfile.mkdtemp(prefix="onnx-model-"))  # the IO manager stores it, then deletes it
    target = None if config.quantization_target == "auto" else config.quantization_target
    export = export_onnx(promoted_model, out_dir, target=target,
                         quantized_operators=config.quantized_operators)
    context.log.info(f"exported {out_dir} in {export.export_seconds:.1f}s (int8 config {export.quantization_target})")

    vectors: dict[str, np.ndarray] = {}
    rows: dict[str, dict[str, float]] = {}
    for variant in ONNX_VARIANTS_MEASURED:
        encoder = load_variant(out_dir, variant, threads=config.threads)
        vectors[variant], texts_per_s = timed_encode(encoder, variant, texts, config.batch_size)
        max_seq_length = int(encoder.max_seq_length)
        del encoder
        rows[variant] = {"texts_per_s": texts_per_s,
                         "P@10": subject_retrieval(vectors[variant], subjects).micro["P@10"]}
        context.log.info(f"{variant}: {texts_per_s:.1f} texts/s, P@10 {rows[variant]['P@10']:.4f}")
    reference = vectors[REFERENCE_VARIANT]
    parity = {v: ParityStats.of(reference, vectors[v]) for v in ONNX_VARIANTS_MEASURED}
    sizes = export.file_sizes()
    for variant, row in rows.items():
        row.update(min_cosine=parity[variant].min_cosine, mean_cosine=parity[variant].mean_cosine,
                   speedup=row["texts_per_s"] / rows[REFERENCE_VARIANT]["texts_per_s"], mb=sizes[variant] / 2**20)
    p10_diff_points = 100 * (rows["onnx-int8"]["P@10"] - rows[REFERENCE_VARIANT]["P@10"])
    thresholds = {"onnx-fp32": config.min_cosine_fp32, "onnx-int8": config.min_cosine_int8}
    check_results = [
        *(dg.AssetCheckResult(
            check_name=check_name, passed=parity[variant].min_cosine >= thresholds[variant],
            metadata={"min_cosine": parity[variant].min_cosine, "p1_cosine": parity[variant].p1_cosine,
                      "mean_cosine": parity[variant].mean_cosine, "threshold": thresholds[variant],
                      "texts": len(texts)},
        ) for check_name, variant in (("onnx_fp32_parity", "onnx-fp32"), ("onnx_int8_parity", "onnx-int8"))),
        dg.AssetCheckResult(
            check_name="onnx_int8_p_at_10", passed=abs(p10_diff_points) <= config.max_p10_diff_points,
            metadata={"torch_fp32_P@10": rows[REFERENCE_VARIANT]["P@10"], "onnx_int8_P@10": rows["onnx-int8"]["P@10"],
                      "diff_points": p10_diff_points, "max_diff_points": config.max_p10_diff_points},
        ),
    ]
    write_checks(out_dir, export.source_fingerprint, {c.check_name: c.passed for c in check_results},
                 {"variants": rows})

    yield dg.Output(out_dir, metadata={
        "variants": markdown_table(pd.DataFrame(rows).T, floatfmt=".4f"),
        **{f"{v}_texts_per_s": round(row["texts_per_s"], 2) for v, row in rows.items()},
        **{f"{v}_bytes": sizes[v] for v in ONNX_VARIANTS_MEASURED},
        "quantization_target": export.quantization_target,
        "quantized_operators": dg.MetadataValue.json(list(export.quantized_operators)),
        "activation_matmuls_kept_fp32": export.excluded_nodes,
        "parity_texts": len(texts),
        "export_seconds": export.export_seconds,
        "source_model_fingerprint": export.source_fingerprint,
        "max_seq_length": max_seq_length,
    })
    yield from check_results


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
    batch_size: int = 64
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"  # auto: bf16 only where the hardware is fast at it


@dg.asset(
    group_name="deployment",
    kinds={"faiss"},
    check_specs=[dg.AssetCheckSpec("ann_recall_at_10", asset="faiss_index", blocking=True,
                                   description="recall@10 of the index against exact search on held-out papers "
                                               "(never in the IVF-PQ training sample) >= min_recall_at_10 (1.0 by "
                                               "construction for the exact flat index)")],
)
def faiss_index(context: dg.AssetExecutionContext, config: FaissIndexConfig, promoted_model: Path,
                splits: pd.DataFrame):
    """Every paper of the chosen splits embedded by the promoted model and indexed for /search, with an
    id/title/subject sidecar and the fingerprint of the model that embedded it."""
    from arxiv_assets.ml.embedding import default_precision

    papers = splits[splits["split"].isin(config.splits_to_index)].reset_index(drop=True)
    if papers.empty:
        raise dg.Failure(f"no papers in splits {config.splits_to_index} to index")
    device = best_device()
    precision = default_precision(device) if config.precision == "auto" else config.precision
    encoder = load_model(promoted_model, device=device)
    started = time.perf_counter()
    vectors = encode(encoder, paper_texts(papers), batch_size=config.batch_size, precision=precision)
    encode_seconds = time.perf_counter() - started
    context.log.info(f"embedded {len(papers)} papers in {encode_seconds:.0f}s on {device} ({precision})")

    kind = choose_kind(len(papers), config.ivfpq_from) if config.kind == "auto" else config.kind
    query_rows, train_rows = held_out_rows(len(papers), config.recall_queries, config.ivf_train_size)
    started = time.perf_counter()
    hnsw = HnswOptions(config.hnsw_m, config.hnsw_ef_construction, config.hnsw_ef_search)
    ivfpq = IvfPqOptions(config.ivf_nlist, config.ivf_pq_m, config.ivf_nprobe, config.ivf_refine,
                         config.ivf_refine_k_factor, config.ivf_train_size)
    built = paper_index(vectors, papers, kind=kind, hnsw=hnsw, ivfpq=ivfpq, train_rows=train_rows,
                        model_fingerprint=model_fingerprint(promoted_model))
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
        "encode_seconds": round(encode_seconds, 2),
        "encode_texts_per_s": round(len(papers) / max(encode_seconds, 1e-9), 2),
        "build_seconds": round(build_seconds, 3),
        "bytes": index_bytes,
        "precision": precision,
        "device": device,
        "model_fingerprint": built.meta["model_fingerprint"],
        "splits_indexed": dg.MetadataValue.json(config.splits_to_index),
    })
    yield recall_check
