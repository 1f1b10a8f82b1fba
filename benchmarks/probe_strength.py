"""Does a model's lead on the linear probe depend on the probe's regularization?

    python -m benchmarks.probe_strength MODEL MODEL [MODEL ...] --external ../shared/data/arxiv_papers.parquet

The pipeline's probe chooses its C by cross-validated macro-F1 from ``PROBE_CS`` (``ml/metrics.py``); someone
scoring the served embeddings may not: scikit-learn's ``LogisticRegression()`` fits C = 1, another scorer may
take a weak penalty. A fine-tuned model's subjects sit in tighter clusters than the base's, which favours a
different C, so a lead measured at the chosen C could turn at a fixed one. Each model (as in
``paired_models``) is encoded once; then the pipeline's own evaluation (``recipe_comparison.evaluate``) is
repeated with the probe held to each C of ``--cs`` and with the chosen one, and every model is compared with the
first named, paper by paper (95 % paired bootstrap), on the probe of every slice: test and new (fit on the train
split's probe papers), unseen and rare (cross-validated within the slice) and ``--external``'s papers. Rows are
appended to ``--out`` (JSON lines).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.evaluation import ModelEvaluation
from arxiv_assets.ml.metrics import PROBE_CS
from arxiv_assets.profiles import get_profile
from benchmarks.paired_models import comparison_parser, parse_comparison
from benchmarks.recipe_comparison import ScoringInputs, figures_of, interval_cells, paired_table

CHOSEN = "chosen"  # the pipeline's probe: C by cross-validated macro-F1 from PROBE_CS


def probe_rows(table: pd.DataFrame, c: str) -> pd.DataFrame:
    """The probe's rows of a ``paired_table``, labelled with the C they were scored at."""
    probe = table[table["figure"] == "LR accuracy"].drop(columns="figure")
    return probe.assign(C=c)[["C", "slice", "points", "low", "high", "verdict"]]


def probe_accuracy(evaluations: dict[str, ModelEvaluation]) -> dict[str, float]:
    """``{"<slice>/LR accuracy": value}`` of one model's evaluation, the external papers' under ``external/``."""
    return {k: v for k, v in figures_of(evaluations).items() if k.endswith("/LR accuracy")}


def main() -> None:
    parser = comparison_parser(__doc__, Path("benchmarks/probe_strength.jsonl"))
    parser.add_argument("--cs", type=float, nargs="+", default=list(PROBE_CS), help="fixed C values to score at")
    args = parse_comparison(parser)
    inputs = ScoringInputs.of(get_profile("default"), args.external, args.external_per_subject)
    settings: dict[str, tuple[float, ...]] = {CHOSEN: PROBE_CS} | {f"{c:g}": (c,) for c in args.cs}
    evaluations = {model_path: inputs.evaluate_variants(model_path, {c: {"probe_cs": cs} for c, cs in settings.items()})
                   for model_path in args.models}

    header = inputs.header()
    print(header["machine"])
    reference = args.models[0]
    for candidate in args.models[1:]:
        table = pd.concat([probe_rows(paired_table(evaluations[candidate][c], evaluations[reference][c]), c)
                           for c in settings], ignore_index=True)
        accuracy = {c: {"reference": probe_accuracy(evaluations[reference][c]),
                        "candidate": probe_accuracy(evaluations[candidate][c])} for c in settings}
        with args.out.open("a") as out:
            out.write(json.dumps({**header, "candidate": candidate, "reference": reference,
                                  "accuracy": accuracy, "paired": table.to_dict("records")}) + "\n")
        print(f"\n{candidate} minus {reference}: probe accuracy in points at each C, 95 % paired bootstrap\n")
        wide = table.assign(cell=interval_cells(table))
        print(wide.pivot(index="C", columns="slice", values="cell").loc[list(settings)].to_markdown())


if __name__ == "__main__":
    main()
