"""LoRA (low-rank adapters, PEFT) for a run of ``train``: added before the trainer starts, merged into plain weights
when it ends, so that what is saved, averaged into a soup, exported and served is a model like any other."""

from __future__ import annotations

from pathlib import Path

# Every linear map of a BERT-like layer: attention's query, key, value and output ("dense" is both the attention output
# and the feed-forward output; "intermediate.dense" ends in "dense" too).
LORA_TARGET_MODULES = ("query", "key", "value", "dense")


def add_lora(model, rank: int, layers: range) -> None:
    """Attach a trainable LoRA adapter of ``rank`` to these transformer layers of ``model``'s backbone; every weight of
    the backbone itself stops training (PEFT freezes them), the pooler and normalisation have none."""
    from peft import LoraConfig

    if rank <= 0:
        raise ValueError(f"lora_rank must be positive (or None: no adapter); got {rank}")
    if not layers:
        raise ValueError("LoRA has no layer to adapt: every transformer layer of the backbone is frozen")
    model.add_adapter(LoraConfig(r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                 target_modules=list(LORA_TARGET_MODULES), layers_to_transform=list(layers)))


def merge_lora(trained, base):
    """``base`` (the model ``trained`` started from, freshly loaded) with every LoRA update of ``trained`` added to the
    weight it adapts: the same function as ``trained`` with its adapter, as one plain model."""
    import torch
    from peft.tuners.lora import LoraLayer

    backbone = base[0].auto_model
    merged = 0
    with torch.no_grad():
        for name, module in trained[0].auto_model.named_modules():
            if isinstance(module, LoraLayer):
                weight = backbone.get_submodule(name).weight
                for adapter in module.active_adapters:
                    weight += module.get_delta_weight(adapter).to(weight.dtype)
                merged += 1
    if merged == 0:
        raise ValueError("merge_lora: the trained model has no LoRA layers")
    return base


def make_checkpoint_loadable(checkpoint: Path, model) -> None:
    """Give an adapter checkpoint the backbone's ``config.json``, which sentence-transformers leaves out of it and its
    own loader (the trainer's resume) then misses: its tokenizer is found by the model type that file names."""
    if (checkpoint / "adapter_config.json").is_file() and not (checkpoint / "config.json").is_file():
        model[0].auto_model.config.save_pretrained(checkpoint)
