"""WiSE-FT interpolation: exact weights at the ends and halfway, and a choice that never loses title search."""

from __future__ import annotations

import copy

import pandas as pd
import pytest
import torch

from arxiv_assets.ml.embedding import encode, load_model
from arxiv_assets.ml.interpolation import average_weights, choose_interpolation, interpolate_with_base
from arxiv_assets.ml.training import TrainSettings


@pytest.fixture(scope="module")
def base():
    return load_model(TrainSettings().base_model, device="cpu", max_seq_length=64)


@pytest.fixture(scope="module")
def scrambled(base):
    """The base with noise on every weight: a "fine-tuned" model that forgot everything."""
    model = copy.deepcopy(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


def test_the_ends_are_the_two_models_and_the_middle_is_their_mean(base, scrambled) -> None:
    name, base_weight = next(iter(base.state_dict().items()))
    scrambled_weight = scrambled.state_dict()[name]
    assert torch.equal(interpolate_with_base(scrambled, base, 0.0).state_dict()[name], base_weight)
    assert torch.equal(interpolate_with_base(scrambled, base, 1.0).state_dict()[name], scrambled_weight)
    halfway = interpolate_with_base(scrambled, base, 0.5).state_dict()[name]
    assert torch.allclose(halfway, (base_weight + scrambled_weight) / 2)
    assert torch.equal(scrambled.state_dict()[name], scrambled_weight)  # the inputs are left as they were


def test_a_weight_outside_zero_to_one_is_refused(base, scrambled) -> None:
    with pytest.raises(ValueError, match="must lie in"):
        interpolate_with_base(scrambled, base, 1.5)


def test_a_uniform_soup_is_the_mean_of_its_models(base, scrambled) -> None:
    name, base_weight = next(iter(base.state_dict().items()))
    other = interpolate_with_base(scrambled, base, 0.25)
    soup = average_weights([scrambled, base, other], [1 / 3] * 3).state_dict()[name]
    assert torch.allclose(soup, (scrambled.state_dict()[name] + base_weight + other.state_dict()[name]) / 3)
    with pytest.raises(ValueError, match="sum to 1"):
        average_weights([scrambled, base], [0.5, 0.6])
    with pytest.raises(ValueError, match="one share per model"):
        average_weights([scrambled, base], [1.0])


def test_a_model_worse_at_title_search_than_its_base_is_not_chosen(base, scrambled,
                                                                   sample_papers: pd.DataFrame) -> None:
    subjects = sample_papers["primary_subject"].value_counts().index[:3]
    eval_papers = (sample_papers[sample_papers["primary_subject"].isin(subjects)]
                   .groupby("primary_subject").head(15).reset_index(drop=True))

    choice = choose_interpolation(scrambled, base, eval_papers, lambda model: lambda texts: encode(model, texts),
                                  weights=(1.0,))

    assert list(choice.scores.index) == [0.0, 1.0]  # the base is always scored: it is the floor
    assert choice.scores.loc[1.0, "known-item MRR@10"] < choice.scores.loc[0.0, "known-item MRR@10"]
    assert choice.weight == 0.0
