"""How a paper becomes text for the models. One definition, shared by training, evaluation and serving."""

from __future__ import annotations

import pandas as pd


def paper_text(title: str, abstract: str) -> str:
    return f"{title}. {abstract}"


def paper_texts(papers: pd.DataFrame) -> list[str]:
    return [paper_text(t, a) for t, a in zip(papers["title"], papers["abstract"], strict=True)]
