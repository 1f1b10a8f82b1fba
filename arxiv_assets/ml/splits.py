"""Which papers train the model and which judge it, assigned so that no paper ever moves from a
judging slice into training as data grows.

Every kept paper gets one ``split``:

* ``train`` / ``eval`` / ``test``: papers of *seen* subjects, by a hash of the paper id;
* ``new``: papers of seen subjects published in the newest ``new_months`` months (never all of the
  months loaded), never trained on (the "next month's papers" slice; next month they take their
  id-hash split like every other paper);
* ``unseen``: every paper of a held-out subject, chosen by a hash of the *subject name* alone, so
  a subject never moves between seen and unseen whichever months are loaded. Its papers never
  enter pairs, training or the linear probe: they measure how the model does on subjects it was
  never shown, which is where a model that collapses onto its training subjects loses.
* ``rare``: the papers of subjects with fewer than ``min_papers_per_subject`` papers but at least
  ``min_papers_per_rare_subject`` (the long tail: plasma physics, quant-ph, q-bio, math.OC, ...), too
  small to train on or to split, never trained on: the slice furthest from the training subjects,
  the nearest the data has to papers of subjects it does not hold at all. When a subject grows past
  the minimum it takes its hash split (seen or unseen), as a ``new`` paper does the next month.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import pandas as pd

from arxiv_assets.ml.settings import described

SPLITS: tuple[str, ...] = ("train", "eval", "test", "new", "unseen", "rare")
TRAINING_SPLITS: tuple[str, ...] = ("train", "eval")  # what pairs and training may read; nothing else
JUDGING_SPLITS: tuple[str, ...] = ("test", "new", "unseen", "rare")


@dataclass(frozen=True)
class SplitSettings:
    """How ``make_splits`` assigns papers; the defaults are the default profile's."""

    # Smaller subjects cannot be split into train and test: their papers judge the model as the rare slice.
    min_papers_per_subject: int = 30
    min_papers_per_rare_subject: int = field(default=10, metadata=described(
        "a subject below min_papers_per_subject with at least this many papers is scored as the rare slice; "
        "smaller ones are dropped (too few to retrieve or classify)"))
    max_papers_per_subject: int | None = field(
        default=1200, metadata=described("papers kept per subject, by id hash (None: all)"))
    eval_fraction: float = 0.1
    test_fraction: float = 0.15
    probe_papers_per_subject: int | None = field(
        default=100, metadata=described("train papers per subject every linear probe is fit on (None: all of train)"))
    unseen_subject_fraction: float = field(default=1 / 3, metadata=described(
        "share of subjects held out of training (by a hash of the subject's name), scored as the unseen slice"))
    unseen_papers_per_subject: int | None = field(
        default=150,
        metadata=described("papers scored per unseen or rare subject (None: up to max_papers_per_subject)"))
    # The bundled sample's last month is one day, so two months make a slice worth scoring.
    new_months: int = field(
        default=2, metadata=described("newest months held out of training, scored as the new slice"))


def id_fraction(key: str, salt: str) -> float:
    """A uniform number in [0, 1) that depends only on the key (and the salt), never on the rest of the data."""
    digest = hashlib.sha256(f"{salt}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(arxiv_id: str, eval_fraction: float, test_fraction: float, salt: str) -> str:
    u = id_fraction(arxiv_id, salt)
    if u < test_fraction:
        return "test"
    if u < test_fraction + eval_fraction:
        return "eval"
    return "train"


def is_unseen_subject(subject: str, unseen_subject_fraction: float, salt: str) -> bool:
    """Held out by a hash of the subject's name: the same answer whatever data is loaded."""
    return id_fraction(subject, salt + ":unseen") < unseen_subject_fraction


@dataclass(frozen=True)
class SplitResult:
    papers: pd.DataFrame  # the paper columns plus "split" and "probe"
    dropped_subjects: dict[str, int]  # subject -> papers it had, below the rare slice's minimum
    rare_subjects: dict[str, int]  # subject -> papers it had, too few to split: the rare slice
    capped_subjects: dict[str, int]  # subject -> papers it had before the cap
    unseen_subjects: list[str]  # held out of training, scored as the unseen slice
    new_months: list[str]  # YYYY-MM months held out of training, scored as the new slice


def _hash_rank(papers: pd.DataFrame, salt: str) -> pd.Series:
    """Each paper's position within its subject when ordered by an id hash (0 = first)."""
    ranked = papers.assign(_rank=papers["id"].map(lambda i: id_fraction(i, salt))).sort_values("_rank")
    return ranked.groupby("primary_subject").cumcount().reindex(papers.index)


def make_splits(papers: pd.DataFrame, settings: SplitSettings, salt: str = "arxiv-embeddings") -> SplitResult:
    """Assign every kept paper a split (see the module docstring).

    Subjects with fewer than ``settings.min_papers_per_subject`` papers are ``rare`` (never trained on, judged
    as their own slice) down to ``min_papers_per_rare_subject``; smaller ones are dropped. Large subjects are
    capped by keeping the papers with the smallest id hash (an independent hash from the split's), so the cap
    is a deterministic sample and a paper's split is the same whichever months are loaded: adding a month can
    drop a paper from a capped subject, move a ``new`` paper to its id-hash split, or move the papers of a
    ``rare`` subject that reached the minimum to their hash split; never a test or unseen paper into training.
    Unseen and rare subjects keep ``unseen_papers_per_subject`` papers (None: up to the cap), again by id hash.

    ``probe`` marks the labelled train papers every linear probe is fit on (``probe_papers_per_subject``
    per subject, again chosen by an id hash; None: all of train). One set for TF-IDF and every model
    keeps the classifier comparison fair when encoding all of train is too slow for a CPU run.
    """
    held_out = settings.eval_fraction + settings.test_fraction
    if not 0 < held_out < 1:
        raise ValueError(f"eval_fraction + test_fraction must be in (0, 1), got {held_out}")
    if settings.min_papers_per_rare_subject < 2:
        raise ValueError("min_papers_per_rare_subject must be at least 2 (a subject needs a paper to find and one to "
                         f"ask), got {settings.min_papers_per_rare_subject}")
    if not 0 <= settings.unseen_subject_fraction < 1:
        raise ValueError(f"unseen_subject_fraction must be in [0, 1), got {settings.unseen_subject_fraction}")
    counts = papers["primary_subject"].value_counts()
    dropped = counts[counts < settings.min_papers_per_rare_subject]
    rare_counts = counts[(counts >= settings.min_papers_per_rare_subject) & (counts < settings.min_papers_per_subject)]
    kept = papers[~papers["primary_subject"].isin(dropped.index)].reset_index(drop=True)
    rare = kept["primary_subject"].isin(rare_counts.index)
    unseen_subjects = sorted(s for s in kept.loc[~rare, "primary_subject"].unique()
                             if is_unseen_subject(s, settings.unseen_subject_fraction, salt))
    unseen = kept["primary_subject"].isin(unseen_subjects)
    capped: dict[str, int] = {}
    if settings.max_papers_per_subject is not None:
        over = counts[(counts > settings.max_papers_per_subject) & counts.index.isin(kept["primary_subject"])]
        capped = {str(s): int(n) for s, n in over.items()}
    cap_rank = _hash_rank(kept, salt + ":cap")
    keep = pd.Series(True, index=kept.index)
    if settings.max_papers_per_subject is not None:
        keep &= cap_rank < settings.max_papers_per_subject
    if settings.unseen_papers_per_subject is not None:
        keep &= ~(unseen | rare) | (cap_rank < settings.unseen_papers_per_subject)
    kept, unseen, rare = kept[keep].copy(), unseen[keep], rare[keep]

    month = kept["published"].str[:7]
    months = sorted(month[~rare].unique())
    held = min(settings.new_months, len(months) - 1)  # never every month: something must be left to train on
    held_months = months[-held:] if held > 0 else []
    kept["split"] = kept["id"].map(lambda i: split_of(i, settings.eval_fraction, settings.test_fraction, salt))
    kept.loc[month.isin(held_months), "split"] = "new"
    kept.loc[unseen, "split"] = "unseen"
    kept.loc[rare, "split"] = "rare"
    kept["probe"] = kept["split"] == "train"
    if settings.probe_papers_per_subject is not None:
        train = kept[kept["probe"]]
        probe_rank = _hash_rank(train, salt + ":probe")
        kept["probe"] = kept.index.isin(train.index[probe_rank < settings.probe_papers_per_subject])
    kept = kept.sort_values(["split", "primary_subject", "id"]).reset_index(drop=True)
    return SplitResult(
        papers=kept,
        dropped_subjects={str(s): int(n) for s, n in dropped.items()},
        rare_subjects={str(s): int(n) for s, n in rare_counts.items()},
        capped_subjects=capped,
        unseen_subjects=unseen_subjects,
        new_months=held_months,
    )


def papers_in(splits: pd.DataFrame, *names: str) -> pd.DataFrame:
    """The papers of the named splits, re-indexed from 0 (what every consumer of the splits reads)."""
    unknown = set(names) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; splits are {SPLITS}")
    return splits[splits["split"].isin(names)].reset_index(drop=True)


def month_key(published: pd.Series) -> pd.Series:
    """The monthly partition key (``YYYY-MM-01``) of each paper's publication date."""
    return published.astype(str).str[:7] + "-01"


def papers_by_month(splits: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The kept papers (every split) by the partition key of the month they were published in
    (``2025-06-01``); a month with no kept paper is absent."""
    return {str(month): papers.reset_index(drop=True)
            for month, papers in splits.groupby(month_key(splits["published"]), sort=True)}


def split_counts(papers: pd.DataFrame) -> pd.DataFrame:
    """Papers per subject (rows) and split (columns), with totals."""
    table = pd.crosstab(papers["primary_subject"], papers["split"]).reindex(columns=list(SPLITS), fill_value=0)
    table["total"] = table.sum(axis=1)
    return table.sort_values("total", ascending=False)
