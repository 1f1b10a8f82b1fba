"""FAISS indexes at arXiv scale: flat, HNSW and IVF-PQ built from a million 384-d paper embeddings.

    nice python -m benchmarks.index_scale                        # 1,000,000 vectors, every kind
    nice python -m benchmarks.index_scale --vectors 200000 --kinds flat ivfpq --nprobe 16 32 64

The vectors: ``--real`` papers of the bundled sample (random, seed 0) embedded by the bundled
all-MiniLM-L6-v2, then synthetic vectors, each a random real one plus isotropic Gaussian noise of
``--noise`` per dimension, re-normalized. Each synthetic vector stays near its seed paper (cosine
about 1 / sqrt(1 + 384·noise²)), so the corpus keeps the real papers' layout (subjects, their
sizes and the gaps between them: what the IVF cells and PQ codebooks are trained on), and every
paper gets a cloud of close neighbours, as a popular topic has in the full arXiv. The noise itself is
isotropic, spread over all 384 dimensions where real embeddings vary along far fewer, so the clouds
are harder to compress than real neighbourhoods: recall here is, if anything, pessimistic.

For each kind it records build time (IVF-PQ: training on the sample, then adding), index bytes
(``faiss.write_index``'s size), the process's resident memory after the build and its peak so far,
recall@10 against exact search on ``--queries`` held-out rows (never in the training sample) and
the p50/p99 latency of single-query searches of k = 10.
"""

from __future__ import annotations

import argparse
import gc
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import faiss
import numpy as np
import pandas as pd

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model
from arxiv_assets.ml.index import (
    HnswOptions,
    IvfPqOptions,
    build_index,
    held_out_rows,
    neighbour_recall,
    set_ivfpq_search,
    train_ivfpq,
)
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from benchmarks.common import flags_line, machine_line

K = 10
NOISE = 0.02


def real_embeddings(n: int, cache: Path | None) -> tuple[np.ndarray, float | None]:
    """``n`` random bundled papers embedded by the bundled base model, and the texts/s it took (None: read from
    ``cache``, a .npy written by an earlier run with the same ``n``)."""
    if cache is not None and cache.is_file():
        vectors = np.load(cache)
        if len(vectors) == n:
            return vectors, None
    papers = pd.read_parquet(BUNDLED_SAMPLE).sample(n=n, random_state=0)
    model = load_model(BUNDLED_BASE_MODEL, device="cpu")
    started = time.perf_counter()
    vectors = encode(model, paper_texts(papers), batch_size=64)
    texts_per_s = n / (time.perf_counter() - started)
    if cache is not None:
        np.save(cache, vectors)
    return vectors, texts_per_s


def synthetic_corpus(real: np.ndarray, n: int, noise: float, seed: int = 0,
                     chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, seeds): the real vectors, then ``n - len(real)`` copies of random real ones plus Gaussian noise,
    re-normalized (float32); ``seeds[i]`` is the real row that corpus row i was drawn around."""
    rng = np.random.default_rng(seed)
    seeds = np.concatenate([np.arange(len(real)), rng.integers(len(real), size=n - len(real))])
    corpus = np.empty((n, real.shape[1]), dtype=np.float32)
    corpus[:len(real)] = real
    for start in range(len(real), n, chunk):
        stop = min(start + chunk, n)
        block = real[seeds[start:stop]] + rng.normal(0.0, noise, size=(stop - start, real.shape[1])).astype(np.float32)
        corpus[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return corpus, seeds


def rss_mb(field: str) -> float:
    """A memory field of this process's /proc status, MB: VmRSS (now), VmHWM (peak), RssAnon, RssFile, ..."""
    line = next(x for x in Path("/proc/self/status").read_text().splitlines() if x.startswith(field + ":"))
    return int(line.split()[1]) / 1024


def index_bytes(index) -> int:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "index.faiss"
        faiss.write_index(index, str(path))
        return path.stat().st_size


def latencies_ms(index, queries: np.ndarray) -> np.ndarray:
    times = []
    for query in queries:
        started = time.perf_counter()
        index.search(query[None, :], K)
        times.append(time.perf_counter() - started)
    return 1000 * np.asarray(times)


def built(name: str, build: Callable[[], tuple[object, float]]) -> tuple[object, dict[str, object]]:
    """The index ``build`` returns (with its training seconds), its build time, size and memory."""
    rss_before = rss_mb("VmRSS")
    started = time.perf_counter()
    index, train_seconds = build()
    build_seconds = time.perf_counter() - started
    rss_after = rss_mb("VmRSS")
    return index, {"index": name, "vectors": index.ntotal, "train s": round(train_seconds, 1),
                   "build s": round(build_seconds, 1), "index MB": round(index_bytes(index) / 2**20, 1),
                   "RSS added MB": round(rss_after - rss_before), "peak RSS MB": round(rss_mb("VmHWM"))}


def searched(index, corpus: np.ndarray, query_rows: np.ndarray, truth: np.ndarray) -> dict[str, object]:
    """recall@10 of ``index`` against ``truth`` (the exact top k + 1), and single-query latency percentiles."""
    queries = corpus[query_rows]
    _, found = index.search(queries, K + 1)
    latency = latencies_ms(index, queries)
    return {"recall@10": round(neighbour_recall(query_rows, truth, found, K), 4),
            "p50 ms": round(float(np.percentile(latency, 50)), 2),
            "p99 ms": round(float(np.percentile(latency, 99)), 2)}


def report(row: dict[str, object], rows: list[dict[str, object]]) -> None:
    print(row, flush=True)
    rows.append(row)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--real", type=int, default=2000, help="real papers embedded (the seeds)")
    parser.add_argument("--real-cache", type=Path, default=None,
                        help="a .npy of the real embeddings: read if it exists (same --real), else written")
    parser.add_argument("--noise", type=float, default=NOISE, help="Gaussian noise per dimension")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq", "hnsw"], choices=["flat", "ivfpq", "hnsw"])
    parser.add_argument("--hnsw-vectors", type=int, default=None,
                        help="build HNSW over the first N vectors only (its build is the slow one)")
    defaults = IvfPqOptions()
    parser.add_argument("--pq-m", type=int, default=defaults.pq_m)
    parser.add_argument("--refine", nargs="+", default=[defaults.refine], choices=["none", "sq8", "flat"])
    parser.add_argument("--nprobe", type=int, nargs="+", default=[defaults.nprobe])
    parser.add_argument("--refine-k-factor", type=int, nargs="+", default=[defaults.refine_k_factor])
    parser.add_argument("--train-size", type=int, default=defaults.train_size)
    args = parser.parse_args()

    real, texts_per_s = real_embeddings(args.real, args.real_cache)
    embedded = f"embedded at {texts_per_s:.1f} texts/s" if texts_per_s else f"embeddings read from {args.real_cache}"
    corpus, seeds = synthetic_corpus(real, args.vectors, args.noise)
    similarity = real @ real.T
    np.fill_diagonal(similarity, -1.0)
    sample = np.arange(args.real, min(len(corpus), args.real + 10_000))
    to_seed = np.sum(corpus[sample] * real[seeds[sample]], axis=1)
    layout = (f"median cosine of a real paper to its nearest real paper {np.median(similarity.max(axis=1)):.3f}, "
              f"of a synthetic vector to its seed {np.median(to_seed):.3f}")
    print(f"{args.real} real papers, {embedded}; {layout}", flush=True)
    del similarity
    query_rows, train_rows = held_out_rows(len(corpus), args.queries, args.train_size)
    rows: list[dict[str, object]] = []

    flat, info = built("flat", lambda: (build_index(corpus, "flat"), 0.0))
    started = time.perf_counter()
    _, truth = flat.search(corpus[query_rows], K + 1)
    truth_seconds = time.perf_counter() - started
    if "flat" in args.kinds:
        report({**info, **searched(flat, corpus, query_rows, truth)}, rows)
    del flat
    gc.collect()

    for refine in args.refine if "ivfpq" in args.kinds else []:
        options = IvfPqOptions(pq_m=args.pq_m, refine=refine, train_size=args.train_size)

        def train_and_add(options: IvfPqOptions = options) -> tuple[object, float]:
            started = time.perf_counter()
            index = train_ivfpq(corpus[train_rows], len(corpus), options)
            train_seconds = time.perf_counter() - started
            index.add(corpus)
            return index, train_seconds

        index, info = built(f"ivfpq PQ{args.pq_m} refine {refine}", train_and_add)
        info["nlist"] = faiss.extract_index_ivf(index).nlist
        for nprobe in args.nprobe:
            for k_factor in args.refine_k_factor if refine != "none" else [0]:
                set_ivfpq_search(index, replace(options, nprobe=nprobe, refine_k_factor=k_factor))
                report({**info, "nprobe": nprobe, "k_factor": k_factor or None,
                        **searched(index, corpus, query_rows, truth)}, rows)
        del index
        gc.collect()

    if "hnsw" in args.kinds:
        n = args.hnsw_vectors or len(corpus)
        hnsw_rows = query_rows[query_rows < n]
        hnsw_truth = truth if n == len(corpus) else build_index(corpus[:n], "flat").search(corpus[hnsw_rows], K + 1)[1]
        options = HnswOptions()
        index, info = built(f"hnsw M{options.m} efC {options.ef_construction} efS {options.ef_search}",
                            lambda: (build_index(corpus[:n], "hnsw", options), 0.0))
        report({**info, **searched(index, corpus, hnsw_rows, hnsw_truth)}, rows)

    print(f"\n{machine_line()} · {flags_line()} · faiss {faiss.__version__}, {faiss.omp_get_max_threads()} "
          f"OpenMP threads · peak RSS {rss_mb('VmHWM'):,.0f} MB")
    print(f"{args.vectors:,} vectors: {args.real:,} real papers ({embedded}) and noisy "
          f"copies (noise {args.noise}/dim; {layout}); {len(query_rows)} held-out queries, exact top-{K} by flat "
          f"search in {truth_seconds:.0f} s; IVF-PQ trained on {len(train_rows):,} other rows\n")
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
