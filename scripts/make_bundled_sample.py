"""Regenerate the bundled real arXiv sample from the full offline file.

    python scripts/make_bundled_sample.py ../shared/data/arxiv_papers.parquet

Balanced across primary subjects (each capped at ``--cap-per-subject``, sampled evenly over
months so every monthly partition keeps papers of every subject it had), deterministic
(a hash of the arXiv id orders the draw, so re-running gives the same file).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import pandas as pd

DEFAULT_OUTPUT = Path(__file__).resolve().parents[1] / "arxiv_assets" / "data" / "arxiv_sample.parquet"


def _stable_rank(ids: pd.Series) -> pd.Series:
    return ids.map(lambda i: hashlib.sha1(i.encode()).hexdigest())


def sample_balanced(papers: pd.DataFrame, cap_per_subject: int) -> pd.DataFrame:
    papers = papers.assign(_month=papers["published"].str[:7], _rank=_stable_rank(papers["id"]))
    kept = []
    for _, subject_rows in papers.groupby("primary_subject"):
        share = min(1.0, cap_per_subject / len(subject_rows))
        # Per month, keep the same share of the subject, so the monthly shape survives the cap.
        for _, month_rows in subject_rows.groupby("_month"):
            n = max(1, round(len(month_rows) * share))
            kept.append(month_rows.sort_values("_rank").head(n))
    sample = pd.concat(kept).drop(columns=["_month", "_rank"])
    return sample.sort_values(["published", "id"]).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--cap-per-subject", type=int, default=1200)
    args = parser.parse_args()
    sample = sample_balanced(pd.read_parquet(args.source), args.cap_per_subject)
    tmp = args.output.with_suffix(".tmp")
    sample.to_parquet(tmp, index=False, compression="zstd")
    tmp.replace(args.output)
    print(f"{len(sample)} papers, {sample['primary_subject'].nunique()} subjects, "
          f"{args.output.stat().st_size / 1e6:.1f} MB -> {args.output}")


if __name__ == "__main__":
    main()
