"""FAISS nearest-neighbour indexes over paper embeddings, saved with the papers they point to.

Vectors are L2-normalized, so inner product is cosine. ``flat`` (IndexFlatIP) is exact: at tens of
thousands of papers a brute-force search takes milliseconds. ``hnsw`` (IndexHNSWFlat) is approximate
and keeps every vector in full. ``ivfpq`` is the index for all of arXiv: an inverted file of
``nlist`` k-means cells whose vectors are stored as ``pq_m``-byte product-quantization codes, trained
on a sample; a query scans its ``nprobe`` nearest cells and the best ``refine_k_factor * k``
candidates are re-ranked with 8-bit scalar-quantized copies of the vectors (``refine="sq8"``, 384
bytes a vector at 384 dimensions) or the float vectors themselves (``"flat"``). ``choose_kind`` picks
flat below a size and IVF-PQ above it. An approximate index's recall@10 against the exact search is
measured (``recall_at_k``), never assumed. A saved index is a directory::

    index.faiss      the FAISS index, row i = paper i
    papers.parquet   id, title, subject per row (the sidecar that turns rows into papers)
    index.json       kind, dim, count, HNSW / IVF-PQ parameters, the fingerprint of the model that embedded it
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

IndexKind = Literal["flat", "hnsw", "ivfpq"]
RefineKind = Literal["none", "sq8", "flat"]
INDEX_FILE = "index.faiss"
PAPERS_FILE = "papers.parquet"
META_FILE = "index.json"
# The papers sidecar: what a search hit says about a paper ("subject" is its primary subject, as /search shows it).
SIDECAR_COLUMNS: tuple[str, ...] = ("id", "title", "subject")


class IndexLoadError(RuntimeError):
    """A saved index directory that cannot be used; the message says which file and why."""


@dataclass(frozen=True)
class HnswOptions:
    m: int = 32  # graph degree: more is better recall, more memory
    ef_construction: int = 200
    ef_search: int = 128  # candidates per query: more is better recall, slower search


@dataclass(frozen=True)
class IvfPqOptions:
    nlist: int | None = None  # k-means cells; None: ivf_nlist(vectors, training vectors)
    pq_m: int = 48  # bytes per PQ code (one 8-bit code per sub-vector); must divide the dimension
    nprobe: int = 64  # cells scanned per query: more is better recall, slower search
    refine: RefineKind = "sq8"  # re-rank the PQ candidates with SQ8 copies ("flat": the float vectors)
    refine_k_factor: int = 64  # candidates re-ranked per query: refine_k_factor * k (64: measured at 1M vectors)
    train_size: int = 256_000  # training sample: 39 per cell of the ~6,600 cells (4·sqrt(n)) all of arXiv gets


# Product quantization trains 2**8 centroids per sub-vector: fewer training vectors than that cannot train it.
MIN_PQ_TRAINING_VECTORS = 256


def ivf_nlist(n_vectors: int, n_train: int) -> int:
    """About 4·sqrt(n) cells (the low end of the FAISS wiki's 4·sqrt(n) to 16·sqrt(n): ~250 vectors a cell at
    1M, ~400 at 2.7M), at most one per 39 training vectors (what k-means needs to place a centroid well)."""
    return max(1, min(round(4 * np.sqrt(n_vectors)), n_train // 39))


def choose_kind(n_vectors: int, ivfpq_from: int) -> IndexKind:
    """Exact flat search below ``ivfpq_from`` vectors (milliseconds a query, no recall to lose), IVF-PQ from there."""
    return "flat" if n_vectors < ivfpq_from else "ivfpq"


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, dim) matrix of vectors, got shape {vectors.shape}")
    return vectors


def build_index(vectors: np.ndarray, kind: IndexKind = "flat", hnsw: HnswOptions | None = None,
                ivfpq: IvfPqOptions | None = None, train_rows: np.ndarray | None = None):
    """A FAISS inner-product index holding ``vectors`` (row i gets id i).

    ``ivfpq`` trains on the vectors of ``train_rows`` (default: a random sample of ``train_size`` rows);
    leave the rows that measure its recall out of them.
    """
    import faiss

    vectors = _as_float32(vectors)
    dim = vectors.shape[1]
    if kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif kind == "hnsw":
        options = hnsw or HnswOptions()
        index = faiss.IndexHNSWFlat(dim, options.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = options.ef_construction
        index.hnsw.efSearch = options.ef_search
    elif kind == "ivfpq":
        options = ivfpq or IvfPqOptions()
        if train_rows is None:
            train_rows = np.random.default_rng(0).permutation(len(vectors))[:options.train_size]
        index = train_ivfpq(vectors[train_rows[:options.train_size]], len(vectors), options)
    else:
        raise ValueError(f"unknown index kind {kind!r}; choose 'flat', 'hnsw' or 'ivfpq'")
    index.add(vectors)
    return index


def train_ivfpq(sample: np.ndarray, n_vectors: int, options: IvfPqOptions | None = None):
    """An empty IVF-PQ index for ``n_vectors`` vectors (which sets nlist), its quantizers trained on ``sample``."""
    import faiss

    options = options or IvfPqOptions()
    sample = _as_float32(sample)
    if len(sample) < MIN_PQ_TRAINING_VECTORS:
        raise ValueError(f"an ivfpq index needs at least {MIN_PQ_TRAINING_VECTORS} training vectors, got "
                         f"{len(sample)}; use kind 'flat' for so few papers")
    nlist = options.nlist or ivf_nlist(n_vectors, len(sample))
    refine = {"none": "", "sq8": ",Refine(SQ8)", "flat": ",RFlat"}[options.refine]
    # "np": no polysemous training (a code reordering only Hamming-distance filtering uses), 25x the training time
    factory = f"IVF{nlist},PQ{options.pq_m}x8np{refine}"
    index = faiss.index_factory(sample.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
    index.train(sample)
    set_ivfpq_search(index, options)
    return index


def set_ivfpq_search(index, options: IvfPqOptions) -> None:
    """Apply the search-time options (cells scanned, candidates re-ranked) to a built or loaded IVF-PQ index."""
    import faiss

    faiss.extract_index_ivf(index).nprobe = options.nprobe
    if options.refine != "none":
        faiss.downcast_index(index).k_factor = float(options.refine_k_factor)


def nearest_rows(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), best first; rows are -1 where the index has fewer than ``k`` entries."""
    k = max(1, min(k, index.ntotal))
    scores, rows = index.search(_as_float32(queries), k)
    return scores, rows


def recall_at_k(index, vectors: np.ndarray, query_rows: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-``k`` neighbours that ``index`` finds, for queries taken from the corpus.

    Each query is an indexed vector; it is its own nearest neighbour in both lists, so it is left
    out of both and the next ``k`` are compared. For a trained index (IVF-PQ) take the queries from
    rows its quantizers were not trained on (``held_out_rows``).
    """
    import faiss

    vectors = _as_float32(vectors)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    queries = vectors[query_rows]
    _, truth = exact.search(queries, k + 1)
    _, found = index.search(queries, k + 1)
    return neighbour_recall(query_rows, truth, found, k)


def neighbour_recall(query_rows: np.ndarray, truth: np.ndarray, found: np.ndarray, k: int = 10) -> float:
    """Mean share of each query row's exact top-``k`` (``truth``, searched for k + 1) in ``found``, the
    query's own row left out of both (see ``recall_at_k``)."""
    hits = []
    for row, true_rows, found_rows in zip(query_rows, truth, found, strict=True):
        expected = [r for r in true_rows if r != row][:k]
        got = set([r for r in found_rows if r != row and r >= 0][:k])
        hits.append(len(got.intersection(expected)) / len(expected))
    return float(np.mean(hits))


def held_out_rows(n_vectors: int, queries: int, train_size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, training rows): disjoint random rows, so recall is measured on queries the quantizers never saw."""
    order = np.random.default_rng(seed).permutation(n_vectors)
    n_queries = min(queries, n_vectors)
    return np.sort(order[:n_queries]), order[n_queries:n_queries + train_size]


@dataclass
class PaperIndex:
    """A FAISS index plus the papers its rows stand for."""

    index: Any
    papers: pd.DataFrame  # SIDECAR_COLUMNS, row i = index row i
    meta: dict[str, Any] = field(default_factory=dict)
    memory_mapped: bool = False  # its vectors read from the saved file as searches need them (``load(mmap=True)``)

    def __post_init__(self) -> None:
        missing = [c for c in SIDECAR_COLUMNS if c not in self.papers.columns]
        if missing:
            raise IndexLoadError(f"the papers sidecar lacks columns {missing}")
        if len(self.papers) != self.index.ntotal:
            raise IndexLoadError(f"the index holds {self.index.ntotal} vectors but the sidecar {len(self.papers)} "
                                 f"papers")

    @property
    def dim(self) -> int:
        return int(self.index.d)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[dict[str, Any]]]:
        """For each query, up to ``k`` papers ``{id, title, subject, score}``, best first."""
        scores, rows = nearest_rows(self.index, query_vectors, k)
        results = []
        for query_scores, query_rows in zip(scores, rows, strict=True):
            hits = []
            for score, row in zip(query_scores, query_rows, strict=True):
                if row < 0:
                    continue
                paper = self.papers.iloc[int(row)]
                hits.append({"id": str(paper["id"]), "title": str(paper["title"]), "subject": str(paper["subject"]),
                             "score": float(score)})
            results.append(hits)
        return results

    def save(self, directory: Path) -> Path:
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        faiss.write_index(self.index, str(directory / INDEX_FILE))
        self.papers[list(SIDECAR_COLUMNS)].reset_index(drop=True).to_parquet(directory / PAPERS_FILE, index=False)
        meta = {**self.meta, "dim": self.dim, "count": len(self)}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2, default=str))
        return directory

    @classmethod
    def load(cls, directory: Path, mmap: bool = False) -> PaperIndex:
        """The index saved in ``directory``; with ``mmap``, its float vectors (a flat index's, HNSW's storage,
        IVF-PQ's re-ranking copy: nearly all of its bytes) stay in the file, memory-mapped read-only: file pages
        the kernel reads as searches touch them, may drop again under memory pressure, and shares between
        processes mapping the same file, instead of memory of this process. The file must then stay where it
        is while the index lives."""
        import faiss

        directory = Path(directory)
        for name in (INDEX_FILE, PAPERS_FILE, META_FILE):
            if not (directory / name).is_file():
                raise IndexLoadError(f"{directory} is not a saved paper index: {name} is missing")
        index = faiss.read_index(str(directory / INDEX_FILE), faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("kind") == "hnsw" and "hnsw" in meta:
            index.hnsw.efSearch = int(meta["hnsw"]["ef_search"])
        if meta.get("kind") == "ivfpq" and "ivfpq" in meta:
            set_ivfpq_search(index, IvfPqOptions(**meta["ivfpq"]))
        return cls(index=index, papers=pd.read_parquet(directory / PAPERS_FILE), meta=meta, memory_mapped=mmap)


def paper_index(vectors: np.ndarray, papers: pd.DataFrame, kind: IndexKind = "flat",
                hnsw: HnswOptions | None = None, ivfpq: IvfPqOptions | None = None,
                train_rows: np.ndarray | None = None, **meta: Any) -> PaperIndex:
    """Index ``vectors`` (row i embeds ``papers`` row i, which has id, title and primary_subject); ``ivfpq``
    trains on ``train_rows`` (see ``build_index``)."""
    import faiss

    sidecar = pd.DataFrame({"id": papers["id"].astype(str).to_numpy(), "title": papers["title"].astype(str).to_numpy(),
                            "subject": papers["primary_subject"].astype(str).to_numpy()})
    info: dict[str, Any] = {"kind": kind, **meta}
    index = build_index(vectors, kind, hnsw, ivfpq, train_rows)
    if kind == "hnsw":
        info["hnsw"] = asdict(hnsw or HnswOptions())
    if kind == "ivfpq":  # nlist as built, so the saved options rebuild the same index
        info["ivfpq"] = {**asdict(ivfpq or IvfPqOptions()), "nlist": int(faiss.extract_index_ivf(index).nlist)}
    return PaperIndex(index=index, papers=sidecar, meta=info)
