"""Turning plain results into Dagster metadata, one way for every asset."""


import json
from collections.abc import Mapping
from pathlib import Path

import dagster as dg
import pandas as pd

REPORT_FILE = "metrics.json"  # the evaluation's verdict inside each report artifact


def read_reports(ir_metrics: Path, classifier_metrics: Path) -> dict[str, dict]:
    """Both evaluation reports' verdicts, by asset name (what promotion and release decide from)."""
    return {name: json.loads((path / REPORT_FILE).read_text())
            for name, path in (("ir_metrics", ir_metrics), ("classifier_metrics", classifier_metrics))}


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".3f", max_rows: int = 60) -> dg.MetadataValue:
    return dg.MetadataValue.md(frame.head(max_rows).to_markdown(floatfmt=floatfmt))


def metrics_table(rows: Mapping[str, Mapping[str, float]]) -> pd.DataFrame:
    """``{"tfidf": {"P@10": ...}, "fine-tuned": {...}}`` -> one row per system."""
    return pd.DataFrame(rows).T


def subject_histogram(papers: pd.DataFrame) -> dg.MetadataValue:
    counts = papers["primary_subject"].value_counts().rename("papers").to_frame()
    counts["share"] = counts["papers"] / max(1, len(papers))
    return markdown_table(counts)


def preview(papers: pd.DataFrame, rows: int = 5) -> dg.MetadataValue:
    shown = papers.head(rows).assign(abstract=lambda f: f["abstract"].str.slice(0, 160) + "…")
    return markdown_table(shown[["id", "primary_subject", "published", "title", "abstract"]])
