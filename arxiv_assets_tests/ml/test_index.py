"""IVF-PQ, the index for all of arXiv: its recall gate, the size rule that picks it, and its round trip to disk.

The corpus: 96 real papers of the bundled sample embedded by the bundled all-MiniLM-L6-v2, and 4,000
vectors drawn around them (a random real vector plus Gaussian noise of 0.02 per dimension,
re-normalized: cosine ~0.93 to its seed), which is how benchmarks/index_scale.py builds its million
vectors, small enough for a test of a few seconds.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import faiss
import numpy as np
import pandas as pd
import pytest

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, encode, load_model
from arxiv_assets.ml.index import (
    IvfPqOptions,
    PaperIndex,
    build_index,
    choose_kind,
    held_out_rows,
    ivf_nlist,
    paper_index,
    recall_at_k,
)
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE

VECTORS, NOISE, QUERIES = 4000, 0.02, 200


@pytest.fixture(scope="module")
def corpus() -> np.ndarray:
    papers = pd.read_parquet(BUNDLED_SAMPLE).sample(n=96, random_state=0)
    real = encode(load_model(BUNDLED_BASE_MODEL, device="cpu", max_seq_length=128), paper_texts(papers))
    rng = np.random.default_rng(0)
    noisy = real[rng.integers(len(real), size=VECTORS - len(real))]
    noisy += rng.normal(0.0, NOISE, size=noisy.shape).astype(np.float32)
    return np.vstack([real, noisy / np.linalg.norm(noisy, axis=1, keepdims=True)])


def test_ivfpq_reaches_the_recall_bar_on_held_out_queries_and_misses_it_when_crippled(corpus: np.ndarray):
    query_rows, train_rows = held_out_rows(len(corpus), QUERIES, IvfPqOptions().train_size)
    assert not set(query_rows) & set(train_rows) and len(query_rows) + len(train_rows) == len(corpus)

    default = build_index(corpus, "ivfpq", train_rows=train_rows)
    assert recall_at_k(default, corpus, query_rows) >= 0.95
    one_small_cell_probed = build_index(corpus, "ivfpq", ivfpq=IvfPqOptions(nlist=256, nprobe=1),
                                        train_rows=train_rows)
    assert recall_at_k(one_small_cell_probed, corpus, query_rows) < 0.95
    short_codes_not_reranked = build_index(corpus, "ivfpq", ivfpq=IvfPqOptions(pq_m=8, refine="none"),
                                           train_rows=train_rows)
    assert recall_at_k(short_codes_not_reranked, corpus, query_rows) < 0.95


def test_auto_is_exact_flat_below_the_threshold_and_ivfpq_from_it():
    assert choose_kind(99_999, ivfpq_from=100_000) == "flat"
    assert choose_kind(100_000, ivfpq_from=100_000) == "ivfpq"


def test_nlist_is_four_square_roots_of_the_corpus_unless_the_sample_is_too_small_to_train_them():
    assert ivf_nlist(1_000_000, 256_000) == 4000
    assert ivf_nlist(2_700_000, 256_000) == 6564  # 256,000 / 39: one cell per 39 training vectors
    assert ivf_nlist(4000, 3800) == 97


def test_ivfpq_needs_enough_vectors_to_train_its_codebooks(corpus: np.ndarray):
    with pytest.raises(ValueError, match="at least 256 training vectors"):
        build_index(corpus[:200], "ivfpq")


def test_a_saved_ivfpq_index_loads_with_its_kind_search_options_and_model_fingerprint(corpus: np.ndarray,
                                                                                       tmp_path: Path):
    papers = pd.DataFrame({"id": [f"2601.{i:05d}" for i in range(len(corpus))], "title": [f"paper {i}" for i in
                           range(len(corpus))], "primary_subject": ["cs.LG"] * len(corpus)})
    options = IvfPqOptions(nprobe=7, refine_k_factor=3)
    built = paper_index(corpus, papers, kind="ivfpq", ivfpq=options, model_fingerprint="abc123")
    loaded = PaperIndex.load(built.save(tmp_path / "index"))

    assert loaded.meta["kind"] == "ivfpq" and loaded.meta["model_fingerprint"] == "abc123"
    assert loaded.meta["ivfpq"] == {**asdict(options), "nlist": ivf_nlist(len(corpus), len(corpus))}
    assert faiss.extract_index_ivf(loaded.index).nprobe == 7 and faiss.downcast_index(loaded.index).k_factor == 3
    assert len(loaded) == len(corpus) and loaded.dim == 384
    assert loaded.search(corpus[:5], 10) == built.search(corpus[:5], 10)
    assert [hits[0]["id"] for hits in loaded.search(corpus[:5], 1)] == list(papers["id"][:5])


def mapped_files() -> set[str]:
    """Files this process has memory-mapped (Linux)."""
    return {line.split(maxsplit=5)[5].strip() for line in Path("/proc/self/maps").read_text().splitlines()
            if len(line.split(maxsplit=5)) == 6}


@pytest.mark.parametrize(("kind", "refine"), [("flat", None), ("hnsw", None), ("ivfpq", "flat"), ("ivfpq", "sq8")])
def test_a_memory_mapped_index_searches_as_the_loaded_one_with_its_vectors_left_in_the_file(
        corpus: np.ndarray, tmp_path: Path, kind: str, refine: str | None):
    papers = pd.DataFrame({"id": [f"2601.{i:05d}" for i in range(len(corpus))], "title": "t", "primary_subject": "x"})
    ivfpq = IvfPqOptions(refine=refine) if refine else None
    saved = paper_index(corpus, papers, kind=kind, ivfpq=ivfpq).save(tmp_path / "index")
    index_file = str((saved / "index.faiss").resolve())
    in_memory = PaperIndex.load(saved)
    assert index_file not in mapped_files()  # read into memory, the file closed
    mapped = PaperIndex.load(saved, mmap=True)
    assert index_file in mapped_files()
    assert mapped.search(corpus[:20], 10) == in_memory.search(corpus[:20], 10)
