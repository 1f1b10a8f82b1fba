"""A saved paper index read into memory vs memory-mapped (``PaperIndex.load(mmap=True)``, the service's
``ARXIV_SERVING_INDEX_MMAP``): resident memory, load time and search latency, each in a fresh process.

    nice python -m benchmarks.index_mmap                               # 1,000,000 vectors: flat, IVF-PQ + float re-rank
    nice python -m benchmarks.index_mmap --vectors 200000 --train-size 50000

The vectors are ``benchmarks.index_scale``'s (real embeddings of bundled papers and noisy copies around them).
Each index is built and saved with ``PaperIndex`` as ``faiss_index`` saves it, then loaded by a new Python
process, once each way, which reports its resident memory added, split as the kernel counts it: anonymous
(read into the process: only swap could free it) and file pages (mapped: the kernel can drop them under
memory pressure and read them again, and processes mapping the same file share them); the seconds
``PaperIndex.load`` took, and the p50/p99 of single-query searches (k = 10) over ``--queries`` random
corpus rows, timed as they come ("first") and then again. The file stays in the page cache between the
loads (it was just written; nothing drops caches here): "first" is a warm-cache first touch, not a cold
disk. The anonymous memory includes the papers sidecar (ids, titles, subjects) in both rows.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from arxiv_assets.ml.index import IvfPqOptions, PaperIndex, paper_index
from benchmarks.common import flags_line, machine_line
from benchmarks.index_scale import NOISE, latencies_ms, real_embeddings, rss_mb, synthetic_corpus

QUERIES_FILE = "queries.npy"  # random corpus rows, saved beside the indexes for the measuring processes


def measure_load(directory: Path, mmap: bool, queries: int) -> dict[str, float]:
    """In this (fresh) process: load the index one way, then search it; memory and times."""
    vectors = np.load(directory.parent / QUERIES_FILE)[:queries]
    anon, file = rss_mb("RssAnon"), rss_mb("RssFile")
    started = time.perf_counter()
    index = PaperIndex.load(directory, mmap=mmap)
    load_s = time.perf_counter() - started
    loaded = {"anon MB after load": round(rss_mb("RssAnon") - anon),
              "file MB after load": round(rss_mb("RssFile") - file)}
    first, again = latencies_ms(index.index, vectors), latencies_ms(index.index, vectors)
    return {"load s": round(load_s, 2), **loaded, "anon MB after searches": round(rss_mb("RssAnon") - anon),
            "file MB after searches": round(rss_mb("RssFile") - file),
            "first p50 ms": round(float(np.percentile(first, 50)), 2),
            "first p99 ms": round(float(np.percentile(first, 99)), 2),
            "again p50 ms": round(float(np.percentile(again, 50)), 2),
            "again p99 ms": round(float(np.percentile(again, 99)), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--real", type=int, default=2000)
    parser.add_argument("--real-cache", type=Path, default=None)
    parser.add_argument("--kinds", nargs="+", default=["flat", "ivfpq"], choices=["flat", "ivfpq"])
    parser.add_argument("--train-size", type=int, default=IvfPqOptions.train_size)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--work", type=Path, default=None, help="where the indexes are saved (default: a temp dir)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # a saved index: measure it, print JSON
    parser.add_argument("--mmap", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure_load(args.child, args.mmap, args.queries)))
        return

    print(machine_line() + "\n" + flags_line(), flush=True)
    real, _ = real_embeddings(args.real, args.real_cache)
    corpus, _ = synthetic_corpus(real, args.vectors, NOISE)
    papers = pd.DataFrame({"id": [f"p{i}" for i in range(len(corpus))], "title": "synthetic",
                           "primary_subject": "x"})
    work = args.work or Path(tempfile.mkdtemp(prefix="index-mmap-"))
    np.save(work / QUERIES_FILE, corpus[np.random.default_rng(1).integers(len(corpus), size=args.queries)])
    rows = []
    for kind in args.kinds:
        started = time.perf_counter()
        options = IvfPqOptions(refine="flat", train_size=args.train_size) if kind == "ivfpq" else None
        directory = paper_index(corpus, papers, kind=kind, ivfpq=options).save(work / kind)
        build_s = time.perf_counter() - started
        size_mb = (directory / "index.faiss").stat().st_size / 2**20
        for mmap in (False, True):
            command = [sys.executable, "-m", "benchmarks.index_mmap", "--child", str(directory),
                       "--queries", str(args.queries), *(["--mmap"] if mmap else [])]
            measured = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
            row = {"index": kind if kind == "flat" else "ivfpq + float re-rank", "vectors": len(corpus),
                   "file MB": round(size_mb), "build s": round(build_s), "load": "mmap" if mmap else "read",
                   **measured}
            print(row, flush=True)
            rows.append(row)
    print("\n" + pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
