"""benchmarks.probe_strength: each model encoded once however many C values its probes are scored at, and only the
probes' rows of a paired comparison reported, each under the C it was scored at."""

import numpy as np
import pandas as pd

from benchmarks.probe_strength import probe_rows
from benchmarks.recipe_comparison import encoded_once


def test_each_list_of_texts_is_encoded_once() -> None:
    calls: list[list[str]] = []

    def encode(texts: list[str]) -> np.ndarray:
        calls.append(texts)
        return np.full((len(texts), 2), float(len(calls)))

    cached = encoded_once(encode)
    first = cached(["a", "b"])
    assert cached(["a", "b"]) is first  # the C sweep repeats the evaluation: the same vectors, not new ones
    assert cached(["b", "a"])[0, 0] == 2.0  # another list (order matters: rows follow the texts) is encoded
    assert calls == [["a", "b"], ["b", "a"]]


def test_only_the_probes_rows_are_kept_under_their_c() -> None:
    table = pd.DataFrame({"slice": ["unseen", "unseen", "external"], "figure": ["P@10", "LR accuracy", "LR accuracy"],
                          "points": [1.0, -0.2, 0.4], "low": [0.5, -1.0, -0.8], "high": [1.5, 0.6, 1.7],
                          "verdict": ["above", "within noise", "within noise"]})
    rows = probe_rows(table, "0.3")
    assert rows.to_dict("records") == [
        {"C": "0.3", "slice": "unseen", "points": -0.2, "low": -1.0, "high": 0.6, "verdict": "within noise"},
        {"C": "0.3", "slice": "external", "points": 0.4, "low": -0.8, "high": 1.7, "verdict": "within noise"}]
