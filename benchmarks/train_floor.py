"""The least time the default recipe's training can take on this CPU: its arithmetic over the CPU's matmul rate.

    python -m benchmarks.train_floor               # this CPU as it is
    python -m benchmarks.train_floor --isa AVX2    # held to AVX2 kernels, as an AVX2-only CPU of this clock
    python -m benchmarks.train_floor --pairs 3000 --train-seq-length 96 --frozen-layers 3   # a cheaper recipe

What the soup's two runs compute is counted, not timed: the default profile's pairs (built from the bundled sample as
the ``pairs`` asset builds them) are tokenized at the training length and grouped into batches of the sizes each run
takes (the main run: title -> abstract pairs 64 to a batch, the other kinds one pair per subject; the second run 64
of every kind), each side padded to its batch's longest text as the trainer pads; torch's ``FlopCounterMode``
counts a forward and backward pass of the model each run trains (the second with its lowest layers frozen) at every
padded length. Then this CPU's matrix-multiply rate is measured at the shape of the model's largest layer (the
feed-forward projection, one batch of tokens: the most efficient multiply it does), in fp32 and in bf16, with the
threads torch uses, best of ``--rounds``. A run's own training seconds (the ``model`` asset's metadata) over its
count here is the share of that rate the trainer reaches.

The recipe's arithmetic at the matmul rate is a floor: no kernel, thread setting or attention path makes the
recipe's training faster than that on this CPU; only less arithmetic (fewer or shorter texts, frozen layers, a
smaller model) or a faster unit (a GPU, AMX tiles) does. The optimizer, tokenizing and the evaluation during
training are left out of the count, so the real run takes longer still.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pandas as pd
import torch
from datasets import Dataset
from torch.utils.flop_counter import FlopCounterMode

from arxiv_assets.ml.hardware import ONEDNN_ISA_LEVELS
from arxiv_assets.ml.pairs import KIND_COLUMN, SUBJECT_COLUMN, make_pair_sets
from arxiv_assets.ml.training import TrainSettings, freeze_lower_layers, ingredient_settings, load_for_training
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_line, hold_to_isa, machine_line, profile_splits

PRECISION_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def padded_lengths(pairs: Dataset, tokens: dict[str, int], batch_size: int, distinct_subjects: bool,
                   seed: int) -> Counter[tuple[int, int]]:
    """(texts, padded length) -> how many times a batch side of that shape occurs in one epoch of ``pairs``.

    Each kind of pair is its own dataset (multi-dataset training); with ``distinct_subjects`` the kinds that carry a
    subject label in training (all but title -> abstract) go one pair per subject to a batch, as the main run's
    sampler draws them. Batches are random otherwise, as both samplers are; each side (anchors, positives) of a
    batch is padded to its longest text."""
    rng = np.random.default_rng(seed)
    shapes: Counter[tuple[int, int]] = Counter()
    frame = pairs.to_pandas()
    for kind, rows in frame.groupby(KIND_COLUMN):
        size = batch_size
        if distinct_subjects and kind != "title_abstract":
            size = min(batch_size, rows[SUBJECT_COLUMN].nunique())
        order = rng.permutation(len(rows))
        # a last partial batch is left out (the subject-distinct sampler drops it; the no-duplicate one runs it, so
        # the count errs low by at most one batch per kind: still a floor)
        for start in range(0, len(order) - size + 1, size):
            batch = rows.iloc[order[start:start + size]]
            for side in ("anchor", "positive"):
                shapes[(size, max(tokens[text] for text in batch[side]))] += 1
    return shapes


def flops_per_text(model, length: int) -> int:
    """A forward and backward pass of one text of ``length`` tokens through ``model`` (its frozen layers skipped), in
    training mode as the trainer runs it (MiniLM's attention dropout keeps attention on the math path)."""
    model.train()
    features = {"input_ids": torch.randint(1000, 20000, (1, length)),
                "attention_mask": torch.ones(1, length, dtype=torch.long),
                "token_type_ids": torch.zeros(1, length, dtype=torch.long)}
    with FlopCounterMode(display=False) as counter:
        model(features)["sentence_embedding"].sum().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def recipe_flops(model, shapes: Counter[tuple[int, int]]) -> float:
    """Every batch side's forward and backward pass: texts x the count at its padded length (linear in texts)."""
    per_length = {length: flops_per_text(model, length) for length in {length for _, length in shapes}}
    return float(sum(texts * per_length[length] * count for (texts, length), count in shapes.items()))


def matmul_rate(tokens: int, width: int, inner: int, dtype: torch.dtype, rounds: int) -> float:
    """FLOP/s of the best of ``rounds`` (tokens x width) @ (width x inner) products."""
    left, right = torch.randn(tokens, width).to(dtype), torch.randn(width, inner).to(dtype)
    torch.mm(left, right)  # warm-up: kernels are built on first use
    best = min(_timed(lambda: torch.mm(left, right)) for _ in range(rounds))
    return 2 * tokens * width * inner / best


def _timed(call) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--isa", choices=ONEDNN_ISA_LEVELS, help="hold PyTorch to this instruction set")
    parser.add_argument("--rounds", type=int, default=10, help="matrix multiplies timed per precision")
    parser.add_argument("--pairs", type=int, help="train pairs (default: the profile's)")
    parser.add_argument("--train-seq-length", type=int, help="tokens a text is cut to while training")
    parser.add_argument("--frozen-layers", type=int, help="the main run's frozen layers (the second run keeps its own)")
    args = parser.parse_args()
    hold_to_isa(args.isa, "benchmarks.train_floor")

    profile = get_profile("default")
    settings: TrainSettings = replace(profile.train, **{
        field: value for field, value in (("train_seq_length", args.train_seq_length),
                                          ("frozen_layers", args.frozen_layers)) if value is not None})
    pair_settings = replace(profile.pairs, train_pairs=args.pairs or profile.pairs.train_pairs)
    pairs = make_pair_sets(profile_splits(profile), pair_settings)["train"]
    length = settings.train_seq_length or settings.max_seq_length_cap
    # The soup's two runs as train() runs them: the main one, and the second with its own loss and frozen layers.
    runs = {"main run": settings} | ({"second run": ingredient_settings(settings)} if settings.soup_loss else {})
    models = {}
    for name, run in runs.items():
        models[name], _ = load_for_training(run, "cpu")
        freeze_lower_layers(models[name], run.frozen_layers)
    model = models["main run"]
    texts = sorted(set(pairs["anchor"]) | set(pairs["positive"]))
    encoded = model.tokenizer(texts, truncation=True, max_length=length)["input_ids"]
    tokens = dict(zip(texts, map(len, encoded), strict=True))

    counted = {}
    for name, run in runs.items():
        shapes = padded_lengths(pairs, tokens, run.batch_size, run.loss == "mnrl_distinct_subjects", run.seed)
        counted[name] = {"steps": sum(shapes.values()) // 2, "frozen layers": run.frozen_layers,
                         "tokens (padded)": sum(t * n * c for (t, n), c in shapes.items()),
                         "TFLOP": recipe_flops(models[name], shapes) / 1e12}
    total_tflop = sum(run["TFLOP"] for run in counted.values())

    # The feed-forward projection over one main-run batch of tokens: (texts x tokens) x hidden @ hidden x 4 hidden.
    config = model[0].auto_model.config
    batch_texts = 2 * round(len(pairs) / counted["main run"]["steps"])
    rates = {precision: matmul_rate(batch_texts * length, config.hidden_size, config.intermediate_size, dtype,
                                    args.rounds)
             for precision, dtype in PRECISION_DTYPES.items()}

    print(f"\n{machine_line()} · {flags_line()}" + (f" · held to {args.isa}" if args.isa else ""))
    print(f"default profile: {len(pairs)} pairs, trained at {length} tokens, the main run's lowest "
          f"{settings.frozen_layers} layers frozen\n")
    print(pd.DataFrame.from_dict(counted, orient="index").to_markdown(floatfmt=".1f"))
    print(f"\nthe soup's training: {total_tflop:.1f} TFLOP (forward and backward passes; the optimizer and the "
          f"evaluation during training not counted)\n")
    minutes = "the soup's training at that rate, min"
    rows = [{"rate": f"{p} matrix multiply (best of {args.rounds})", "GFLOP/s": round(rate / 1e9),
             minutes: round(total_tflop * 1e12 / rate / 60, 1)} for p, rate in rates.items()]
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
