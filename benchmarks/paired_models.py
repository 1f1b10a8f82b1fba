"""Models paper by paper on every slice: is the difference between two of them more than the papers' sample?

    python -m benchmarks.paired_models MODEL MODEL [MODEL ...] --external ../shared/data/arxiv_papers.parquet

Each model (a directory: a `model` asset's payload, ``recipe_comparison --models DIR``'s ``DIR/<recipe>``; or a
Hugging Face id) is scored once by the pipeline's own ``evaluate_encoder`` on the default profile's splits (and
``--external``'s papers as one more unseen slice, as recipe_comparison scores them); then every model is compared
with each one named before it: the later minus the earlier in points, per slice and per-paper figure, with 95 %
paired bootstrap intervals over the papers (``paired_differences``, what ``fine_tuned_vs_base`` shows in the UI).

An interval holds the papers' sampling noise, not the training's: two runs of one recipe differing only in their
seed (``recipe_comparison --train-seed``) differ by the training's run-to-run spread, which a recipe's difference
must exceed before it is the recipe's. Each comparison is appended to ``--out`` (JSON lines) with the machine.

``--by-archive`` compares the papers of the slices off the training subjects (unseen, rare, external) arXiv archive
by archive as well (``cs``, ``astro-ph``, ``hep-th``, ...), and pooled into the archives some training subject
belongs to and those none does: papers of archives the training never read are the nearest the bundled data comes
to the subjects outside it that the hidden set scores.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.evaluation import TRAINED_ARCHIVES, archive_trained_on, trained_archives
from arxiv_assets.ml.taxonomy import archive_of
from arxiv_assets.profiles import get_profile
from benchmarks.recipe_comparison import ScoringInputs, evaluate, interval_cells, paired_table

OFF_TRAINING_SLICES = ("unseen", "rare", "external")


def comparison_parser(description: str, out: Path) -> argparse.ArgumentParser:
    """The arguments every model comparison takes: the models, ``--external`` papers, where rows go."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories or ids (two or more)")
    parser.add_argument("--external", type=Path, help="a parquet of papers in our schema (../shared/data/...)")
    parser.add_argument("--external-per-subject", type=int, default=120)
    parser.add_argument("--out", type=Path, default=out)
    return parser


def archive_tables(candidate, reference, splits: pd.DataFrame) -> pd.DataFrame:
    """``paired_table`` of the slices off the training subjects, per arXiv archive and pooled by whether any
    training subject is of the archive (``archive_trained_on``): one row per slice and group, one interval cell
    per figure."""
    pooled = paired_table(candidate, reference, archive_trained_on(splits))
    by_archive = paired_table(candidate, reference, archive_of)
    table = pd.concat([pooled, by_archive[by_archive["group"] != "all"]], ignore_index=True)
    table = table[table["slice"].isin(OFF_TRAINING_SLICES)]
    table = table.assign(cell=interval_cells(table))
    wide = table.pivot_table(index=["slice", "group", "papers"], columns="figure", values="cell", aggfunc="first",
                             sort=False)
    return wide.reset_index()


def parse_comparison(parser: argparse.ArgumentParser) -> argparse.Namespace:
    args = parser.parse_args()
    if len(args.models) < 2:
        parser.error("name at least two models to compare")
    return args


def main() -> None:
    parser = comparison_parser(__doc__, Path("benchmarks/paired_models.jsonl"))
    parser.add_argument("--by-archive", action="store_true",
                        help="also compare the unseen, rare and external papers arXiv archive by archive")
    args = parse_comparison(parser)
    inputs = ScoringInputs.of(get_profile("default"), args.external, args.external_per_subject)
    evaluations = {model_path: evaluate(inputs.encoder(inputs.load(model_path)), inputs.splits, inputs.external)
                   for model_path in args.models}
    header = inputs.header()
    print(header["machine"])
    for later, candidate in enumerate(args.models):
        for reference in args.models[:later]:
            table = paired_table(evaluations[candidate], evaluations[reference])
            with args.out.open("a") as out:
                out.write(json.dumps({**header, "candidate": candidate, "reference": reference,
                                      "paired": table.to_dict("records")}) + "\n")
            print(f"\n{candidate} minus {reference}: points, 95 % paired bootstrap interval\n")
            print(table.round(2).to_markdown(index=False))
            if args.by_archive:
                archives = archive_tables(evaluations[candidate], evaluations[reference], inputs.splits)
                with args.out.open("a") as out:
                    out.write(json.dumps({**header, "candidate": candidate, "reference": reference,
                                          "by_archive": archives.to_dict("records")}) + "\n")
                print(f"\nthe same off the training subjects, by arXiv archive ({TRAINED_ARCHIVES}: "
                      f"{', '.join(sorted(trained_archives(inputs.splits)))})\n")
                print(archives.to_markdown(index=False))


if __name__ == "__main__":
    main()
