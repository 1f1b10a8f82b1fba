"""Training throughput and peak memory of a profile, on whatever device this machine has.

    python -m benchmarks.train_bench --profile default            # 2-core CPU: the whole default run
    python -m benchmarks.train_bench --profile gpu --pairs 100000 # on a CUDA machine

Runs the pipeline's own ``train`` on the profile's pairs (built from the bundled sample exactly as
the ``pairs`` asset does) and prints one row: device, precision, sequence length, batch, steps,
pairs/s, training seconds and peak memory.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

import pandas as pd

from arxiv_assets.ml.pairs import make_pair_sets
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.training import train
from arxiv_assets.profiles import get_profile
from benchmarks.common import machine_line, profile_splits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default="default")
    parser.add_argument("--pairs", type=int, help="train pairs (default: the profile's)")
    parser.add_argument("--loss", help="override the profile's loss")
    parser.add_argument("--batch-size", type=int, help="override the profile's batch size")
    args = parser.parse_args()

    profile = get_profile(args.profile)
    splits = profile_splits(profile)
    # At most 200 eval pairs: with no checkpoint (below) no evaluation loss is ever computed from them.
    pair_settings = replace(profile.pairs, train_pairs=args.pairs or profile.pairs.train_pairs,
                            eval_pairs=min(200, profile.pairs.eval_pairs))
    pairs = make_pair_sets(splits, pair_settings)
    train_pairs, eval_split = pairs["train"], papers_in(splits, "eval")
    settings = replace(profile.train, report_to_wandb=False, checkpoint_steps=1_000_000,
                       loss=args.loss or profile.train.loss, batch_size=args.batch_size or profile.train.batch_size)
    result = train(train_pairs, pairs["eval"], eval_split, settings, Path(tempfile.mkdtemp()) / "model",
                   Path(tempfile.mkdtemp()), data_fingerprint="bench")
    row = {
        "profile": profile.name, "device": result.device, "precision": result.precision,
        "loss": settings.loss, "train seq": result.train_seq_length, "batch": settings.batch_size,
        "pairs": len(train_pairs), "steps": result.steps, "pairs/s": round(result.samples_per_second, 2),
        "train s": round(result.train_seconds, 1), "peak memory MB": round(result.peak_memory_mb),
        "eval P@10": round(result.eval_metrics.get("eval_cosine_precision@10", float("nan")), 3),
    }
    print(f"\n{machine_line()}\n")
    print(pd.DataFrame([row]).to_markdown(index=False))


if __name__ == "__main__":
    main()
