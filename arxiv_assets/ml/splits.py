"""Train / eval / test splits that never move a paper between splits as data grows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import pandas as pd

SPLITS: tuple[str, ...] = ("train", "eval", "test")


def id_fraction(arxiv_id: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on the id (and the salt), never on the rest of the data."""
    digest = hashlib.sha256(f"{salt}:{arxiv_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(arxiv_id: str, eval_fraction: float, test_fraction: float, salt: str) -> str:
    u = id_fraction(arxiv_id, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + eval_fraction:
        return "eval"
    return "train"


@dataclass(frozen=True)
class SplitResult:
    papers: pd.DataFrame  # the paper columns plus "split" and "probe"
    dropped_subjects: dict[str, int]  # subject -> papers it had, below the minimum
    capped_subjects: dict[str, int]  # subject -> papers it had before the cap


def make_splits(
    papers: pd.DataFrame,
    *,
    min_papers_per_subject: int,
    max_papers_per_subject: int | None,
    eval_fraction: float,
    test_fraction: float,
    probe_papers_per_subject: int | None = None,
    salt: str = "arxiv-embeddings",
) -> SplitResult:
    """Assign every kept paper a split by a hash of its id.

    Subjects with fewer than ``min_papers_per_subject`` papers cannot be evaluated and are dropped.
    Large subjects are capped by keeping the papers with the smallest id hash (an independent hash
    from the split's), so the cap is a deterministic sample and a paper's split is the same
    whichever months are loaded: adding a month can drop a paper from a capped subject, never
    move it from test to train.

    ``probe`` marks the labelled train papers every linear probe is fit on (``probe_papers_per_subject``
    per subject, again chosen by an id hash; None: all of train). One set for TF-IDF and every model
    keeps the classifier comparison fair when encoding all of train is too slow for a CPU run.
    """
    if not 0 < eval_fraction + test_fraction < 1:
        raise ValueError(f"eval_fraction + test_fraction must be in (0, 1), got {eval_fraction + test_fraction}")
    counts = papers["primary_subject"].value_counts()
    dropped = counts[counts < min_papers_per_subject]
    kept = papers[~papers["primary_subject"].isin(dropped.index)].reset_index(drop=True)
    capped: dict[str, int] = {}
    if max_papers_per_subject is not None:
        kept["_cap_rank"] = kept["id"].map(lambda i: id_fraction(i, salt + ":cap"))
        kept = kept.sort_values("_cap_rank")
        over = counts[(counts > max_papers_per_subject) & counts.index.isin(kept["primary_subject"])]
        capped = {str(s): int(n) for s, n in over.items()}
        kept = kept.groupby("primary_subject", group_keys=False).head(max_papers_per_subject).drop(columns="_cap_rank")
    kept["split"] = kept["id"].map(lambda i: split_of(i, eval_fraction, test_fraction, salt))
    kept["probe"] = kept["split"] == "train"
    if probe_papers_per_subject is not None:
        train = kept[kept["probe"]]
        rank = (train.assign(_rank=train["id"].map(lambda i: id_fraction(i, salt + ":probe")))
                .sort_values("_rank").groupby("primary_subject").cumcount())
        kept["probe"] = kept.index.isin(rank.index[rank < probe_papers_per_subject])
    kept = kept.sort_values(["split", "primary_subject", "id"]).reset_index(drop=True)
    return SplitResult(
        papers=kept,
        dropped_subjects={str(s): int(n) for s, n in dropped.items()},
        capped_subjects=capped,
    )


def split_counts(papers: pd.DataFrame) -> pd.DataFrame:
    """Papers per subject (rows) and split (columns), with totals."""
    table = pd.crosstab(papers["primary_subject"], papers["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False)
