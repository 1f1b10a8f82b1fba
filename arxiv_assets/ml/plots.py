"""Pictures of an evaluation, written as PNG files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: assets run in workers and pods without a display
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.manifold import TSNE


def projection_plot(vectors_by_system: Mapping[str, np.ndarray], subjects: Sequence[str], path: Path,
                    seed: int = 0) -> Path:
    """t-SNE of the test embeddings, one panel per system, coloured by primary subject."""
    labels = sorted(set(subjects))
    colours = plt.get_cmap("tab20")(np.linspace(0, 1, len(labels)))
    index = np.array([labels.index(s) for s in subjects])
    fig, axes = plt.subplots(1, len(vectors_by_system), figsize=(7 * len(vectors_by_system), 6.5), squeeze=False)
    for ax, (system, vectors) in zip(axes[0], vectors_by_system.items(), strict=True):
        points = TSNE(n_components=2, init="pca", random_state=seed, perplexity=min(30, len(vectors) - 1),
                      metric="cosine").fit_transform(vectors)
        for i, label in enumerate(labels):
            ax.scatter(*points[index == i].T, s=4, color=colours[i], label=label)
        ax.set_title(f"{system}: test papers by primary subject")
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(markerscale=4, fontsize=7, loc="center left", bbox_to_anchor=(1, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def confusion_plot(confusions: Mapping[str, pd.DataFrame], path: Path) -> Path:
    """Row-normalised confusion matrices (true subject rows, predicted columns), one panel per system."""
    fig, axes = plt.subplots(1, len(confusions), figsize=(7 * len(confusions), 6.5), squeeze=False)
    for ax, (system, confusion) in zip(axes[0], confusions.items(), strict=True):
        normalised = confusion.div(confusion.sum(axis=1).replace(0, 1), axis=0)
        ax.imshow(normalised.to_numpy(), cmap="Blues", vmin=0, vmax=1)
        ax.set_xticks(range(len(confusion.columns)), confusion.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(len(confusion.index)), confusion.index, fontsize=7)
        ax.set_title(f"{system}: linear probe confusion")
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
