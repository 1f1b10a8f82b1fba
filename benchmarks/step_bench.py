"""What dropout, its masks, the attention kernel and LoRA cost a CPU training step, on this machine.

    python -m benchmarks.step_bench                 # the default profile's pairs, 28 per step, 12 rounds
    python -m benchmarks.step_bench --isa AVX2      # this CPU held to AVX2 kernels, as an AVX2-only one

Times one MultipleNegativesRankingLoss step (forward and backward of both sides, AdamW) of the base model on real
pairs of the default profile (built from the bundled sample as the ``pairs`` asset builds them), at the training
length, in the precision the pipeline encodes with on this CPU, for each setting: MiniLM's own dropout (0.1 on the
attention probabilities and the hidden states) with PyTorch's masks (the default, on sdpa) and with packed masks
(``dropout_masks: packed``, on eager attention: ``ml/dropout.py``), no attention dropout, no dropout at all (the
faster opt-in), the last two each on PyTorch's own attention kernel and on the math path
(``ml/attention_kernel.py``), and MiniLM's dropout with a LoRA adapter of rank 16 and 64 on every layer
(``lora_rank``, ``ml/lora.py``). The
settings take turns round by round on the same batches in one process, so the machine's drift touches them alike;
the table gives each one's median seconds per step and its speed-up over the first. The order turns each round,
so that no setting always runs first or after the same one.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import pandas as pd
import torch

from arxiv_assets.ml.attention_kernel import AttentionKernel, attention_kernel_context
from arxiv_assets.ml.dropout import DropoutMasks
from arxiv_assets.ml.embedding import default_precision, precision_context
from arxiv_assets.ml.hardware import ONEDNN_ISA_LEVELS
from arxiv_assets.ml.lora import add_lora
from arxiv_assets.ml.pairs import make_pair_sets
from arxiv_assets.ml.training import TrainSettings, load_for_training, transformer_layers
from arxiv_assets.profiles import get_profile
from benchmarks.common import flags_line, hold_to_isa, machine_line, profile_splits


@dataclass(frozen=True)
class StepSetting:
    name: str
    attention_dropout: float | None  # None: the base model's
    hidden_dropout: float | None
    kernel: AttentionKernel
    masks: DropoutMasks = "torch"
    lora_rank: int | None = None  # None: every weight trains


# With attention dropout PyTorch's CPU flash kernel is out of reach (it takes no dropout), so MiniLM's own dropout
# runs on sdpa's math path whatever is asked: one row for PyTorch's masks (a forced-math row measured 1.24-1.30x
# here, which neither the trainer, 40 steps each way, nor the pipeline's own timing reproduced: 1.01x, 0.98x;
# RESULTS.md), and one for packed masks, which attend on Transformers' eager path.
SETTINGS = (
    StepSetting("MiniLM's dropout, PyTorch's masks (sdpa's math path): the default", None, None, "default", "torch"),
    StepSetting("MiniLM's dropout, packed masks (eager attention)", None, None, "eager", "packed"),
    *(StepSetting(f"{name}, {kernel} attention", 0.0, hidden, kernel)
      for name, hidden in (("no attention dropout", None), ("no dropout", 0.0)) for kernel in ("default", "math")),
    *(StepSetting(f"MiniLM's dropout, LoRA rank {rank}", None, None, "default", lora_rank=rank) for rank in (16, 64)),
)


def step_runner(setting: StepSetting, precision: str) -> Callable[[list[str], list[str]], None]:
    """One MNRL training step on (anchors, positives) for ``setting``'s model, as the trainer takes it."""
    from sentence_transformers.losses import MultipleNegativesRankingLoss

    settings = replace(TrainSettings(), attention_dropout=setting.attention_dropout,
                       hidden_dropout=setting.hidden_dropout, dropout_masks=setting.masks)
    model, _ = load_for_training(settings, "cpu")  # as train() loads it
    model.max_seq_length = settings.train_seq_length
    if setting.lora_rank is not None:
        add_lora(model, setting.lora_rank, range(len(transformer_layers(model, "LoRA", "leave the LoRA rows out"))))
    model.train()
    loss = MultipleNegativesRankingLoss(model)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)

    def step(anchors: list[str], positives: list[str]) -> None:
        features = [model.preprocess(anchors), model.preprocess(positives)]
        with attention_kernel_context(setting.kernel), precision_context("cpu", precision):  # type: ignore[arg-type]
            value = loss(features, torch.empty(0))
        value.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs-per-step", type=int, default=28,
                        help="28: the default soup's subject-distinct steps hold 6,000 pairs in 218 steps")
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--isa", choices=ONEDNN_ISA_LEVELS, help="hold PyTorch to this instruction set")
    args = parser.parse_args()
    hold_to_isa(args.isa, "benchmarks.step_bench")

    torch.manual_seed(0)
    profile = get_profile("default")
    pairs = make_pair_sets(profile_splits(profile), profile.pairs)["train"].shuffle(seed=0)
    size = args.pairs_per_step
    batches = [(pairs["anchor"][i:i + size], pairs["positive"][i:i + size])
               for i in range(0, size * (args.rounds + 1), size)]
    precision = default_precision("cpu")
    steps = {setting: step_runner(setting, precision) for setting in SETTINGS}
    seconds: dict[StepSetting, list[float]] = {setting: [] for setting in SETTINGS}
    for round_index, (anchors, positives) in enumerate(batches):
        # each round starts one setting further on, so no setting always follows the same other one
        for setting in SETTINGS[round_index % len(SETTINGS):] + SETTINGS[:round_index % len(SETTINGS)]:
            started = time.perf_counter()
            steps[setting](anchors, positives)
            if round_index:  # the first round builds kernels
                seconds[setting].append(time.perf_counter() - started)

    first = statistics.median(seconds[SETTINGS[0]])
    table = pd.DataFrame([{"setting": setting.name, "s/step (median)": round(statistics.median(times), 3),
                           "fastest": round(min(times), 3), "speed-up": f"{first / statistics.median(times):.2f}x"}
                          for setting, times in seconds.items()])
    print(f"\n{machine_line()} · {flags_line()} · {precision}"
          + (f" · held to {args.isa}" if args.isa else ""))
    print(f"{size} pairs per step at {TrainSettings().train_seq_length} tokens, {args.rounds} rounds\n")
    print(table.to_markdown(index=False))


if __name__ == "__main__":
    main()
