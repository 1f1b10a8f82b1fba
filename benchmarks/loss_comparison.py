"""Compare the training losses on the same pairs, scored on the same test papers.

    python -m benchmarks.loss_comparison --pairs 500 --test-per-subject 50

Every loss trains from the same base model on the same pairs (default profile's splits and pair
settings), then the shared metric functions score subject retrieval and a linear probe on the
same test papers (the linear probe of every row is fit on the same labelled ``probe`` papers of the
train split); TF-IDF and the untrained base model are the reference rows.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.evaluation import evaluate_model, per_subject_sample
from arxiv_assets.ml.pairs import make_pairs
from arxiv_assets.ml.tfidf import evaluate_tfidf
from arxiv_assets.ml.training import LOSSES, train
from arxiv_assets.profiles import get_profile
from benchmarks.common import machine_line, profile_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=600)
    parser.add_argument("--test-per-subject", type=int, default=60)
    parser.add_argument("--losses", nargs="+", default=list(LOSSES))
    parser.add_argument("--subject-fraction", type=float, default=get_profile("default").pairs.subject_fraction,
                        help="share of (paper, subject name) pairs (0: paper->paper pairs as in session 1's table)")
    parser.add_argument("--title-abstract-fraction", type=float,
                        default=get_profile("default").pairs.title_abstract_fraction)
    parser.add_argument("--base-model", help="backbone to fine-tune (default: the profile's; a hub id or a path)")
    args = parser.parse_args()

    profile = get_profile("default")
    papers = profile_splits(profile)
    split = {s: papers[papers["split"] == s].reset_index(drop=True) for s in ("train", "eval", "test")}
    test = per_subject_sample(split["test"], args.test_per_subject, seed=1)
    probe = split["train"][split["train"]["probe"]]
    options = replace(profile.pairs.options(args.pairs), subject_fraction=args.subject_fraction,
                      title_abstract_fraction=args.title_abstract_fraction)
    train_pairs = make_pairs(split["train"], options)
    eval_pairs = make_pairs(split["eval"], replace(options, n_pairs=100))

    rows: dict[str, dict[str, float]] = {}
    tfidf = evaluate_tfidf(split["train"], test)
    rows["tfidf"] = {"P@10": tfidf.subject_retrieval.micro["P@10"], "P@10 macro": tfidf.subject_retrieval.macro["P@10"],
                     "LR accuracy": tfidf.classification.accuracy, "LR macro-F1": tfidf.classification.macro_f1}
    base_settings = replace(profile.train, report_to_wandb=False, checkpoint_steps=10_000,
                            base_model=args.base_model or profile.train.base_model)
    print(f"\n{machine_line()}")
    print(f"{args.pairs} train pairs (subject share {args.subject_fraction}), train seq "
          f"{base_settings.train_seq_length or base_settings.max_seq_length_cap}, encoding seq "
          f"{base_settings.max_seq_length_cap}, {len(test)} test papers "
          f"({args.test_per_subject}/subject), probe fit on {len(probe)} train papers", flush=True)
    report(rows)
    base = load_model(base_settings.base_model, max_seq_length=base_settings.max_seq_length_cap)
    rows["base (not fine-tuned)"] = scores(base, probe, test)
    report(rows)
    for loss in args.losses:  # each row is printed as soon as it exists: a long run keeps what it measured
        settings = replace(base_settings, loss=loss)
        out = Path(tempfile.mkdtemp()) / "model"
        result = train(train_pairs, eval_pairs, split["eval"], settings, out, Path(tempfile.mkdtemp()), loss)
        rows[loss] = scores(load_model(out), probe, test) | {
            "steps": result.steps, "train s": round(result.train_seconds),
            "pairs/s": round(result.samples_per_second, 2)}
        report(rows)


def scores(encoder, probe: pd.DataFrame, test: pd.DataFrame) -> dict[str, float]:
    evaluation = evaluate_model(encoder, probe, test)
    return {"P@10": evaluation.subject_retrieval.micro["P@10"],
            "P@10 macro": evaluation.subject_retrieval.macro["P@10"],
            "LR accuracy": evaluation.classification.accuracy, "LR macro-F1": evaluation.classification.macro_f1}


def report(rows: dict[str, dict[str, float]]) -> None:
    print("\n" + pd.DataFrame(rows).T.to_markdown(floatfmt=".3f"), flush=True)

if __name__ == "__main__":
    main()
