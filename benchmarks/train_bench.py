"""Training throughput and peak memory of a profile, on whatever device this machine has.

    python -m benchmarks.train_bench --profile default            # 2-core CPU: the whole default run
    python -m benchmarks.train_bench --profile gpu --pairs 100000 # on a CUDA machine
    python -m benchmarks.train_bench --isa AVX2                   # this CPU held to AVX2, as an AVX2-only one
    python -m benchmarks.train_bench --isa AVX2 --budget 540      # ... with the training loop's time budget
    python -m benchmarks.train_bench --isa AVX2 --budget 335 --keep /tmp/cut  # a slower CPU's cut run, kept

Runs the pipeline's own ``train`` on the profile's pairs (built from the bundled sample exactly as
the ``pairs`` asset does) and prints one row: device, precision, sequence length, batch, steps,
pairs/s, training seconds, the averaging's eval scoring (weight chosen, seconds), the whole call and
peak memory.

``--isa`` holds PyTorch's kernels to a lower instruction set on this CPU (oneDNN, MKL and ATen, which
read their caps when torch loads, so the script starts itself again with them set): ``--isa AVX2`` on
an AVX512/AMX machine trains in fp32 with AVX2 kernels, as on an AVX2-only CPU of the same clock.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.hardware import ONEDNN_ISA_LEVELS
from arxiv_assets.ml.pairs import make_pair_sets
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.training import train
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_line, hold_to_isa, machine_line, profile_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--pairs", type=int, help="train pairs (default: the profile's)")
    parser.add_argument("--loss", help="override the profile's loss")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    parser.add_argument("--isa", choices=ONEDNN_ISA_LEVELS, help="hold PyTorch to this instruction set")
    parser.add_argument("--budget", type=float, help="the training loop's time budget in seconds (default: the "
                        "profile's train_budget_seconds; 0: none)")
    parser.add_argument("--keep", type=Path, help="save the trained model here (score it with "
                        "`python -m benchmarks.recipe_comparison --recipes --backbones DIR`)")
    args = parser.parse_args()
    hold_to_isa(args.isa, "benchmarks.train_bench")

    profile = get_profile(args.profile)
    splits = profile_splits(profile)
    # At most 200 eval pairs: with no checkpoint (below) no evaluation loss is ever computed from them.
    pair_settings = replace(profile.pairs, train_pairs=args.pairs or profile.pairs.train_pairs,
                            eval_pairs=min(200, profile.pairs.eval_pairs))
    pairs = make_pair_sets(splits, pair_settings)
    train_pairs, eval_split = pairs["train"], papers_in(splits, "eval")
    budget = profile.train.train_budget_seconds if args.budget is None else (args.budget or None)
    settings = replace(profile.train, report_to_wandb=False, checkpoint_steps=1_000_000, train_budget_seconds=budget,
                       loss=args.loss or profile.train.loss, batch_size=args.batch_size or profile.train.batch_size)
    started = time.perf_counter()
    result = train(train_pairs, pairs["eval"], eval_split, settings, args.keep or Path(tempfile.mkdtemp()) / "model",
                   Path(tempfile.mkdtemp()), data_fingerprint="bench")
    call_seconds = time.perf_counter() - started
    row = {
        "profile": profile.name, "device": result.device, "precision": result.precision,
        "attention": result.attention_kernel_choice.kernel,
        "loss": settings.loss, "train seq": result.train_seq_length, "batch": settings.batch_size,
        "pairs": len(train_pairs), "steps": result.steps,
        "epoch steps": result.budget.planned_steps if result.budget else result.steps,
        "timed s/step": round(result.budget.seconds_per_step, 2) if result.budget and result.budget.seconds_per_step
        else "", "pairs/s": round(result.samples_per_second, 2),
        "train s": round(result.train_seconds, 1),
        "averaging w": result.interpolation.weight if result.interpolation else "",
        "averaging s": round(result.interpolation.seconds, 1) if result.interpolation else "",
        "soup run steps": result.soup.steps if result.soup else "",
        "soup run s": round(result.soup.train_seconds, 1) if result.soup else "",
        "train() s": round(call_seconds, 1), "peak memory MB": round(result.peak_memory_mb),
        "eval P@10": round(result.eval_metrics.get("eval_cosine_precision@10", float("nan")), 3),
    }
    isa = f" · PyTorch held to {args.isa}" if args.isa else ""
    print(f"\n{machine_line()}{isa} · {flags_line()}\n")
    print(pd.DataFrame([row]).to_markdown(index=False))


if __name__ == "__main__":
    main()
