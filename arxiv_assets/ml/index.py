"""FAISS nearest-neighbour indexes over paper embeddings, saved with the papers they point to.

Vectors are L2-normalized, so inner product is cosine. ``flat`` (IndexFlatIP) is exact and the
default: at tens of thousands of papers a brute-force search takes milliseconds. ``hnsw``
(IndexHNSWFlat) is the approximate option for larger corpora; its recall@10 against the exact
search is measured (``recall_at_k``), never assumed. A saved index is a directory::

    index.faiss      the FAISS index, row i = paper i
    papers.parquet   id, title, subject per row (the sidecar that turns rows into papers)
    index.json       kind, dim, count, HNSW parameters, the fingerprint of the model that embedded it
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

IndexKind = Literal["flat", "hnsw"]
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


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] == 0:
        raise ValueError(f"expected a non-empty (n, dim) matrix of vectors, got shape {vectors.shape}")
    return vectors


def build_index(vectors: np.ndarray, kind: IndexKind = "flat", hnsw: HnswOptions | None = None):
    """A FAISS inner-product index holding ``vectors`` (row i gets id i)."""
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
    else:
        raise ValueError(f"unknown index kind {kind!r}; choose 'flat' or 'hnsw'")
    index.add(vectors)
    return index


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """(scores, rows), best first; rows are -1 where the index has fewer than ``k`` entries."""
    k = max(1, min(k, index.ntotal))
    scores, rows = index.search(_as_float32(queries), k)
    return scores, rows


def recall_at_k(index, vectors: np.ndarray, query_rows: np.ndarray, k: int = 10) -> float:
    """Mean share of the exact top-``k`` neighbours that ``index`` finds, for queries taken from the corpus.

    Each query is an indexed vector; it is its own nearest neighbour in both lists, so it is left
    out of both and the next ``k`` are compared.
    """
    import faiss

    vectors = _as_float32(vectors)
    exact = faiss.IndexFlatIP(vectors.shape[1])
    exact.add(vectors)
    queries = vectors[query_rows]
    _, truth = exact.search(queries, k + 1)
    _, found = index.search(queries, k + 1)
    hits = []
    for row, true_rows, found_rows in zip(query_rows, truth, found, strict=True):
        expected = [r for r in true_rows if r != row][:k]
        got = {r for r in found_rows if r != row and r >= 0}
        hits.append(len(got.intersection(expected)) / len(expected))
    return float(np.mean(hits))


@dataclass
class PaperIndex:
    """A FAISS index plus the papers its rows stand for."""

    index: Any
    papers: pd.DataFrame  # SIDECAR_COLUMNS, row i = index row i
    meta: dict[str, Any] = field(default_factory=dict)

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
        scores, rows = search(self.index, query_vectors, k)
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
    def load(cls, directory: Path) -> PaperIndex:
        import faiss

        directory = Path(directory)
        for name in (INDEX_FILE, PAPERS_FILE, META_FILE):
            if not (directory / name).is_file():
                raise IndexLoadError(f"{directory} is not a saved paper index: {name} is missing")
        index = faiss.read_index(str(directory / INDEX_FILE))
        meta = json.loads((directory / META_FILE).read_text())
        if meta.get("kind") == "hnsw" and "hnsw" in meta:
            index.hnsw.efSearch = int(meta["hnsw"]["ef_search"])
        return cls(index=index, papers=pd.read_parquet(directory / PAPERS_FILE), meta=meta)


def paper_index(vectors: np.ndarray, papers: pd.DataFrame, kind: IndexKind = "flat",
                hnsw: HnswOptions | None = None, **meta: Any) -> PaperIndex:
    """Index ``vectors`` (row i embeds ``papers`` row i, which has id, title and primary_subject)."""
    sidecar = pd.DataFrame({"id": papers["id"].astype(str).to_numpy(), "title": papers["title"].astype(str).to_numpy(),
                            "subject": papers["primary_subject"].astype(str).to_numpy()})
    info: dict[str, Any] = {"kind": kind, **meta}
    if kind == "hnsw":
        info["hnsw"] = asdict(hnsw or HnswOptions())
    return PaperIndex(index=build_index(vectors, kind, hnsw), papers=sidecar, meta=info)
