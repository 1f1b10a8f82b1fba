"""What the service's precision does to quality where users are: every variant of a released model on every slice.

    python -m benchmarks.variant_slices --model DIR --external ../shared/data/arxiv_papers.parquet

``DIR`` is an ONNX export (``onnx_model``'s payload, the directory a release serves). The export's parity
checks compare a variant with PyTorch fp32 on 256 test papers of the subjects the model was trained on;
the service sends whichever variant passed them and serves fastest on its machine. This scores each
variant the service may send (PyTorch fp32 / bf16, ONNX int8, OpenVINO static int8) on the slices the quality gates
and the hidden-set scoring care about — unseen subjects, new months, title search, papers outside the
bundled sample — beside the untrained base model in fp32 (what the served model must beat), with the
pipeline's own ``evaluate_encoder``. A variant the CPU cannot run fast (bf16 without AVX512-BF16 or AMX)
still runs: the question is its quality, not its speed. Each variant is also compared paper by paper (95 % paired
bootstrap intervals, ``paired_differences``) with the base and with torch fp32 when this invocation scored them
too: whether a tenth of a point is the precision's or the sample's. Rows go to ``--out`` (JSON lines) as soon as they
exist, and the table is made of every row there for the same model, so several invocations (``--skip-base``,
``--variants``) build one table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.embedding import encode, load_model
from arxiv_assets.ml.variants import VARIANTS, ModelExport, encode_variant, load_variant
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_of_note, machine_line, profile_splits
from benchmarks.recipe_comparison import (
    EXTERNAL_FIGURES,
    FIGURES,
    evaluate,
    external_papers,
    figures_of,
    interval_cells,
    paired_table,
)

# ONNX fp32 is left out by default: its vectors match PyTorch fp32's to a cosine of 0.99999+ (onnx_model's check).
BASE = "base torch-fp32"
FP32 = "released torch-fp32"
VARIANTS_SCORED: tuple[str, ...] = ("torch-fp32", "torch-bf16", "onnx-int8", "openvino-int8")
# The figures the hidden set scores the served model on (through /v1/embeddings) and the gates hold.
KEY_FIGURES: tuple[str, ...] = ("test/P@10", "test/known-item MRR@10", "unseen/P@10", "unseen/LR accuracy",
                                "unseen/known-item R@1", "new/P@10", "new/known-item R@1", "rare/P@10",
                                "rare/LR accuracy", "rare/known-item R@1", *EXTERNAL_FIGURES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="an ONNX export directory (onnx_model's payload)")
    parser.add_argument("--external", type=Path, help="a parquet of papers in our schema (../shared/data/...)")
    parser.add_argument("--external-per-subject", type=int, default=120)
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS_SCORED), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/variant_slices.jsonl"))
    parser.add_argument("--skip-base", action="store_true", help="the base model's row is in --out already")
    args = parser.parse_args()

    profile = get_profile("default")
    splits = profile_splits(profile)
    external = external_papers(args.external, args.external_per_subject) if args.external else None
    export = ModelExport.read(args.model)
    header = {"machine": machine_line(), "cpu_flags": flags_of_note(),
              "model": str(args.model), "model_fingerprint": export.source_fingerprint,
              "quantization_target": export.quantization_target}
    print(json.dumps(header), flush=True)

    def record(row: dict) -> None:
        with args.out.open("a") as out:
            out.write(json.dumps({**header, **row}) + "\n")
        print(json.dumps(row), flush=True)

    evaluations = {}  # what this invocation scored: the variants are compared paper by paper with these
    if not args.skip_base:
        base = load_model(profile.train.base_model, device="cpu")
        evaluations[BASE] = evaluate(lambda texts: encode(base, texts), splits, external)
        record({"system": BASE, **figures_of(evaluations[BASE])})
    for variant in args.variants:
        model = load_variant(args.model, variant)
        system = f"released {variant}"
        evaluations[system] = evaluate(lambda texts, m=model, v=variant: encode_variant(m, v, texts), splits, external)
        paired = {f"paired vs {reference}": paired_table(evaluations[system], evaluations[reference]).to_dict("records")
                  for reference in (BASE, FP32) if reference in evaluations and reference != system}
        record({"system": system, **figures_of(evaluations[system]), **paired})

    print_table(args.out, export.source_fingerprint)


def print_table(path: Path, model_fingerprint: str) -> None:
    """Every row of ``path`` for this model (and the latest base row), and each variant's points above the base."""
    rows = pd.DataFrame([json.loads(line) for line in path.read_text().splitlines()])
    rows = rows[(rows["model_fingerprint"] == model_fingerprint) | (rows["system"] == BASE)]
    latest = rows.drop_duplicates("system", keep="last").set_index("system")
    table = latest[[c for c in (*FIGURES, *EXTERNAL_FIGURES) if c in latest and c in KEY_FIGURES]]
    print(table.round(4).to_markdown())
    if BASE in table.index:
        print("\nPoints above the base (torch fp32):")
        print((100 * (table - table.loc[BASE])).drop(index=BASE).round(2).to_markdown())
    for reference in (BASE, FP32):
        column = f"paired vs {reference}"
        if column not in latest:
            continue
        intervals = {system: dict(zip([f"{r['slice']}/{r['figure']}" for r in records],
                                      interval_cells(pd.DataFrame(records)), strict=True))
                     for system, records in latest[column].dropna().items()}
        if intervals:
            print(f"\nPoints above {reference}, paper by paper, with 95 % paired bootstrap intervals:")
            frame = pd.DataFrame(intervals).T
            print(frame[[c for c in KEY_FIGURES if c in frame]].to_markdown())


if __name__ == "__main__":
    main()
