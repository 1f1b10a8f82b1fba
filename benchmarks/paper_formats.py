"""Does a model's lead hold whatever a user embeds a paper as: title and abstract, the abstract, or the title?

    python -m benchmarks.paper_formats MODEL MODEL [MODEL ...] --external ../shared/data/arxiv_papers.parquet

The pipeline trains, indexes, serves and scores a paper as "title. abstract" (``ml/text.py``). Someone putting the
service behind their own search or classifier may send only abstracts, or only titles, and the hidden papers the
served model is scored on come through ``/v1/embeddings`` as the scorer chooses. Each model (as in
``paired_models``) is encoded once per distinct text; the pipeline's own evaluation (``recipe_comparison.evaluate``)
is repeated with the papers embedded in each format of ``--formats``, for subject retrieval and the probe alike
(the probe is fit on the same format it is scored on); title search asks with titles for abstracts in every
format, so it is reported once. Every model is compared with the first named, paper by paper (95 % paired
bootstrap). Rows are appended to ``--out`` (JSON lines).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.text import paper_texts
from arxiv_assets.profiles import get_profile
from benchmarks.paired_models import comparison_parser, parse_comparison
from benchmarks.recipe_comparison import ScoringInputs, figures_of, interval_cells, paired_table

PAPER_FORMATS: dict[str, Callable[[pd.DataFrame], list[str]]] = {
    "title. abstract": paper_texts,  # what the pipeline embeds
    "abstract": lambda papers: papers["abstract"].tolist(),
    "title": lambda papers: papers["title"].tolist(),
}
PAPER_FIGURES = ("P@10", "LR accuracy")  # the figures that embed the papers; title search does not


def format_rows(table: pd.DataFrame, paper_format: str, first: bool) -> pd.DataFrame:
    """A ``paired_table`` under the format it was scored in: the papers' figures, and title search only for the
    first format (it embeds titles and abstracts, the same in every format)."""
    kept = table["figure"].isin(PAPER_FIGURES) | (first & table["figure"].str.startswith("known-item"))
    return table[kept].assign(format=paper_format)[["format", "slice", "figure", "points", "low", "high", "verdict"]]


def main() -> None:
    parser = comparison_parser(__doc__, Path("benchmarks/paper_formats.jsonl"))
    parser.add_argument("--formats", nargs="+", choices=list(PAPER_FORMATS), default=list(PAPER_FORMATS))
    args = parse_comparison(parser)
    inputs = ScoringInputs.of(get_profile("default"), args.external, args.external_per_subject)
    evaluations = {model_path: inputs.evaluate_variants(model_path,
                                                        {fmt: {"texts_of": PAPER_FORMATS[fmt]} for fmt in args.formats})
                   for model_path in args.models}

    header = inputs.header()
    print(header["machine"])
    reference = args.models[0]
    for candidate in args.models[1:]:
        table = pd.concat([format_rows(paired_table(evaluations[candidate][fmt], evaluations[reference][fmt]), fmt,
                                       first=i == 0) for i, fmt in enumerate(args.formats)], ignore_index=True)
        figures = {fmt: {"reference": figures_of(evaluations[reference][fmt]),
                         "candidate": figures_of(evaluations[candidate][fmt])} for fmt in args.formats}
        with args.out.open("a") as out:
            out.write(json.dumps({**header, "candidate": candidate, "reference": reference, "figures": figures,
                                  "paired": table.to_dict("records")}) + "\n")
        print(f"\n{candidate} minus {reference}: points per paper format, 95 % paired bootstrap\n")
        wide = table.assign(column=table["slice"] + " " + table["figure"], cell=interval_cells(table))
        print(wide.pivot(index="column", columns="format", values="cell")
              .reindex(index=wide["column"].unique(), columns=args.formats).fillna("").to_markdown())


if __name__ == "__main__":
    main()
