"""Where ``raw_papers`` gets its papers: one typed resource, one field picks the source."""


from datetime import date
from typing import Literal

import dagster as dg
import pandas as pd

from arxiv_assets.sources.parquet import BUNDLED_SAMPLE, load_parquet_month


class PaperSource(dg.ConfigurableResource):
    """One month of arXiv papers in the project's schema.

    ``bundled`` (default) reads the real sample shipped in the package and needs no network;
    ``parquet`` reads a file of the same schema; ``huggingface`` and ``arxiv_api`` are the online
    sources used in production.
    """

    kind: Literal["bundled", "parquet", "huggingface", "arxiv_api"] = "bundled"
    parquet_path: str | None = None
    huggingface_dataset: str = "nick007x/arxiv-papers"
    huggingface_data_files: str | None = None  # a local/remote parquet or JSONL instead of the Hub repo's files
    arxiv_categories: list[str] = ["cs.CV", "cs.CL", "cs.AI", "cs.LG", "astro-ph.GA", "astro-ph.CO"]
    arxiv_api_url: str = "https://export.arxiv.org/api/query"
    arxiv_request_interval_s: float = 3.0  # arXiv's published rate limit: one request every 3 s
    arxiv_max_retries: int = 4

    def load_month(self, start: date, end: date) -> pd.DataFrame:
        """Papers published in ``[start, end)``."""
        if self.kind == "bundled":
            return load_parquet_month(BUNDLED_SAMPLE, start, end)
        if self.kind == "parquet":
            if not self.parquet_path:
                raise ValueError("PaperSource(kind='parquet') needs parquet_path")
            return load_parquet_month(self.parquet_path, start, end)
        if self.kind == "huggingface":
            from arxiv_assets.sources.huggingface import load_huggingface_month

            return load_huggingface_month(self.huggingface_dataset, start, end, data_files=self.huggingface_data_files)
        from arxiv_assets.sources.arxiv_api import load_arxiv_api_month

        return load_arxiv_api_month(
            self.arxiv_categories, start, end, base_url=self.arxiv_api_url,
            request_interval_s=self.arxiv_request_interval_s, max_retries=self.arxiv_max_retries,
        )
