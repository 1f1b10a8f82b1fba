"""Dropout for CPU training whose masks cost what a mask should.

PyTorch's CPU dropout draws its mask with ``bernoulli_``: one Mersenne Twister number per element, on one thread.
MiniLM drops 0.1 of every attention matrix and of the hidden states, so a training step of the default recipe
draws ~40 million of them: 0.6 s of a 2.6 s bf16 step on a Zen 4 EPYC, a quarter of it, more than all the
attention products (profiled 2026-12-06, benchmarks/RESULTS.md "Dropout masks"). ``PackedMaskDropout`` draws one
64-bit random integer per four elements and drops an element where its 15-bit slice falls below
``round(p * 2**15)``: the same independent Bernoulli masks (drop probability ``p`` to within 2**-16), from the same
seeded generator, the kept elements scaled by the kept share as ``nn.Dropout`` does, for a seventh of the draws'
time. On other devices (a GPU draws its masks in parallel) and outside training it is ``nn.Dropout``.

An opt-in (``TrainSettings.dropout_masks``): the default's soup trained 1.26x faster with these masks on a Zen 4
(9.8-10.2 min against 12.6-12.9). At three seeds its soups differ from PyTorch's masks' by no more than one recipe's
reseeds do (means 0.1-0.2 point lower on subject P@10 off the training subjects, the sign of two seeds gone at the
third), with title search off the training subjects a little lower at every seed; eager attention alone (PyTorch's
masks, the same draws) trained the same soup to within 0.1 point, so the difference is the random stream
(benchmarks/RESULTS.md "Dropout masks"). PyTorch's masks stay the default for that lean, and because these are
measured on Zen 4 only.

Attention dropout goes through an ``nn.Dropout`` module only on Transformers' eager attention path (``sdpa``
applies it inside PyTorch's kernel, with PyTorch's masks), so a CPU run that uses these masks loads its backbone
with eager attention: the same products and softmax as sdpa's math path, which is the one sdpa takes on a CPU with
attention dropout anyway (ml/attention_kernel.py).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

DropoutMasks = Literal["packed", "torch"]
SLICE_BITS = 15  # an int16 slice of a random_() int64 without its sign bit (the int64's own top bit is always 0)
SLICES_PER_DRAW = 4


class PackedMaskDropout(nn.Dropout):
    """``nn.Dropout`` whose CPU training masks are drawn four elements to a 64-bit random integer."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if not self.training or input.device.type != "cpu" or not 0.0 < self.p < 1.0:
            return super().forward(input)
        dropped_below = round(self.p * (1 << SLICE_BITS))
        count = input.numel()
        draws = torch.empty(-(-count // SLICES_PER_DRAW), dtype=torch.int64).random_()
        slices = draws.view(torch.int16)[:count].view(input.shape)
        kept = (slices & ((1 << SLICE_BITS) - 1)) >= dropped_below
        # a scaled mask in the input's dtype: one multiply forward and back (masked_fill or where took 1.3-1.6x)
        return input * (kept.to(input.dtype) * ((1 << SLICE_BITS) / ((1 << SLICE_BITS) - dropped_below)))


def use_packed_masks(model: nn.Module) -> int:
    """Replace every ``nn.Dropout`` in ``model`` by a ``PackedMaskDropout`` of the same rate; how many were."""
    replaced = 0
    for module in model.modules():
        for name, child in module.named_children():
            if type(child) is nn.Dropout:
                setattr(module, name, PackedMaskDropout(child.p))
                replaced += 1
    return replaced
