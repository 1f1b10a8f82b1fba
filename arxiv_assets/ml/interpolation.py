"""Weight-space averaging: a fine-tuned model with its base (WiSE-FT, Wortsman et al., 2022), or several
models fine-tuned from one base with it (a model soup).

Fine-tuning on the seen subjects moves the encoder away from what the base knew about everything
else (other subjects, title -> abstract search). Averaging the models' weights keeps part of each:
WiSE-FT's weight is chosen on the eval split, never on the slices the model is judged on; the
default soup (TrainSettings.soup_loss) weighs the base and its two runs equally, nothing tuned.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import pandas as pd

from arxiv_assets.ml.metrics import Vectors, known_item_retrieval, subject_retrieval

WEIGHTS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)  # share of the fine-tuned model; 0.0 is the base


def average_weights(models: Sequence, shares: Sequence[float]):
    """A copy of ``models[0]`` whose floating-point weights are ``sum(share * model)`` over the models (a model
    soup, Wortsman et al., 2022, when they are fine-tuned from one base); the shares are non-negative and sum
    to 1. The models are left as they were."""
    if not models or len(models) != len(shares):
        raise ValueError(f"one share per model: {len(models)} models, {len(shares)} shares")
    if min(shares) < 0.0 or abs(sum(shares) - 1.0) > 1e-6:
        raise ValueError(f"shares must be non-negative and sum to 1, got {list(shares)}")
    states = [model.state_dict() for model in models]
    if any(state.keys() != states[0].keys() for state in states[1:]):
        raise ValueError("the models have different architectures: cannot average their weights")
    mixed = copy.deepcopy(models[0])
    mixed.load_state_dict({
        name: sum(share * state[name].to(value.device) for share, state in zip(shares, states, strict=True))
        if value.is_floating_point() else value
        for name, value in states[0].items()
    })
    return mixed


def interpolate_with_base(tuned, base, weight: float):
    """A copy of ``tuned`` whose floating-point weights are ``weight * tuned + (1 - weight) * base``."""
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"interpolation weight must lie in [0, 1], got {weight}")
    return average_weights([tuned, base], [weight, 1.0 - weight])


@dataclass(frozen=True)
class InterpolationChoice:
    weight: float
    scores: pd.DataFrame  # index: weight; columns "P@10" (subject retrieval) and "known-item MRR@10"
    seconds: float  # to score every weight on the eval split


def eval_scores(encode_texts: Callable[[list[str]], Vectors], eval_papers: pd.DataFrame) -> dict[str, float]:
    """Subject P@10 among the eval split's abstracts and title -> own abstract MRR@10 there.

    The abstracts serve both: encoding them and the short titles is about half of what encoding the
    title + abstract texts as well would cost, for every weight scored (this is the step's second-largest
    cost on a CPU after training)."""
    subjects = eval_papers["primary_subject"].tolist()
    abstracts = encode_texts(eval_papers["abstract"].tolist())
    known_item = known_item_retrieval(encode_texts(eval_papers["title"].tolist()), abstracts,
                                      eval_papers["id"].tolist(), subjects)
    return {"P@10": subject_retrieval(abstracts, subjects).micro["P@10"],
            "known-item MRR@10": known_item.micro["MRR@10"]}


def choose_interpolation(tuned, base, eval_papers: pd.DataFrame,
                         encoder: Callable[[object], Callable[[list[str]], Vectors]],
                         weights: Sequence[float] = WEIGHTS, known_item_tolerance: float = 0.005,
                         ) -> InterpolationChoice:
    """The weight with the best eval subject P@10 among those whose title search stays within
    ``known_item_tolerance`` (MRR@10, absolute) of the base's on the eval split.

    ``encoder(model)`` gives the function that encodes texts with ``model``. Weight 0.0 (the base)
    is always scored: it is the floor, and what is chosen when every other weight loses title search.
    """
    started = time.perf_counter()
    scores = {w: eval_scores(encoder(interpolate_with_base(tuned, base, w)), eval_papers)
              for w in sorted({0.0, *weights})}
    table = pd.DataFrame(scores).T.rename_axis("weight")
    floor = table.loc[0.0, "known-item MRR@10"] - known_item_tolerance
    eligible = table[table["known-item MRR@10"] >= floor]
    return InterpolationChoice(weight=float(eligible["P@10"].idxmax()), scores=table,
                               seconds=time.perf_counter() - started)
