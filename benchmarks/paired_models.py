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
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from arxiv_assets.ml.embedding import default_precision, encode, load_model
from arxiv_assets.ml.hardware import best_device
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_of_note, machine_line, profile_splits
from benchmarks.recipe_comparison import evaluate, external_papers, paired_table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", help="model directories or ids (two or more)")
    parser.add_argument("--external", type=Path, help="a parquet of papers in our schema (../shared/data/...)")
    parser.add_argument("--external-per-subject", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/paired_models.jsonl"))
    args = parser.parse_args()

    if len(args.models) < 2:
        parser.error("name at least two models to compare")

    profile = get_profile("default")
    splits = profile_splits(profile)
    external = external_papers(args.external, args.external_per_subject) if args.external else None
    device = best_device()
    precision = default_precision(device)
    evaluations = {}
    for model_path in args.models:
        model = load_model(model_path, device=device, max_seq_length=profile.train.max_seq_length_cap)
        evaluations[model_path] = evaluate(lambda texts, m=model: encode(m, texts, precision=precision),
                                           splits, external)
    header = {"machine": machine_line(), "cpu_flags": flags_of_note(),
              "eval_precision": precision}
    print(header["machine"])
    for later, candidate in enumerate(args.models):
        for reference in args.models[:later]:
            table = paired_table(evaluations[candidate], evaluations[reference])
            with args.out.open("a") as out:
                out.write(json.dumps({**header, "candidate": candidate, "reference": reference,
                                      "paired": table.to_dict("records")}) + "\n")
            print(f"\n{candidate} minus {reference}: points, 95 % paired bootstrap interval\n")
            print(table.round(2).to_markdown(index=False))


if __name__ == "__main__":
    main()
